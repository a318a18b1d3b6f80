//! Benchmark support of nvrkit. The criterion benches live in `benches/`; this library holds
//! the load client `rtsp-load` ([`rtsp_load`], binary `src/bin/rtsp-load.rs`), so that its
//! counting is unit-tested and its integration test drives it in-process.

pub mod rtsp_load;
