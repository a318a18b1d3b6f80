//! `rtsp-load`: many RTSP readers from few threads, cheap enough that the server under test,
//! not the client, is what a benchmark measures (docs/architecture.md, "benches").
//!
//! [`run`] opens [`Config::clients`] sessions at [`Config::ramp`] sessions a second, spread
//! over [`Config::threads`] OS threads that each run a current-thread tokio runtime; every
//! session plays until the same end (the ramp, then [`Config::duration`]), reads only RTP
//! headers ([`count`]) and reports sequence continuity, frames (marker bits on video), the
//! time from PLAY to the first keyframe packet and each frame's lateness against its RTP
//! timeline. [`Report`] is the JSON the binary prints, with the client's own CPU time.

pub mod count;
pub mod rtsp;
pub mod session;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use count::{Histogram, Spread};
use rtsp::RtspUrl;
use session::{Plan, SessionStats};

/// What can go wrong in a session or a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The URL is not `rtsp://[user:pass@]host[:port]/path`.
    #[error("not an rtsp:// URL: {0}")]
    Url(String),
    /// A socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A request was answered with another status than 200.
    #[error("{0} answered {1}")]
    Status(String, u16),
    /// A response or frame the client cannot read.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An exchange passed its deadline.
    #[error("{0} timed out")]
    Timeout(String),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// No media for a whole keepalive interval.
    #[error("no media for the stall timeout")]
    Stalled,
    /// The run's setup failed (threads, runtime).
    #[error("run: {0}")]
    Run(String),
}

/// How RTP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Interleaved on the RTSP connection (`RTP/AVP/TCP`).
    Tcp,
    /// A UDP port pair per stream (`RTP/AVP;unicast;client_port`).
    Udp,
}

/// A load run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `rtsp://[user:pass@]host[:port]/path`; Basic or Digest is answered with the user and
    /// password when the server asks.
    pub url: String,
    /// Sessions.
    pub clients: usize,
    /// OS threads, each with a current-thread runtime owning its sessions (round-robin).
    pub threads: usize,
    /// How long every session plays once all are open.
    pub duration: Duration,
    /// TCP-interleaved or UDP.
    pub transport: Transport,
    /// Sessions opened per second.
    pub ramp: f64,
    /// Set up the audio too (video only by default).
    pub audio: bool,
    /// Deadline of each RTSP exchange; media silent this long fails the session.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            clients: 1,
            threads: 1,
            duration: Duration::from_secs(10),
            transport: Transport::Tcp,
            ramp: 200.0,
            audio: false,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// How long opening every session takes.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.clients as f64 / self.ramp.max(0.001))
    }
}

/// Process CPU time (user, system) from `getrusage(RUSAGE_SELF)`.
pub fn cpu_times() -> (Duration, Duration) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `struct rusage` into the pointer it is given, which points to
    // one (zeroed, so valid however much it writes).
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } == 0;
    if !ok {
        return (Duration::ZERO, Duration::ZERO);
    }
    // SAFETY: zero-initialized and, on success, written by the kernel.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The client's CPU time over the whole run and over the steady window (all sessions open).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuReport {
    /// User CPU seconds, whole run.
    pub user_s: f64,
    /// System CPU seconds, whole run.
    pub sys_s: f64,
    /// Wall seconds, whole run.
    pub wall_s: f64,
    /// CPU % of one core over the whole run.
    pub pct: f64,
    /// CPU % of one core from the last session's PLAY (the end of the ramp) to the end.
    pub steady_pct: f64,
    /// `steady_pct` scaled to 1,000 sessions.
    pub steady_pct_per_1000: f64,
}

/// Totals over all sessions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    /// RTP packets.
    pub packets: u64,
    /// RTP bytes.
    pub bytes: u64,
    /// Video frames.
    pub frames: u64,
    /// Sequence numbers never received.
    pub lost: u64,
    /// Packets that came after a later one.
    pub reordered: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets too old to tell.
    pub too_late: u64,
    /// Numbering restarts.
    pub resyncs: u64,
}

/// Frame lateness over every frame of every session, ms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatenessReport {
    /// Frames measured.
    pub frames: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// What `rtsp-load --json` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The URL (without credentials).
    pub url: String,
    /// Transport.
    pub transport: Transport,
    /// Sessions asked for.
    pub clients: usize,
    /// Client threads.
    pub threads: usize,
    /// Seconds every session played after the ramp.
    pub duration_s: f64,
    /// Sessions opened per second.
    pub ramp_per_s: f64,
    /// Sessions that played to the end without an error.
    pub ok: usize,
    /// Sessions that failed, by error.
    pub errors: BTreeMap<String, usize>,
    /// Every session ok, with frames, and nothing lost, reordered, duplicated or restarted.
    pub every_frame: bool,
    /// Totals.
    pub totals: Totals,
    /// Sessions that saw a keyframe (H.264/H.265 only).
    pub with_keyframe: usize,
    /// Video frames per session.
    pub frames_per_session: Option<Spread>,
    /// PLAY to the first keyframe packet, ms, over sessions.
    pub first_key_ms: Option<Spread>,
    /// Connect to the PLAY response, ms, over sessions.
    pub setup_ms: Option<Spread>,
    /// Each session's largest frame lateness, ms, over sessions.
    pub session_max_lateness_ms: Option<Spread>,
    /// Lateness of every frame from a second after each stream's first (the last few of each
    /// session are held to restore decode order, and not reported).
    pub lateness: LatenessReport,
    /// The client's own CPU.
    pub cpu: CpuReport,
}

/// Runs the load and reports. Blocks the calling thread until the run ends.
pub fn run(config: &Config) -> Result<Report, LoadError> {
    run_with_progress(config, |_| {})
}

/// [`run`], calling `progress` with the seconds elapsed about once a second.
pub fn run_with_progress(
    config: &Config,
    mut progress: impl FnMut(f64),
) -> Result<Report, LoadError> {
    let url = RtspUrl::parse(&config.url)?;
    let threads = config.threads.clamp(1, config.clients.max(1));
    let (user0, sys0) = cpu_times();
    let t0 = Instant::now();
    // Sessions start a little after the threads do, so that the first few are not late.
    let start = t0 + Duration::from_millis(50);
    let ramp_end = start + config.ramp_time();
    let end = ramp_end + config.duration;
    let mut handles = Vec::new();
    for t in 0..threads {
        let plans: Vec<Plan> = (t..config.clients)
            .step_by(threads)
            .map(|i| Plan {
                url: url.clone(),
                transport: config.transport,
                audio: config.audio,
                start: start + Duration::from_secs_f64(i as f64 / config.ramp.max(0.001)),
                end,
                timeout: config.timeout,
            })
            .collect();
        let h = std::thread::Builder::new()
            .name(format!("rtsp-load-{t}"))
            .spawn(move || thread_main(plans, t0))
            .map_err(|e| LoadError::Run(format!("thread: {e}")))?;
        handles.push(h);
    }
    // The steady window starts when the last session has had a second to play.
    let steady_at = ramp_end + Duration::from_secs(1).min(config.duration / 2);
    let mut steady0 = None;
    while Instant::now() < end {
        let now = Instant::now();
        if steady0.is_none() && now >= steady_at {
            steady0 = Some((now, cpu_times()));
        }
        progress(now.duration_since(t0).as_secs_f64());
        let next = if steady0.is_none() {
            steady_at.min(end)
        } else {
            end
        };
        std::thread::sleep(
            next.saturating_duration_since(now)
                .min(Duration::from_secs(1)),
        );
    }
    let steady1 = (Instant::now(), cpu_times());
    let mut sessions = Vec::new();
    let mut hist = Histogram::default();
    for h in handles {
        let (s, h) = h
            .join()
            .map_err(|_| LoadError::Run("a client thread panicked".into()))??;
        sessions.extend(s);
        hist.merge(&h);
    }
    let (user1, sys1) = cpu_times();
    let wall = t0.elapsed().as_secs_f64();
    let cpu_s = |(u, s): (Duration, Duration)| (u + s).as_secs_f64();
    let steady_pct = match steady0 {
        Some((at, c)) => {
            let secs = steady1.0.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                100.0 * (cpu_s(steady1.1) - cpu_s(c)) / secs
            } else {
                0.0
            }
        }
        None => 0.0,
    };
    let user_s = (user1 - user0).as_secs_f64();
    let sys_s = (sys1 - sys0).as_secs_f64();
    let cpu = CpuReport {
        user_s,
        sys_s,
        wall_s: wall,
        pct: 100.0 * (user_s + sys_s) / wall,
        steady_pct,
        steady_pct_per_1000: steady_pct * 1000.0 / config.clients.max(1) as f64,
    };
    Ok(report(config, &url, threads, &sessions, &hist, cpu))
}

type ThreadResult = Result<(Vec<SessionStats>, Histogram), LoadError>;

fn thread_main(plans: Vec<Plan>, base: Instant) -> ThreadResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Run(format!("runtime: {e}")))?;
    let hist = Rc::new(RefCell::new(Histogram::default()));
    let local = tokio::task::LocalSet::new();
    let stats = local.block_on(&rt, async {
        let tasks: Vec<_> = plans
            .into_iter()
            .map(|p| tokio::task::spawn_local(session::run(p, base, hist.clone())))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| SessionStats {
                error: Some(format!("task: {e}")),
                ..SessionStats::default()
            }));
        }
        out
    });
    let hist = Rc::try_unwrap(hist)
        .map(RefCell::into_inner)
        .unwrap_or_else(|h| h.borrow().clone());
    Ok((stats, hist))
}

fn report(
    config: &Config,
    url: &RtspUrl,
    threads: usize,
    sessions: &[SessionStats],
    hist: &Histogram,
    cpu: CpuReport,
) -> Report {
    let mut totals = Totals::default();
    let mut errors = BTreeMap::new();
    for s in sessions {
        totals.packets += s.packets;
        totals.bytes += s.bytes;
        totals.frames += s.frames;
        for q in &s.seq {
            totals.lost += q.lost;
            totals.reordered += q.reordered;
            totals.duplicates += q.duplicates;
            totals.too_late += q.too_late;
            totals.resyncs += q.resyncs;
        }
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
    }
    let ok = sessions.iter().filter(|s| s.error.is_none()).count();
    let ms = |us: u64| us as f64 / 1000.0;
    let spread = |f: &dyn Fn(&SessionStats) -> Option<f64>| {
        Spread::of(&mut sessions.iter().filter_map(f).collect::<Vec<_>>())
    };
    let every_frame = ok == config.clients
        && sessions.iter().all(|s| s.frames > 0)
        && totals.lost + totals.reordered + totals.duplicates + totals.too_late + totals.resyncs
            == 0;
    Report {
        url: url.url.clone(),
        transport: config.transport,
        clients: config.clients,
        threads,
        duration_s: config.duration.as_secs_f64(),
        ramp_per_s: config.ramp,
        ok,
        errors,
        every_frame,
        with_keyframe: sessions.iter().filter(|s| s.first_key_us.is_some()).count(),
        totals,
        frames_per_session: spread(&|s| Some(s.frames as f64)),
        first_key_ms: spread(&|s| s.first_key_us.map(ms)),
        setup_ms: spread(&|s| s.setup_us.map(ms)),
        session_max_lateness_ms: spread(&|s| (s.frames > 0).then(|| ms(s.max_late_us))),
        lateness: LatenessReport {
            frames: hist.count(),
            p50_ms: ms(hist.quantile_us(0.5)),
            p99_ms: ms(hist.quantile_us(0.99)),
            p999_ms: ms(hist.quantile_us(0.999)),
            max_ms: ms(hist.max_us()),
        },
        cpu,
    }
}
