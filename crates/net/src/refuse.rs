//! Turning away a connection past a cap (feature `refuse`, which `http` includes): the one
//! piece the RTSP and HTTP servers share. A refused client gets the protocol's `503` written
//! directly and a short linger (its unread bytes drained, so closing does not reset the
//! connection before it has read the answer); at most [`MAX_REFUSING`] refusals are delivered at
//! once, past that one non-blocking write and close; and one warning a second at most, with
//! the counts, is logged: a flood must not flood the log too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::{ConnLimiter, Refusal};

/// Refusals delivered at once; past them a refused connection gets one non-blocking write.
pub const MAX_REFUSING: usize = 256;

/// How long a refused connection (or one closed after an oversized request) is kept to deliver
/// its answer.
pub const LINGER: Duration = Duration::from_secs(1);

/// The refusals of one server (every listener and thread sharing its [`ConnLimiter`]).
#[derive(Debug)]
pub struct Refuser {
    limiter: Arc<ConnLimiter>,
    busy: &'static [u8],
    slots: Arc<Semaphore>,
    last_warn: Mutex<Option<Instant>>,
}

impl Refuser {
    /// Refusals for the connections `limiter` turns away, answered `busy` (a whole `503`).
    pub fn new(limiter: Arc<ConnLimiter>, busy: &'static [u8]) -> Refuser {
        Refuser {
            limiter,
            busy,
            slots: Arc::new(Semaphore::new(MAX_REFUSING)),
            last_warn: Mutex::new(None),
        }
    }

    /// The caps.
    pub fn limiter(&self) -> &Arc<ConnLimiter> {
        &self.limiter
    }

    /// Answers `tcp` with the `503` and lingers, in a short task of its own (needs a tokio
    /// runtime).
    pub fn refuse(&self, tcp: TcpStream, peer: SocketAddr, why: Refusal) {
        self.warn(peer, why);
        let busy = self.busy;
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(async move {
                    let (mut rd, mut wr) = tcp.into_split();
                    if tokio::time::timeout(LINGER, wr.write_all(busy))
                        .await
                        .is_ok_and(|r| r.is_ok())
                    {
                        linger(&mut rd, &mut wr).await;
                    }
                    drop(slot);
                });
            }
            Err(_) => {
                let _ = tcp.try_write(busy);
            }
        }
    }

    /// Logs a refusal (a warning at most once a second, with the counts; else at debug).
    pub fn warn(&self, peer: SocketAddr, why: Refusal) {
        let now = Instant::now();
        let mut last = self.last_warn.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            tracing::debug!(%peer, "{why}: 503");
            return;
        }
        *last = Some(now);
        drop(last);
        let l = &self.limiter;
        tracing::warn!(
            %peer,
            open = l.open(),
            refused = l.refused(),
            "{why} ({} in all{}): 503",
            l.max_total(),
            l.max_per_addr()
                .map_or(String::new(), |n| format!(", {n} per address"))
        );
    }
}

/// Closes the write side and reads (and drops) what the client still sends, for at most
/// [`LINGER`]: the answer just written reaches the client before the connection ends.
pub async fn linger<R, W>(rd: &mut R, wr: &mut W)
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let _ = tokio::time::timeout(LINGER, async {
        wr.shutdown().await?;
        let mut sink = [0u8; 1024];
        while rd.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
