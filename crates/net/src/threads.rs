//! Serving threads: `n` threads, each a current-thread tokio runtime that owns the connections
//! handed to it until they end (actix's layout; tileserve and loopcam serve this way). One
//! acceptor deals connections to them in turn, as `std` sockets, so each is registered with the
//! reactor of the thread that serves it and its wake-ups stay there; what the threads share
//! (a router, rings, caps) is shared by the caller.
//!
//! Why not one work-stealing runtime: a connection's task then wakes on whichever worker is
//! free, so its socket's readiness, its timers and the ring's wakers cross threads on most
//! wake-ups; here each connection lives and dies on one thread (docs/architecture.md,
//! "Serving threads", has the measurement).
//!
//! ```
//! use nvrkit_net::threads::ServingThreads;
//! let threads = ServingThreads::start(2, "doc", |_, mut rx: tokio::sync::mpsc::UnboundedReceiver<u32>| async move {
//!     while let Some(n) = rx.recv().await {
//!         assert!(n < 10);
//!     }
//! })
//! .unwrap();
//! for n in 0..10 {
//!     threads.hand(n as usize, n).unwrap();
//! }
//! threads.join(); // waits for both threads to see their queue close
//! ```

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// `n` serving threads, each fed from its own queue of `T` (an accepted connection and what
/// comes with it).
#[derive(Debug)]
pub struct ServingThreads<T> {
    queues: Vec<UnboundedSender<T>>,
    handles: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> ServingThreads<T> {
    /// Starts `n` threads (at least one) named `{name}-{i}`. Thread `i` runs `run(i, queue)` on
    /// a runtime of its own until it returns; `queue` yields what [`ServingThreads::hand`] gives
    /// thread `i` and closes at [`ServingThreads::join`]. The future is made on its thread, so
    /// it need not be `Send`.
    pub fn start<F, Fut>(n: usize, name: &str, run: F) -> std::io::Result<ServingThreads<T>>
    where
        F: Fn(usize, UnboundedReceiver<T>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let mut threads = ServingThreads {
            queues: Vec::new(),
            handles: Vec::new(),
        };
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, rx) = unbounded_channel();
            let run = run.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || rt.block_on(run(i, rx)))?;
            threads.queues.push(tx);
            threads.handles.push(handle);
        }
        Ok(threads)
    }

    /// How many threads serve.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Always false: there is at least one thread.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Gives `item` to thread `k mod len` (the `k`-th connection accepted: round robin).
    /// `Err(item)` when that thread has ended.
    pub fn hand(&self, k: usize, item: T) -> Result<(), T> {
        let q = &self.queues[k % self.queues.len()];
        q.send(item).map_err(|e| e.0)
    }

    /// Closes every queue and waits (blocking) for the threads to return. `Err` when one
    /// panicked.
    pub fn join(self) -> std::thread::Result<()> {
        drop(self.queues);
        let mut result = Ok(());
        for h in self.handles {
            if let Err(e) = h.join() {
                result = Err(e);
            }
        }
        result
    }
}

/// Connections dealt over `n` runtimes: the caller's and `n - 1` [`ServingThreads`], in
/// turn (connection `k` to runtime `k mod n`), each served by `serve(socket, with)` on its
/// runtime to its end (loopcam's RTSP listener; the caller's runtime also runs what the
/// threads share, e.g. pacers).
pub struct Spread<W: Send + 'static> {
    threads: Option<ServingThreads<(std::net::TcpStream, W)>>,
    serve: Serve<W>,
    here: tokio::task::JoinSet<()>,
    next: usize,
}

impl<W: Send + 'static> std::fmt::Debug for Spread<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let threads = self.threads.as_ref().map_or(0, ServingThreads::len);
        f.debug_struct("Spread")
            .field("threads", &threads)
            .finish_non_exhaustive()
    }
}

type Serve<W> = Arc<dyn Fn(TcpStream, W) -> BoxFuture + Send + Sync>;
type BoxFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl<W: Send + 'static> Spread<W> {
    /// `n` runtimes in all (at least the caller's; threads that cannot start are warned of
    /// and left out: fewer runtimes still serve everybody).
    pub fn new<F, Fut>(n: usize, name: &str, serve: F) -> Spread<W>
    where
        F: Fn(TcpStream, W) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let serve: Serve<W> = Arc::new(move |s, w| Box::pin(serve(s, w)));
        let threads = (n > 1).then(|| {
            let serve = serve.clone();
            ServingThreads::start(n - 1, name, move |_, rx| serve_handed(rx, serve.clone()))
        });
        let threads = threads.and_then(|r| {
            r.inspect_err(|e| tracing::warn!("cannot start serving threads: {e}"))
                .ok()
        });
        Spread {
            threads,
            serve,
            here: tokio::task::JoinSet::new(),
            next: 0,
        }
    }

    /// Serves `sock` on the next runtime: here, or moved as a `std` socket (the caller's
    /// reactor lets go of it) to a serving thread, registered with that thread's reactor.
    pub fn serve(&mut self, sock: TcpStream, with: W) {
        let n = self.threads.as_ref().map_or(0, ServingThreads::len) + 1;
        self.next = (self.next + 1) % n;
        match (self.next, &self.threads) {
            (1.., Some(t)) => match sock.into_std() {
                Ok(sock) => {
                    let _ = t.hand(self.next - 1, (sock, with));
                }
                Err(e) => tracing::warn!("cannot hand a connection over: {e}"),
            },
            _ => {
                self.here.spawn((self.serve)(sock, with));
            }
        }
    }

    /// Reaps a connection served here that ended (pending while none is open): a `select!`
    /// arm beside the accept, so ended tasks are not kept.
    pub async fn reap(&mut self) {
        match self.here.join_next().await {
            Some(_) => {}
            None => std::future::pending().await,
        }
    }

    /// Waits for every connection, here and on the threads, to end (the threads' queues close).
    pub async fn finish(mut self) {
        while self.here.join_next().await.is_some() {}
        if let Some(t) = self.threads.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// A serving thread of a [`Spread`]: serves each connection handed to it, and once the queue
/// closes, the rest to their end.
async fn serve_handed<W>(mut rx: UnboundedReceiver<(std::net::TcpStream, W)>, serve: Serve<W>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            h = rx.recv() => {
                let Some((sock, with)) = h else { break };
                match TcpStream::from_std(sock) {
                    Ok(sock) => {
                        conns.spawn(serve(sock, with));
                    }
                    Err(e) => tracing::warn!("cannot serve a connection: {e}"),
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn items_go_round_robin_and_each_runs_on_its_thread() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let threads = ServingThreads::start(3, "t", move |i, mut rx: UnboundedReceiver<usize>| {
            let s = s.clone();
            async move {
                while let Some(k) = rx.recv().await {
                    let name = std::thread::current().name().map(str::to_owned);
                    s.lock().unwrap().push((k, i, name));
                }
            }
        })
        .unwrap();
        assert_eq!(threads.len(), 3);
        for k in 0..9 {
            threads.hand(k, k).unwrap();
        }
        threads.join().unwrap();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen.len(), 9);
        for (k, i, name) in seen {
            assert_eq!(i, k % 3, "item {k}");
            assert_eq!(name.as_deref(), Some(format!("t-{i}").as_str()));
        }
    }

    #[test]
    fn a_thread_that_ended_gives_the_item_back() {
        let (ended_tx, ended) = std::sync::mpsc::channel();
        let threads = ServingThreads::start(1, "t", move |_, rx: UnboundedReceiver<u8>| {
            let ended_tx = ended_tx.clone();
            async move {
                drop(rx);
                let _ = ended_tx.send(());
            }
        })
        .unwrap();
        ended.recv().unwrap();
        assert_eq!(threads.hand(0, 7), Err(7));
        assert!(threads.join().is_ok());
    }
}
