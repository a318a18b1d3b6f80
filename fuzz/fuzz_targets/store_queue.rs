//! Arbitrary bytes as the replication queue journal (`.replicate/queue.jsonl`): the parser, the
//! fold, compaction and the scheduler's questions on whatever it yields. Nothing may panic, and
//! compaction must keep every pending segment and upload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_store::queue::{QueueState, parse};

fuzz_target!(|data: &[u8]| {
    let (records, valid) = parse(data);
    assert!(valid <= data.len());
    let state = QueueState::from_records(&records);
    for e in state.entries.values() {
        let _ = state.is_pending(&e.camera, e.start_us);
    }
    // Compacting and folding again keeps what is pending and every upload in progress.
    let compacted = state.compacted();
    let mut bytes = Vec::new();
    for r in &compacted {
        bytes.extend_from_slice(&r.to_line());
    }
    let (again, n) = parse(&bytes);
    assert_eq!(n, bytes.len());
    let state2 = QueueState::from_records(&again);
    assert_eq!(state2.pending_keys(), state.pending_keys());
    for (k, e) in &state2.entries {
        assert_eq!(e.uploads, state.entries[k].uploads);
    }
});
