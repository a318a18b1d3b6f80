//! Test helpers shared by nvrkit's test suites (a dev-dependency only): where the workspace is,
//! and where the third-party sample clips are.
//!
//! The clips (`bigbuckbunny.mp4`, `bikes.mp4`) live outside the repository, in
//! `../shared/testdata` beside the checkout, or wherever `NVRKIT_SHARED_TESTDATA` points
//! (`.ci/run` sets it).

use std::path::{Path, PathBuf};

/// The workspace root (this crate sits at `crates/testutil`).
pub fn workspace_root() -> PathBuf {
    // Not canonicalized: `../shared` is meant beside the checkout as it was reached.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the third-party clips: `NVRKIT_SHARED_TESTDATA`, else `../shared/testdata`
/// beside the workspace.
pub fn shared_testdata_dir() -> PathBuf {
    std::env::var_os("NVRKIT_SHARED_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/testdata"))
}

/// The path of the third-party clip `name`.
///
/// # Panics
/// If the file is missing, naming it and the variable to set: the tests that call this need it.
pub fn shared_testdata(name: &str) -> PathBuf {
    let p = shared_testdata_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing (set NVRKIT_SHARED_TESTDATA)",
        p.display()
    );
    p
}
