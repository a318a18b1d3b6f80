//! Criterion benchmarks of nvrkit live in `benches/`; this library is empty on purpose.
