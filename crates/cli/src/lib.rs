//! What every nvrkit binary shares, so that they agree with each other (docs/architecture.md,
//! "CLI vocabulary"):
//!
//! - [`docs`]: `BINARY completions SHELL` and `BINARY man`, from the binary's clap command;
//! - [`units`]: the one grammar for sizes (`500M`, `10GB`), rates (`2Mbit`, `10KiB/s`) and
//!   durations (`90s`, `1h30m`, `2.5s`; a bare number is seconds), as clap value parsers;
//! - [`init_logging`]: logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`);
//! - [`exit`]: the exit code of a `main` that returns a result, `binary: error: cause` on stderr
//!   and a broken pipe treated as success (`loopcam | head -1` is not an error).
//!
//! Exit codes: 0 success, 1 failure (the error is printed), 2 a usage error (clap's).
//!
//! ```
//! let secs = nvrkit_cli::units::parse_duration("1m30s")?;
//! assert_eq!(secs.as_secs(), 90);
//! # Ok::<(), String>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::process::ExitCode;

pub mod docs;
/// The one grammar of sizes, rates and durations; it lives in `nvrkit-net` so servers parsing
/// untrusted input (fault queries) use the same parser as the command lines.
pub use nvrkit_net::units;

/// The log filter when `RUST_LOG` is not set: `info`, with the chattiest dependencies quieter
/// (mp4-atom logs every unknown box, retina every RTCP oddity of a camera).
pub const DEFAULT_LOG_FILTER: &str = "info,mp4_atom=error,retina=warn";

/// Logs to stderr through `tracing`, with ANSI colours only when stderr is a terminal, filtered
/// by `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]). Call once, first thing in `main`.
pub fn init_logging() {
    let stderr_is_tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_tty)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .init();
}

/// Whether an error, or anything in its chain of sources, is a broken pipe.
pub fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The exit code for `main`'s result: success, or the error and its causes on one stderr line
/// (`name: what: why`) and exit code 1. A broken pipe (the reader of stdout went away) is
/// success.
pub fn exit<E>(name: &str, result: Result<(), E>) -> ExitCode
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    exit_with(name, result.map(|()| ExitCode::SUCCESS))
}

/// [`exit`] for a `main` that picks its own exit code on success (`segstore verify` exits 1
/// when it finds damage).
pub fn exit_with<E>(name: &str, result: Result<ExitCode, E>) -> ExitCode
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let error = match result {
        Ok(code) => return code,
        Err(error) => error,
    };
    let error: Box<dyn std::error::Error + Send + Sync> = error.into();
    let error: &(dyn std::error::Error + 'static) = &*error;
    if is_broken_pipe(error) {
        return ExitCode::SUCCESS;
    }
    let mut line = format!("{name}: {error}");
    let mut next = error.source();
    while let Some(cause) = next {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        next = cause.source();
    }
    #[allow(clippy::print_stderr)] // reason: the one place a binary's failure is reported
    {
        eprintln!("{line}");
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_anywhere_in_the_chain_is_success() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("writing a line")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let pipe = Wrap(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
        assert_eq!(exit("t", Err(pipe)), ExitCode::SUCCESS);
        let other = Wrap(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
        assert_eq!(exit("t", Err(other)), ExitCode::FAILURE);
    }
}
