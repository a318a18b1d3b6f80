//! Arbitrary bytes as a day `manifest.json` read back from a replication target (an S3
//! endpoint or a NAS is not trusted). Nothing may panic; a manifest that parses round-trips.
//! Built on `nvrkit-replicate` without its `s3` feature: no object_store, no reqwest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvrkit_replicate::manifest::{MAX_MANIFEST_BYTES, Manifest, ManifestError};

fuzz_target!(|data: &[u8]| {
    match Manifest::parse(data) {
        Ok(m) => assert_eq!(Manifest::parse(&m.to_bytes()).ok(), Some(m)),
        Err(ManifestError::TooLarge { .. }) => assert!(data.len() as u64 > MAX_MANIFEST_BYTES),
        Err(_) => {}
    }
});
