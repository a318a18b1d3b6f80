//! Shell completions and a man page for every binary: the same two subcommands everywhere,
//! `BINARY completions SHELL` and `BINARY man`, generated from the binary's own clap command so
//! they never disagree with `--help`.
//!
//! ```
//! use clap::{CommandFactory, Parser};
//!
//! /// A demo binary.
//! #[derive(Parser)]
//! #[command(name = "demo")]
//! struct Cli {
//!     /// Where to listen.
//!     #[arg(long)]
//!     listen: Option<String>,
//! }
//!
//! let mut script = Vec::new();
//! nvrkit_cli::docs::write_completions(Cli::command(), clap_complete::Shell::Bash, &mut script).unwrap();
//! assert!(String::from_utf8(script).unwrap().contains("--listen"));
//! let mut page = Vec::new();
//! nvrkit_cli::docs::write_man(Cli::command(), &mut page).unwrap();
//! assert!(String::from_utf8(page).unwrap().starts_with(".ie"));
//! ```

use std::io::Write;

pub use clap_complete::Shell;

/// The arguments of `BINARY completions SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for (bash, zsh, fish, elvish, powershell).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes `cmd`'s completion script for `shell`: source it (bash:
/// `source <(loopcam completions bash)`) or install it where the shell looks.
///
/// The script is made in memory first: clap_complete panics on a failed write (a closed pipe,
/// `loopcam completions bash | head`), this returns the error.
pub fn write_completions(
    mut cmd: clap::Command,
    shell: Shell,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out.write_all(&script)
}

/// Writes `cmd`'s man page (roff, section 1) with every subcommand's options after it:
/// `loopcam man > loopcam.1` (`man ./loopcam.1` shows it).
pub fn write_man(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let cmd = cmd.disable_help_subcommand(true);
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let full = format!("{name}-{}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(full.clone())).title(full);
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
    }
    Ok(())
}

/// `BINARY completions SHELL`: the script on stdout (a closed pipe is an error here, which
/// [`DocsCommand::run`] turns into success through [`crate::exit`]).
pub fn print_completions(cmd: clap::Command, shell: Shell) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    write_completions(cmd, shell, &mut out)?;
    out.flush()
}

/// `BINARY man`: the man page on stdout.
pub fn print_man(cmd: clap::Command) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    write_man(cmd, &mut out)?;
    out.flush()
}

/// The two subcommands every binary has, flattened into its own subcommand enum:
///
/// ```
/// use clap::{CommandFactory, Parser, Subcommand};
///
/// #[derive(Parser)]
/// #[command(name = "demo")]
/// struct Cli {
///     #[command(subcommand)]
///     command: Option<Command>,
/// }
///
/// #[derive(Subcommand)]
/// enum Command {
///     #[command(flatten)]
///     Docs(nvrkit_cli::docs::DocsCommand),
/// }
///
/// let cli = Cli::parse_from(["demo", "completions", "bash"]);
/// assert!(matches!(cli.command, Some(Command::Docs(_))));
/// ```
#[derive(Debug, clap::Subcommand)]
pub enum DocsCommand {
    /// Write the shell completion script to stdout, e.g. `source <(BINARY completions bash)`.
    Completions(CompletionsArgs),
    /// Write the man page (roff) to stdout, e.g. `BINARY man > BINARY.1`.
    Man,
}

impl DocsCommand {
    /// Runs the subcommand for the binary whose clap command is `cmd` (`Cli::command()`), and
    /// returns `main`'s exit code.
    pub fn run(&self, cmd: clap::Command) -> std::process::ExitCode {
        let name = cmd.get_name().to_owned();
        let result = match self {
            DocsCommand::Completions(a) => print_completions(cmd, a.shell),
            DocsCommand::Man => print_man(cmd),
        };
        crate::exit(&name, result)
    }
}
