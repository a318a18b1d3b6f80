//! `segstore replicate`: copy the store to a directory or S3 bucket, most valuable footage first.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nvrkit_replicate::{Options, Stats};
use nvrkit_store::Store;
use nvrkit_store::queue::Journal;

use crate::args::{S3Args, StoreArg, human_bytes, parse_bytes};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArg,
    /// Target: s3://BUCKET/SITE, or a directory (a NAS mount, a second disk).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Upstream cap: 2Mbit, 500kbit, 1MB/s (default: none).
    #[arg(long, value_parser = nvrkit_cli::units::parse_rate, value_name = "RATE")]
    upstream: Option<u64>,
    /// Leave out continuous footage (no event, pin or motion tag).
    #[arg(long)]
    skip_no_motion: bool,
    /// Part size of multipart uploads; larger segments go in parts (S3 wants at least 5M).
    #[arg(long, default_value = "8M", value_parser = parse_bytes, value_name = "SIZE")]
    part_size: u64,
    /// Keep running and send new segments as the recorder seals them.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    s3: S3Args,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let root = &a.store.store;
    let target = a.s3.target(&a.to)?;
    // The queue first, so a recorder running beside us queues what it seals from now on; then
    // the index (read-only: a recorder may hold the writer's lock).
    Store::open_read_only(root).with_context(|| format!("opening {}", root.display()))?;
    Journal::create(root).with_context(|| format!("creating the queue in {}", root.display()))?;
    let store = Store::open_read_only(root)?;
    let mut opts = Options::default()
        .part_size(a.part_size)
        .skip_no_motion(a.skip_no_motion)
        .follow(a.follow);
    opts.upstream = a.upstream;
    tracing::info!(
        "replicating {} to {} (upstream {}, parts of {}{})",
        root.display(),
        target.url(),
        a.upstream.map_or("uncapped".into(), |r| format!(
            "{}/s = {:.2} Mbit/s",
            human_bytes(r),
            r as f64 * 8e-6
        )),
        human_bytes(a.part_size),
        if a.skip_no_motion {
            ", skipping continuous footage"
        } else {
            ""
        },
    );
    let handle = nvrkit_replicate::start(&store, &target, opts)?;
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:24} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut out = std::io::stdout().lock();
    let mut total_done = 0u64;
    loop {
        let finished = handle.is_finished();
        for c in handle.take_completed() {
            total_done += c.bytes;
            pb.suspend(|| writeln!(out, "{} {} {}", c.priority, c.key, c.bytes))?;
        }
        let s = handle.stats();
        pb.set_length(total_done + s.pending_total_bytes());
        pb.set_position(total_done);
        pb.set_message(queue_line(&s));
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    pb.finish_and_clear();
    let s = handle.join()?;
    writeln!(out, "{}", summary(&s))?;
    if s.failed > 0 {
        writeln!(
            out,
            "{} segment(s) not replicated: {}",
            s.failed,
            s.last_error.unwrap_or_default()
        )?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn queue_line(s: &Stats) -> String {
    let mut m = format!(
        "queue P0 {} P1 {} P2 {}",
        s.pending[0], s.pending[1], s.pending[2]
    );
    if s.idle {
        m.push_str(" (idle)");
    }
    if s.retries > 0 {
        m.push_str(&format!(" retries {}", s.retries));
    }
    m
}

fn summary(s: &Stats) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-3);
    let mut line = format!(
        "replicated {} segments (P0 {}, P1 {}, P2 {}), {} in {} bytes sent in {:.1} s ({:.3} Mbit/s); skipped {}, lost {}, failed {}, retries {}, throttled {}, resumed {}, preempted {}",
        s.done_total(),
        s.done[0],
        s.done[1],
        s.done[2],
        human_bytes(s.done_bytes.iter().sum()),
        s.bytes_sent,
        secs,
        s.bytes_sent as f64 * 8e-6 / secs,
        s.skipped,
        s.lost,
        s.failed,
        s.retries,
        s.throttled,
        s.resumed,
        s.preempted,
    );
    if let Some((t, _)) = s.events_safe {
        line.push_str(&format!(
            "; event footage safe after {:.1} s",
            t.as_secs_f64()
        ));
    }
    line
}
