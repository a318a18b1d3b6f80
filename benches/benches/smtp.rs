//! nvrkit-smtp: the sans-I/O session (whole dialogues, as bytes arrive from a socket) and event
//! extraction per vendor profile. See docs/benchmarks.md for figures and the whole-process load
//! comparison against Postfix's smtp-sink and other SMTP servers.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nvrkit_media::WallTime;
use nvrkit_smtp::client::{AlarmMail, dot_stuff};
use nvrkit_smtp::{Message, Session, SessionConfig, SessionEvent, extract};

/// One connection's client bytes: EHLO, AUTH, envelope, DATA with `mail`, QUIT.
fn dialogue(mail: &[u8]) -> Vec<u8> {
    let mut wire =
        b"EHLO cam\r\nAUTH PLAIN AGNhbQBwdw==\r\nMAIL FROM:<cam@x>\r\nRCPT TO:<nvr@x>\r\nDATA\r\n"
            .to_vec();
    wire.extend_from_slice(&dot_stuff(mail));
    wire.extend_from_slice(b"QUIT\r\n");
    wire
}

fn run_session(cfg: &Arc<SessionConfig>, wire: &[u8], read_size: usize) -> usize {
    let mut session = Session::new(Arc::clone(cfg), false);
    let mut bytes = 0;
    for piece in wire.chunks(read_size) {
        let mut at = 0;
        while at < piece.len() {
            let fed = session.feed(&piece[at..]);
            at += fed.consumed;
            if let Some(SessionEvent::Message(m)) = fed.event {
                bytes += m.data.len();
            }
        }
        session.clear_output();
    }
    bytes
}

fn jpeg(size: usize) -> Vec<u8> {
    // Not a real image: the parser only base64-decodes it, and pseudo-random bytes encode like one.
    let mut x: u32 = 0x1234_5678;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn camera_mail(snapshots: usize, size: usize) -> Vec<u8> {
    let mut mail = AlarmMail::new(
        "ipc@cams.example",
        "garage@nvr",
        "IPCamera: Motion Detected",
        "EVENT TYPE: Motion Detected\nEVENT TIME: 2015-05-22,14:52:18\nIPC NAME: Garage\nCHANNEL NUMBER: 1\n",
    )
    .header("X-Mailer", "HIKMailer");
    for i in 0..snapshots {
        mail = mail.attach(&format!("ch01_{i}.jpg"), "image/jpeg", jpeg(size));
    }
    mail.to_bytes()
}

fn session(c: &mut Criterion) {
    let cfg = Arc::new(SessionConfig::default());
    let mut group = c.benchmark_group("smtp/session");
    for (name, mail) in [
        (
            "4KiB",
            format!("Subject: t\r\n\r\n{}\r\n", "x".repeat(76))
                .repeat(52)
                .into_bytes(),
        ),
        ("camera_3x100KB", camera_mail(3, 100_000)),
    ] {
        let wire = dialogue(&mail);
        assert!(run_session(&cfg, &wire, 16 * 1024) > 0);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("{name}_16KiB_reads"), |b| {
            b.iter(|| run_session(&cfg, black_box(&wire), 16 * 1024))
        });
    }
    // Unwrapped base64 (one 130 KB line), as many cameras send it.
    let mut mail = b"Subject: t\r\n\r\n".to_vec();
    mail.extend(std::iter::repeat_n(b'Q', 130_000));
    mail.extend_from_slice(b"\r\n");
    let wire = dialogue(&mail);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("unwrapped_130KB_line", |b| {
        b.iter(|| run_session(&cfg, black_box(&wire), 64 * 1024))
    });
    group.finish();
}

fn vendors(c: &mut Criterion) {
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/smtp/testdata/");
    let mut group = c.benchmark_group("smtp/extract");
    let now = WallTime::from_micros(1_700_000_000_000_000);
    for name in ["hikvision_ipc", "hikvision_nvr", "dahua", "reolink", "axis"] {
        let data = std::fs::read(format!("{testdata}{name}.eml")).expect("test mail");
        let message = Message::new("cam@x", vec!["nvr@x".to_owned()], data);
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| b.iter(|| extract(black_box(&message), None, now)));
    }
    let message = Message::new("cam@x", vec!["nvr@x".to_owned()], camera_mail(3, 100_000));
    group.throughput(Throughput::Elements(1));
    group.bench_function("hikvision_3x100KB_jpeg", |b| {
        b.iter(|| extract(black_box(&message), None, now))
    });
    let event = extract(&message, None, now);
    group.bench_function("to_json", |b| b.iter(|| black_box(&event).to_json()));
    group.finish();
}

/// Whole transaction written at once on an open connection (MAIL, RCPT, DATA, 4 KiB, final dot,
/// pipelined) until the event comes out of the server's channel: an upper bound on the delay
/// between the end of DATA and the event.
fn server(c: &mut Criterion) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = nvrkit_smtp::ServerConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        tls: nvrkit_smtp::TlsSource::Disabled,
        ..Default::default()
    };
    let (server, mut events) = runtime
        .block_on(nvrkit_smtp::Server::start(config))
        .expect("server");
    let addr = server.info().listen.expect("listener");
    let mut stream = runtime.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.write_all(b"EHLO bench\r\n").await.expect("write");
        s
    });
    let mut transaction = b"MAIL FROM:<cam@x>\r\nRCPT TO:<nvr@x>\r\nDATA\r\n".to_vec();
    transaction.extend_from_slice(&dot_stuff(
        format!("Subject: Motion\r\n\r\n{}\r\n", "x".repeat(76))
            .repeat(52)
            .as_bytes(),
    ));
    let mut sink = vec![0u8; 64 * 1024];
    c.bench_function("smtp/server/transaction_to_event_4KiB", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let start = std::time::Instant::now();
                    stream.write_all(&transaction).await.expect("write");
                    events.recv().await.expect("event");
                    total += start.elapsed();
                    // Drain the replies so the socket buffer never fills.
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_millis(1),
                        stream.read(&mut sink),
                    )
                    .await;
                }
                total
            })
        })
    });
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, session, vendors, server);
criterion_main!(benches);
