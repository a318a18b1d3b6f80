//! Loops of their own for URL queries whose faults change frames (`fps=12.5`,
//! `sps_change_at_seam=OTHER`): made on the first request that asks for them, then shared by
//! every session of the same path with the same frame faults. A query is untrusted input, so
//! at most [`MAX_FAULT_FEEDS`] are made (each costs a pacer and two rings); a refusal (`fps` out
//! of the clip's reach) is remembered too, so it is logged once, not at every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nvrkit_media::WallTime;
use tokio::task::JoinHandle;

use super::{Feed, Feeds};
use crate::fault::FaultSet;

/// Most refusals remembered (so each is logged once), beside the loops.
const MAX_REFUSALS: usize = 64;

/// Most loops made for URL queries, over the server's life (refusals do not count).
const MAX_FAULT_FEEDS: usize = 32;

/// A loop made for a URL query, or why the path cannot be played so.
type Made = Result<Arc<Feed>, String>;

/// The loops made for URL queries, by path and frame faults.
#[derive(Debug, Default)]
pub(super) struct FaultFeeds {
    made: Mutex<HashMap<(String, FaultSet), Made>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl FaultFeeds {
    /// The loops made (refusals left out) as `path?frame faults`, sorted.
    pub(super) fn names(&self) -> Vec<String> {
        let Ok(made) = self.made.lock() else {
            return Vec::new();
        };
        let mut names: Vec<String> = made
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|((path, faults), _)| format!("{path}?{faults}"))
            .collect();
        names.sort();
        names
    }

    /// Waits for the pacers to end (after shutdown was signalled).
    pub(super) async fn join(&self) {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The faults that change a loop's frames here: `fps` and `sps_change_at_seam`
/// (`dts_backwards_at_seam` bends each session's timestamps, in its
/// [`Playout`](crate::rtsp::play::Playout)).
fn loop_faults(f: &FaultSet) -> FaultSet {
    FaultSet {
        fps: f.fps,
        sps_change_at_seam: f.sps_change_at_seam.clone(),
        ..FaultSet::default()
    }
}

impl Feeds {
    /// The feed a session of path `name` with `faults` reads: the path's own, unless `faults`
    /// asks for frame faults the path does not have; then a loop with them, made now (on the
    /// tokio runtime of the caller) or earlier. `Err`: why the path cannot be played so (the
    /// clip and the rate it reaches, the clip that cannot follow, or the cap reached).
    pub(crate) fn feed_for(
        &self,
        name: &str,
        faults: &FaultSet,
    ) -> Result<Option<Arc<Feed>>, String> {
        let Some(base) = self.feeds.get(name) else {
            return Ok(None);
        };
        let own = loop_faults(&base.info.faults);
        let want = own.with(&loop_faults(faults));
        if want == own {
            return Ok(Some(base.clone()));
        }
        let key = (name.to_owned(), want);
        let mut made = self
            .fault_feeds
            .made
            .lock()
            .map_err(|_| "the server is shutting down".to_owned())?;
        if let Some(r) = made.get(&key) {
            return r.clone().map(Some);
        }
        // Refusals never take a loop's place (16 unreachable `fps=` values would otherwise lock
        // every later query out); past MAX_REFUSALS they are no longer remembered, only logged
        // at debug level.
        let loops = made.values().filter(|r| r.is_ok()).count();
        if loops >= MAX_FAULT_FEEDS {
            return Err(format!(
                "path {name}: at most {MAX_FAULT_FEEDS} loops with frame faults are made for URL \
                 queries, and all are taken (a fault file serves more: loopcam --faults)"
            ));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err("no runtime to loop on".into());
        };
        let _guard = runtime.enter();
        let r = Feed::spawn(
            base.origin.clone(),
            name,
            base.info.faults.clone(),
            &key.1,
            &self.clips,
            &self.config,
            WallTime::now(),
            self.stop.clone(),
        );
        let r = match r {
            Ok((feed, task)) => {
                tracing::info!(path = name, faults = %key.1, "a loop of its own for these frame faults");
                if let Ok(mut t) = self.fault_feeds.tasks.lock() {
                    t.push(task);
                }
                Ok(feed)
            }
            Err(e) => {
                let refusals = made.len() - loops;
                if refusals >= MAX_REFUSALS {
                    tracing::debug!(path = name, "refused: {e}");
                    return Err(e.to_string());
                }
                tracing::warn!(path = name, "refused: {e}");
                Err(e.to_string())
            }
        };
        made.insert(key, r.clone());
        r.map(Some)
    }
}
