//! Arbitrary bytes as an MP4 file: open, read every frame, remux what was read. Nothing may
//! panic; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_media::Demuxer;
use nvrkit_media::mux::FragmentedMuxer;

fuzz_target!(|data: &[u8]| {
    let Ok(demux) = Demuxer::from_bytes("fuzz", bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut mux = FragmentedMuxer::new(demux.tracks()).ok();
    for frame in demux.frames() {
        let Ok(frame) = frame else { continue };
        if let Some(m) = mux.as_mut()
            && m.push(frame).is_err()
        {
            mux = None;
        }
    }
    if let Some(mut m) = mux {
        let _ = m.finish();
    }
    for track in demux.tracks() {
        let _ = track.params.rfc6381();
    }
});
