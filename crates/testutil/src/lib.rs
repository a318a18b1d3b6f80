//! Test helpers shared by nvrkit's test suites (a dev-dependency only): where the workspace is,
//! where the third-party sample clips are, and peers the interop tests start ([`peers`]).
//!
//! The clips (`bigbuckbunny.mp4`, `bikes.mp4`) live outside the repository, in
//! `../shared/testdata` beside the checkout, or wherever `NVRKIT_SHARED_TESTDATA` points
//! (`.ci/run` sets it).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod hostile;
pub mod peers;

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

/// One row of the CLI vocabulary table (docs/architecture.md, "CLI vocabulary").
#[derive(Clone, Debug)]
pub struct VocabularyRow {
    /// The flag, `--like-this`.
    pub flag: String,
    /// `(binary, subcommand)` pairs that must have the flag.
    pub required: Vec<(String, Option<String>)>,
    /// Pairs that may have it (required ones and the planned ones).
    pub allowed: Vec<(String, Option<String>)>,
    /// Old spellings, accepted as hidden aliases and never shown.
    pub old: Vec<String>,
}

const BINARIES: [&str; 6] = [
    "camevents",
    "loopcam",
    "nvr",
    "rtsp-load",
    "segstore",
    "tileserve",
];

/// Reads the table in docs/architecture.md.
///
/// # Panics
/// If the file or the table is missing.
pub fn cli_vocabulary() -> Vec<VocabularyRow> {
    let path = workspace_root().join("docs/architecture.md");
    let text = std::fs::read_to_string(&path).expect("docs/architecture.md");
    let section = text
        .split("\n## CLI vocabulary")
        .nth(1)
        .expect("a `## CLI vocabulary` section in docs/architecture.md");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | flag | value | meaning | binaries | old |  ->  ["", flag, value, meaning, bins, old, ""]
        if cells.len() < 7 || !cells[1].starts_with("`--") {
            continue;
        }
        let flag = cells[1].trim_matches('`').to_owned();
        let (now, planned) = match cells[4].split_once("(planned:") {
            Some((now, planned)) => (now, planned.trim_end_matches(')')),
            None => (cells[4], ""),
        };
        let required = parse_binaries(now);
        let mut allowed = required.clone();
        allowed.extend(parse_binaries(planned));
        let old = cells[5]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        rows.push(VocabularyRow {
            flag,
            required,
            allowed,
            old,
        });
    }
    assert!(!rows.is_empty(), "no rows in the CLI vocabulary table");
    rows
}

/// `nvr, segstore ls, export` -> (nvr, None), (segstore, ls), (segstore, export).
fn parse_binaries(cell: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut current: Option<&str> = None;
    for entry in cell.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut words = entry.split_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some(bin) = BINARIES.iter().find(|b| **b == first) {
            current = Some(bin);
            out.push((bin.to_string(), words.next().map(str::to_owned)));
        } else if let Some(bin) = current {
            out.push((bin.to_owned(), Some(first.to_owned())));
        }
    }
    out
}

/// The long flags an `--help` text offers (`--help` and `--version` left out).
pub fn help_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let line = match line.strip_prefix('-') {
            // `-o, --output <OUTPUT>`
            Some(rest) if !rest.starts_with('-') => match rest.split_once(", ") {
                Some((_, long)) => long,
                None => continue,
            },
            Some(_) => line,
            None => continue,
        };
        if let Some(flag) = line
            .split([' ', '='])
            .next()
            .filter(|f| f.starts_with("--") && *f != "--help" && *f != "--version")
        {
            flags.push(flag.to_owned());
        }
    }
    flags
}

fn help_of(exe: &Path, sub: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(sub).arg("--help");
    let out = cmd.output().expect("running --help");
    assert!(
        out.status.success(),
        "{} {sub:?} --help failed",
        exe.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks a binary's `--help` (and every subcommand's) against the CLI vocabulary table: every
/// flag the table lists for it is there, every table flag it shows lists it, and no old
/// spelling shows.
///
/// # Panics
/// With every mismatch found.
pub fn check_cli_vocabulary(binary: &str, exe: &Path) {
    let rows = cli_vocabulary();
    let top = help_of(exe, None);
    let mut contexts: Vec<Option<String>> = vec![None];
    if let Some(commands) = top.split("Commands:\n").nth(1) {
        for line in commands.lines() {
            if !line.starts_with("  ") {
                break;
            }
            match line.split_whitespace().next() {
                Some("help") | None => {}
                Some(sub) => contexts.push(Some(sub.to_owned())),
            }
        }
    }
    let mut problems = Vec::new();
    for ctx in &contexts {
        let help = match ctx {
            None => top.clone(),
            Some(sub) => help_of(exe, Some(sub)),
        };
        let shown = help_flags(&help);
        let here = (binary.to_owned(), ctx.clone());
        let name = match ctx {
            Some(sub) => format!("{binary} {sub}"),
            None => binary.to_owned(),
        };
        for row in &rows {
            if row.required.contains(&here) && !shown.contains(&row.flag) {
                problems.push(format!("`{name} --help` lacks {}", row.flag));
            }
            if shown.contains(&row.flag) && !row.allowed.contains(&here) {
                problems.push(format!(
                    "`{name}` shows {}, but the table does not list it there",
                    row.flag
                ));
            }
            for old in &row.old {
                if shown.contains(old) {
                    problems.push(format!(
                        "`{name}` shows the old spelling {old} (the table says {})",
                        row.flag
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "CLI vocabulary (docs/architecture.md) mismatches:\n{}",
        problems.join("\n")
    );
    check_completions_and_man(binary, exe);
}

/// Every binary has `completions SHELL` and `man` (nvrkit_cli::docs): the bash script registers
/// a completion function for the binary and names its flags, the man page is roff titled with
/// the binary's name.
fn check_completions_and_man(binary: &str, exe: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(exe)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{binary} {args:?}: {e}"));
        assert!(out.status.success(), "{binary} {args:?}: {}", out.status);
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let bash = run(&["completions", "bash"]);
    // clap_complete spells a `-` in the name `__` in the function's name.
    let function = binary.replace('-', "__");
    assert!(
        bash.contains(&format!("complete -F _{function} ")) && bash.contains("--help"),
        "{binary} completions bash:\n{bash}"
    );
    assert!(run(&["completions", "zsh"]).contains(&format!("#compdef {binary}")));
    // A reader that went away (`BINARY completions bash | head -1`) is no failure: stdout is a
    // pipe whose reading end is closed, so every write fails with EPIPE.
    for args in [&["completions", "bash"][..], &["man"][..]] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = std::process::Command::new(exe)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap_or_else(|e| panic!("{binary} {args:?}: {e}"));
        assert!(
            out.status.success(),
            "{binary} {args:?} into a closed pipe: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let man = run(&["man"]);
    assert!(
        man.contains(&format!(".TH {binary} 1")) && man.contains(".SH OPTIONS"),
        "{binary} man:\n{man}"
    );
}
