//! Arbitrary bytes as a stored frame whose SEI stamp `nvr selftest` reads
//! (`nvrkit_feed::stamp::read`): no panic, linear time; and a stamp put in front of any frame
//! (itself arbitrary) reads back as the index it carries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    let h265 = mode & 1 == 1;
    let _ = nvrkit_feed::stamp::read(frame, h265);
    let mut idx = [0u8; 8];
    for (d, s) in idx.iter_mut().zip(frame) {
        *d = *s;
    }
    let index = u64::from_le_bytes(idx);
    let stamped = nvrkit_feed::stamp::stamp(frame, index, h265);
    assert_eq!(nvrkit_feed::stamp::read(&stamped, h265), Some(index));
});
