//! loopcam's command line.

#[test]
fn help_follows_the_cli_vocabulary() {
    nvrkit_testutil::check_cli_vocabulary(
        "loopcam",
        std::path::Path::new(env!("CARGO_BIN_EXE_loopcam")),
    );
}
