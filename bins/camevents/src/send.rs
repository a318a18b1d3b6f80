//! `camevents send`: a demo camera. Sends alarm mails to an SMTP server, one or many.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use nvrkit_smtp::client::{AlarmMail, Client, ClientAuth, ClientOptions, ClientTls};

const EXAMPLES: &str = "\
Examples:
  camevents send                                   # one motion alarm to 127.0.0.1:2525
  camevents send --to garage@nvr --attach snapshot.jpg --auth-user cam --auth-password secret
  camevents send --tls implicit --server 127.0.0.1:4650
  camevents send --count 10000 --concurrency 50    # load, with a progress bar";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct SendArgs {
    /// The SMTP server.
    #[arg(long, default_value = "127.0.0.1:2525")]
    server: SocketAddr,
    /// none, starttls or implicit.
    #[arg(long, default_value = "none", value_parser = ["none", "starttls", "implicit"])]
    tls: String,
    /// AUTH user (with --auth-password).
    #[arg(long, requires = "auth_password")]
    auth_user: Option<String>,
    /// AUTH password.
    #[arg(long, requires = "auth_user")]
    auth_password: Option<String>,
    /// AUTH mechanism: login or plain.
    #[arg(long, default_value = "login", value_parser = ["login", "plain"])]
    auth_mech: String,
    /// Envelope and header sender.
    #[arg(long, default_value = "camera@nvrkit.local")]
    from: String,
    /// Recipient (its local part names the camera for NVRs).
    #[arg(long, default_value = "nvr@nvrkit.local")]
    to: String,
    /// Subject.
    #[arg(long, default_value = "IPCamera: Motion Detected")]
    subject: String,
    /// Body; the default is a Hikvision-style alarm text.
    #[arg(long)]
    body: Option<String>,
    /// Attach a file (JPEG or PNG by extension). Repeatable.
    #[arg(long)]
    attach: Vec<PathBuf>,
    /// How many mails.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Connections at once (one mail per connection).
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
}

pub(crate) async fn run(args: SendArgs) -> Result<()> {
    let body = args.body.clone().unwrap_or_else(|| {
        "This is an automatically generated e-mail from your IPC.\n\nEVENT TYPE:     Motion Detected\n\
         EVENT TIME:     2015-05-22,14:52:18\nIPC NAME:       Demo Camera\nCHANNEL NUMBER: 1\n"
            .to_owned()
    });
    let mut mail =
        AlarmMail::new(&args.from, &args.to, &args.subject, &body).header("X-Mailer", "HIKMailer");
    for path in &args.attach {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map_or("snapshot.jpg".into(), |n| n.to_string_lossy().into_owned());
        let ctype = if name.to_ascii_lowercase().ends_with(".png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        mail = mail.attach(&name, ctype, data);
    }
    let mut options = ClientOptions::default().tls(match args.tls.as_str() {
        "starttls" => ClientTls::StartTls,
        "implicit" => ClientTls::Implicit,
        _ => ClientTls::None,
    });
    if let (Some(user), Some(pass)) = (&args.auth_user, &args.auth_password) {
        let mech = if args.auth_mech == "plain" {
            ClientAuth::Plain
        } else {
            ClientAuth::Login
        };
        options = options.auth(mech, user, pass);
    }
    let wire = Arc::new(mail.to_bytes());
    let options = Arc::new(options);
    let bar = if args.count > 1 {
        indicatif::ProgressBar::new(args.count).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} mails, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.clamp(1, args.count.max(1)) {
        let (next, wire, options, bar) = (
            Arc::clone(&next),
            Arc::clone(&wire),
            Arc::clone(&options),
            bar.clone(),
        );
        let (server, from, to) = (args.server, args.from.clone(), args.to.clone());
        workers.spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < args.count {
                let mut client = Client::connect(server, &options).await?;
                client.send(&from, &[&to], &wire).await?;
                client.quit().await?;
                bar.inc(1);
            }
            Ok::<(), nvrkit_smtp::Error>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.context("sender task")?
            .with_context(|| format!("sending to {}", args.server))?;
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "camevents send: {} mail(s) of {} bytes to smtp://{} in {:.2} s ({:.0} mails/s)",
        args.count,
        wire.len(),
        args.server,
        secs,
        args.count as f64 / secs.max(1e-9)
    );
    Ok(())
}
