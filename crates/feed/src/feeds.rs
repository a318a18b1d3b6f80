//! The catalog of served paths: each clip's loop ([`Feed`]: its [`StreamInfo`], its rings and
//! the pacer filling them, [`crate::pacer`]), the fault-file aliases (a ring of their own when
//! their faults change frames), the loops made for URL queries (`fault_feeds`), and the live
//! sources served beside them. The session core looks paths up through [`Catalog`]; the
//! socket layer asks it which rings a PLAY may read. No sockets here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nvrkit_media::WallTime;
use nvrkit_ring::Ring;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fault::FaultSet;
use crate::fault::frames::{LoopGeometry, loop_clip};
use crate::loop_source::{Clip, LoopSource};
use crate::pacer::{Lateness, PacingStats, Timing, pace};
use crate::rtsp::core::{Catalog, StreamInfo};
use crate::rtsp::driver::Rings;
use crate::source::LiveSource;

mod fault_feeds;

/// What a PLAY may read ([`Feeds::rings`]).
pub(crate) type PlayRings = (Rings<Ring>, Option<crate::source::Tracks>);

/// One served path: its description and the ring its pacer fills.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) info: Arc<StreamInfo>,
    pub(crate) ring: Ring,
    /// The same loop, video frames only: clients that set up only the video read this one, so
    /// they are not woken for audio frames they would drop (72 wakeups a second become 25 for a
    /// 25 fps clip with 48 kHz AAC, at every one of hundreds of clients).
    pub(crate) video_ring: Ring,
    pub(crate) clip: Arc<Clip>,
    /// The served clip `clip` was made from by frame faults (`clip` itself without them).
    origin: Arc<Clip>,
    pacing: Arc<Mutex<Lateness>>,
}

impl Feed {
    /// A path playing `origin` with `faults` (its own, announced in its [`StreamInfo`]) and the
    /// frame faults of `loop_faults` applied to its loop ([`loop_clip`]; `served` are the clips
    /// `sps_change_at_seam` may name), and the pacer task filling its own rings from
    /// `start_wall` on. Refused when the frame faults cannot be applied to the clip.
    #[allow(clippy::too_many_arguments)] // reason: the path, its loop and the server's clock
    fn spawn(
        origin: Arc<Clip>,
        name: &str,
        faults: FaultSet,
        loop_faults: &FaultSet,
        served: &[Arc<Clip>],
        config: &Config,
        start_wall: WallTime,
        stop: watch::Receiver<bool>,
    ) -> Result<(Arc<Feed>, JoinHandle<()>)> {
        let clip = loop_clip(&origin, loop_faults, served)?;
        let ring_config = nvrkit_ring::Config::new()
            .max_duration(config.ring_duration)
            .max_bytes(256 << 20)
            .video_stream(clip.master());
        let all: Vec<usize> = (0..clip.tracks().len()).collect();
        let (writer, ring) = nvrkit_ring::ring(
            ring_config
                .clone()
                .max_frames(clip.ring_frames(&all, config.ring_duration)),
        )?;
        let (video_writer, video_ring) = nvrkit_ring::ring(
            ring_config.max_frames(clip.ring_frames(&[clip.master()], config.ring_duration)),
        )?;
        let mut source = LoopSource::new(clip.clone(), start_wall);
        if config.stamp_frames {
            source = source.stamped();
        }
        let pacing = Arc::new(Mutex::new(Lateness::new()));
        // Scripted alarms are cued on the clip's own path only (an alias or a fault loop of it
        // would raise each alarm again).
        let cues = match &config.alarms {
            Some(tap) if name == origin.name() && loop_faults.is_empty() => tap.cues(&clip)?,
            _ => None,
        };
        let task = tokio::spawn(pace(
            source,
            writer,
            Some(video_writer),
            pacing.clone(),
            stop,
            Timing::EachFrame,
            cues,
        ));
        let info = StreamInfo {
            faults,
            laps: Some(clip.laps()),
            geometry: Some(LoopGeometry::of(&clip)),
            ..StreamInfo::new(name, clip.tracks().to_vec())
        };
        let feed = Feed {
            info: Arc::new(info),
            ring,
            video_ring,
            clip,
            origin,
            pacing,
        };
        Ok((Arc::new(feed), task))
    }

    /// Another path reading `base`'s rings, with faults of its own that do not change frames.
    fn alias(base: &Feed, name: &str, faults: FaultSet) -> Arc<Feed> {
        let info = StreamInfo {
            name: name.to_owned(),
            faults,
            ..StreamInfo::clone(&base.info)
        };
        Arc::new(Feed {
            info: Arc::new(info),
            ring: base.ring.clone(),
            video_ring: base.video_ring.clone(),
            clip: base.clip.clone(),
            origin: base.origin.clone(),
            pacing: base.pacing.clone(),
        })
    }
}

/// Every served path: the clips' loops and aliases, the live sources, and the loops made for URL
/// queries whose faults change frames.
#[derive(Debug)]
pub(crate) struct Feeds {
    pub(crate) feeds: HashMap<String, Arc<Feed>>,
    /// Rings filled elsewhere (a camera's), served as they come ([`LiveSource`]).
    pub(crate) live: HashMap<String, LiveSource>,
    config: Config,
    /// Every served clip (what `sps_change_at_seam=CLIP` names).
    clips: Vec<Arc<Clip>>,
    /// Loops of their own for URL queries whose faults change frames.
    fault_feeds: fault_feeds::FaultFeeds,
    /// Shutdown, for the pacers of [`Feeds::fault_feeds`].
    stop: watch::Receiver<bool>,
}

impl Feeds {
    /// Starts looping every clip (and every fault alias whose faults change frames) from the
    /// same instant, until `shutdown` says so: the catalog, and the pacer tasks. Clip names must
    /// be unique; a clip named `NAME/sub` is the sub stream of clip `NAME`, which must be there,
    /// with a loop aligned with it ([`crate::substream::check_aligned`]). Every path (clip,
    /// fault alias, live source) must be unique.
    pub(crate) fn start(
        config: &Config,
        clips: Vec<Arc<Clip>>,
        live: Vec<LiveSource>,
        shutdown: &watch::Sender<bool>,
    ) -> Result<(Feeds, Vec<JoinHandle<()>>)> {
        let mut tasks = Vec::new();
        let mut feeds = HashMap::new();
        let start_wall = WallTime::now();
        // A clip's loop with `faults` (those that change frames shape the loop), its pacer kept.
        let mut spawn = |clip: &Arc<Clip>, name: &str, faults: &FaultSet| {
            let stop = shutdown.subscribe();
            let (feed, task) = Feed::spawn(
                clip.clone(),
                name,
                faults.clone(),
                faults,
                &clips,
                config,
                start_wall,
                stop,
            )?;
            tasks.push(task);
            Ok::<_, Error>(feed)
        };
        for clip in &clips {
            let name = clip.name().to_owned();
            if feeds.contains_key(&name) {
                return Err(Error::DuplicateName(name));
            }
            let feed = spawn(clip, &name, &FaultSet::default())?;
            feeds.insert(name, feed);
        }
        // Fault-file aliases: the clip's ring, unless their faults change frames.
        for a in &config.aliases {
            let Some(clip) = clips.iter().find(|c| c.name() == a.clip) else {
                return Err(Error::Unusable {
                    name: a.alias.clone(),
                    what: format!(
                        "the fault file names clip {:?}, which is not served",
                        a.clip
                    ),
                });
            };
            if feeds.contains_key(&a.alias) {
                return Err(Error::DuplicateName(a.alias.clone()));
            }
            let feed = if a.faults.changes_frames() {
                spawn(clip, &a.alias, &a.faults)?
            } else {
                let base = &feeds[clip.name()];
                Feed::alias(base, &a.alias, a.faults.clone())
            };
            feeds.insert(a.alias.clone(), feed);
        }
        // A sub stream (`NAME/sub`) needs its main stream, and a loop aligned with it.
        for (name, feed) in &feeds {
            if let Some(main) = crate::substream::main_of(name) {
                let Some(main) = feeds.get(main) else {
                    return Err(Error::Unusable {
                        name: name.clone(),
                        what: format!(
                            "a sub stream needs its main stream {main:?}, which is not served"
                        ),
                    });
                };
                crate::substream::check_aligned(&main.clip, &feed.clip)?;
            }
        }
        let mut live_sources = HashMap::new();
        for l in live {
            if feeds.contains_key(l.name()) || live_sources.contains_key(l.name()) {
                return Err(Error::DuplicateName(l.name().to_owned()));
            }
            live_sources.insert(l.name().to_owned(), l);
        }
        let feeds = Feeds {
            feeds,
            live: live_sources,
            config: config.clone(),
            clips,
            fault_feeds: fault_feeds::FaultFeeds::default(),
            stop: shutdown.subscribe(),
        };
        Ok((feeds, tasks))
    }

    /// The rings a PLAY of `stream` with `faults` may read (the driver chooses,
    /// [`Driver::ring`](crate::rtsp::driver::Driver::ring)), and for a
    /// live source the watch of its tracks (its sessions end when they change). `None`: the
    /// path is gone, or the live source's tracks changed since `stream` was described (the
    /// client must describe again).
    pub(crate) fn rings(&self, stream: &StreamInfo, faults: &FaultSet) -> Option<PlayRings> {
        if let Some(feed) = self.feed_for(&stream.name, faults).ok().flatten() {
            let rings = Rings {
                master: feed.clip.master(),
                all: feed.ring.clone(),
                video: Some(feed.video_ring.clone()),
            };
            return Some((rings, None));
        }
        let live = self.live.get(&stream.name)?;
        let (watch, same) = live.watch_from(&stream.tracks);
        let rings = Rings {
            master: live.video_stream(),
            all: live.ring().clone(),
            video: None,
        };
        same.then_some((rings, Some(watch)))
    }

    /// The loops made for URL queries (`path?frame faults`, sorted).
    pub(crate) fn frame_variants(&self) -> Vec<String> {
        self.fault_feeds.names()
    }

    /// How punctually the pacer of path `name` released its frames so far.
    pub(crate) fn pacing(&self, name: &str) -> Option<PacingStats> {
        let l = self.feeds.get(name)?.pacing.lock().ok()?;
        Some(l.stats())
    }

    /// Waits for the pacers of the loops made for URL queries to end (after shutdown).
    pub(crate) async fn join(&self) {
        self.fault_feeds.join().await;
    }
}

impl Catalog for Feeds {
    fn stream(&self, name: &str) -> Option<Arc<StreamInfo>> {
        match self.feeds.get(name) {
            Some(f) => Some(f.info.clone()),
            None => self.live.get(name).and_then(LiveSource::info),
        }
    }

    fn stream_with(
        &self,
        name: &str,
        faults: &FaultSet,
    ) -> std::result::Result<Option<Arc<StreamInfo>>, String> {
        match self.feed_for(name, faults)? {
            Some(f) => Ok(Some(f.info.clone())),
            // A live source takes no frame faults of its own: its stream as it is.
            None => Ok(self.live.get(name).and_then(LiveSource::info)),
        }
    }
}
