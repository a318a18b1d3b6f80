//! nvr's event inputs against hostile peers (issue 14): alarm mails over SMTP, event JSON posted
//! to the API, and the range queries of the API. Each attack comes from 127.0.0.2; a client on
//! 127.0.0.3 must get its normal answer. Outcomes only, never timings (waits are hang guards).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use base64::Engine as _;
use nvrkit_testutil::hostile::{ATTACKER, CLIENT, connect_from, eventually, get, request};

mod common;
use common::{Nvr, assert_api_served, start};

/// The truncation marker of `nvrkit_store::note`.
const TRUNCATED: &str = "…[truncated]";

/// A blocking SMTP dialogue from one loopback address.
struct Smtp {
    read: BufReader<TcpStream>,
    write: TcpStream,
}

impl Smtp {
    /// Connects from `from` and reads the `220` greeting.
    fn connect(from: [u8; 4], to: SocketAddr) -> Smtp {
        let s = connect_from(from, to);
        let mut smtp = Smtp {
            read: BufReader::new(s.try_clone().unwrap()),
            write: s,
        };
        assert_eq!(smtp.reply().0, 220);
        smtp
    }

    /// One reply: its code and its text, lines joined.
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.read.read_line(&mut line).unwrap() > 0,
                "closed before a reply; got {text:?}"
            );
            text.push_str(&line);
            // `250-` continues a reply, `250 ` ends it.
            if line.as_bytes().get(3) != Some(&b'-') {
                return (
                    line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0),
                    text,
                );
            }
        }
    }

    /// Sends `line` (CRLF added) and reads the reply.
    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// `MAIL`, `RCPT`, `DATA`, the message and its end; the reply to the end of data.
    fn send(&mut self, to: &str, message: &[u8]) -> (u16, String) {
        assert_eq!(self.cmd("MAIL FROM:<cam@camera.lan>").0, 250);
        assert_eq!(self.cmd(&format!("RCPT TO:<{to}>")).0, 250);
        assert_eq!(self.cmd("DATA").0, 354);
        self.write.write_all(message).unwrap();
        self.write.write_all(b"\r\n.\r\n").unwrap();
        self.reply()
    }
}

/// An alarm mail for camera `demo` with this subject (folded every 76 bytes or so).
fn alarm_mail(subject: &str) -> Vec<u8> {
    let mut m = b"From: cam@camera.lan\r\nTo: demo@nvr\r\nSubject:".to_vec();
    for word in subject.as_bytes().chunks(76) {
        m.extend_from_slice(b" ");
        m.extend_from_slice(word);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(
        b"X-Mailer: HIKMailer\r\n\r\nEVENT TYPE: Motion Detected\r\nIPC NAME: demo\r\n",
    );
    m
}

/// `GET path` from the legitimate client, as JSON, with status 200.
fn json(n: &Nvr, path: &str) -> serde_json::Value {
    let r = get(CLIENT, n.addr, &n.addr.to_string(), path);
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// The events nvr lists, once there are `count`.
fn events(n: &Nvr, count: usize) -> Vec<serde_json::Value> {
    eventually(&format!("{count} events listed"), || {
        let list = json(n, "/api/events");
        let list = list.as_array()?;
        (list.len() == count).then(|| list.clone())
    })
}

/// Waits until the demo camera's ring holds some video, so an event has footage to record.
fn wait_for_footage(n: &Nvr) {
    eventually("the demo camera's first frames", || {
        let cams = json(n, "/api/cameras");
        cams[0]["ring"]["frames"]
            .as_u64()
            .is_some_and(|f| f >= 25)
            .then_some(())
    });
}

/// A POST of `body` as JSON to `/api/events` from `from`.
fn post_event(n: &Nvr, from: [u8; 4], body: &str) -> nvrkit_testutil::hostile::Response {
    request(
        from,
        n.addr,
        &format!(
            "POST /api/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            n.addr,
            body.len()
        ),
    )
}

/// A well-formed event for camera `demo` with this subject.
fn event_json(subject: &str) -> String {
    format!(
        r#"{{"v":1,"phase":"start","received_at":"2000-01-01T00:00:00Z","vendor":"generic","camera":"demo","kind":"motion","subject":"{subject}","from":"t@x","to":["demo@nvr"],"snapshots":[],"source":{{"peer":null,"helo":"x","auth_user":null,"tls":false,"mail_from":"t@x"}}}}"#
    )
}

#[test]
fn a_megabyte_subject_is_kept_and_tagged_as_a_bounded_note() {
    let n = start(&["--pre", "1s", "--post", "1s"]);
    wait_for_footage(&n);
    let subject = "Motion Detected ".repeat(65_536); // 1 MiB
    let mut attacker = Smtp::connect(ATTACKER, n.smtp);
    assert_eq!(attacker.cmd("EHLO attacker").0, 250);
    let (code, text) = attacker.send("demo@nvr", &alarm_mail(&subject));
    assert_eq!(code, 250, "the mail is accepted: {text}");
    let _ = attacker.cmd("QUIT");

    // The event is recorded for camera demo, and what nvr keeps of it is bounded.
    let e = events(&n, 1).remove(0);
    assert_eq!(e["cameras"][0], "demo", "{e}");
    let kept = e["event"]["subject"].as_str().unwrap();
    assert!(kept.starts_with("Motion Detected"), "{kept}");
    assert!(kept.ends_with(TRUNCATED), "{kept}");
    assert!(serde_json::to_vec(&e["event"]).unwrap().len() <= 4096);

    // Its clip's range carries the event's tag, with the same bounded note.
    let url = e["clips"][0]["url"].as_str().unwrap();
    let query = url.split_once('?').unwrap().1;
    let tag = eventually("the event's tag", || {
        let rec = json(&n, &format!("/api/recordings?{query}"));
        rec["tags"].as_array()?.first().cloned()
    });
    assert_eq!(tag["tag"], "event", "{tag}");
    let note = &tag["note"];
    let bytes = serde_json::to_vec(note).unwrap().len();
    assert!(bytes <= 4096, "the stored note is {bytes} bytes");
    let stored = note["subject"].as_str().unwrap();
    assert!(stored.ends_with(TRUNCATED), "{stored}");
    assert!(stored.starts_with("Motion Detected"), "{stored}");

    // A camera's ordinary mail and an API client are still served.
    let mut camera = Smtp::connect(CLIENT, n.smtp);
    assert_eq!(camera.cmd("EHLO camera").0, 250);
    assert_eq!(
        camera.send("demo@nvr", &alarm_mail("Motion Detected")).0,
        250
    );
    assert_api_served(&n);
    assert_eq!(events(&n, 2)[0]["event"]["subject"], "Motion Detected");
}

#[test]
fn mail_without_auth_is_refused_when_smtp_auth_is_set() {
    let n = start(&["--smtp-auth", "cam:secret"]);
    let mut attacker = Smtp::connect(ATTACKER, n.smtp);
    let (code, ehlo) = attacker.cmd("EHLO attacker");
    assert_eq!(code, 250);
    assert!(ehlo.contains("AUTH"), "AUTH is offered: {ehlo}");
    let (code, text) = attacker.cmd("MAIL FROM:<cam@camera.lan>");
    assert_eq!(code, 530, "MAIL without AUTH: {text}");
    let wrong = base64::engine::general_purpose::STANDARD.encode("\0cam\0guess");
    assert_eq!(attacker.cmd(&format!("AUTH PLAIN {wrong}")).0, 535);
    assert_eq!(attacker.cmd("MAIL FROM:<cam@camera.lan>").0, 530);
    let _ = attacker.cmd("QUIT");

    let mut camera = Smtp::connect(CLIENT, n.smtp);
    assert_eq!(camera.cmd("EHLO camera").0, 250);
    let creds = base64::engine::general_purpose::STANDARD.encode("\0cam\0secret");
    let (code, text) = camera.cmd(&format!("AUTH PLAIN {creds}"));
    assert_eq!(code, 235, "{text}");
    let (code, text) = camera.send("demo@nvr", &alarm_mail("Motion Detected"));
    assert_eq!(code, 250, "{text}");
    let _ = camera.cmd("QUIT");

    // Only the authenticated camera's mail became an event.
    let e = events(&n, 1).remove(0);
    assert_eq!(e["event"]["source"]["auth_user"], "cam", "{e}");
    assert_eq!(e["cameras"][0], "demo");
    assert_api_served(&n);
}

#[test]
fn an_oversized_event_json_is_refused() {
    let n = start(&[]);
    // One byte over the 64 KiB limit of the event parser (well under the 2 MiB body limit).
    let over = event_json(&"M".repeat(64 * 1024));
    assert!(over.len() > 64 * 1024);
    let r = post_event(&n, ATTACKER, &over);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let why = String::from_utf8_lossy(&r.body);
    assert!(why.contains("limit of 65536 bytes"), "{why}");

    // JSON nested 10,000 deep, well under the size limit.
    let deep = format!(
        r#"{{"v":1,"x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let r = post_event(&n, ATTACKER, &deep);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let why = String::from_utf8_lossy(&r.body);
    assert!(why.contains("deeper than the limit of 16"), "{why}");
    for junk in ["\u{7f}\u{0}", "{", "[]", r#"{"v":99}"#] {
        let r = post_event(&n, ATTACKER, junk);
        assert_eq!(
            r.status,
            400,
            "{junk:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(
        json(&n, "/api/events"),
        serde_json::json!([]),
        "no event from them"
    );

    // A normal event posted after is accepted and listed.
    let r = post_event(&n, CLIENT, &event_json("after the attack"));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(events(&n, 1)[0]["event"]["subject"], "after the attack");
    assert_api_served(&n);
}

#[test]
fn a_hostile_range_query_is_refused() {
    let n = start(&[]);
    let host = n.addr.to_string();
    let huge = "9".repeat(40);
    let ok_from = "2026-11-25T12:00:00Z";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("camera=demo&from={huge}&to={ok_from}"),
            "not an RFC 3339 time",
        ),
        (
            format!("camera=demo&from={huge}-01-01T00:00:00Z&to={ok_from}"),
            "not an RFC 3339 time",
        ),
        (
            format!("camera=demo&from=2026-11-25T12:00:00.{huge}{huge}Z&to=2026-11-25T11:00:00Z"),
            "must be after from",
        ),
        (
            "camera=demo&from=2026-11-25T12:00:00%2B99:99&to=2026-11-25T13:00:00Z".into(),
            "not an RFC 3339 time",
        ),
        (
            "camera=demo&from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59.999999Z".into(),
            "over the limit of 3600 s",
        ),
        ("camera=..%2F..%2Fetc&from=a&to=b".into(), "camera="),
        ("camera=%ff%fe&from=a&to=b".into(), "not UTF-8"),
        ("camera=demo&camera=yard".into(), "more than once"),
        ("a=1&".repeat(1000), "more than 32 parameters"),
        // Past the parser's 8 KiB limit, within the 64 KiB request header.
        (
            format!(
                "camera=demo&from={ok_from}&to={ok_from}&pad={}",
                "x".repeat(60 << 10)
            ),
            "over the limit of 8192 bytes",
        ),
        (String::new(), "camera= is required"),
    ];
    for (query, want) in &cases {
        let r = get(ATTACKER, n.addr, &host, &format!("/api/export.mp4?{query}"));
        let why = String::from_utf8_lossy(&r.body);
        let short = &query[..query.len().min(80)];
        assert_eq!(r.status, 400, "{short}: {why}");
        assert!(why.contains(want), "{short}: {why}");
        assert!(
            why.len() < 1024,
            "the refusal quotes its input short: {why}"
        );
    }
    // /api/recordings reads the same parser.
    let r = get(
        ATTACKER,
        n.addr,
        &host,
        &format!("/api/recordings?{}", cases[0].0),
    );
    assert_eq!(r.status, 400);
    // A 100 KiB query is past the 64 KiB request-header limit: hyper refuses it (414) before
    // any handler runs, or closes; never a server error.
    let r = get(
        ATTACKER,
        n.addr,
        &host,
        &format!("/api/export.mp4?camera=demo&pad={}", "x".repeat(100 << 10)),
    );
    assert!(
        r.status == 0 || (400..500).contains(&r.status),
        "{}",
        r.head
    );
    assert_api_served(&n);
    let rec = json(
        &n,
        "/api/recordings?camera=demo&from=2026-11-25T12%3A00%3A00Z&to=2026-11-25T12%3A01%3A00Z",
    );
    assert_eq!(rec["camera"], "demo");
}

#[test]
fn the_short_event_form_maps_to_its_camera_and_a_typo_is_refused() {
    let n = start(&[]);
    let r = post_event(&n, CLIENT, r#"{"camera":"demo","kind":"motion"}"#);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let list = events(&n, 1);
    assert_eq!(list[0]["cameras"][0], "demo", "{list:?}");
    assert_eq!(list[0]["kind"], "motion", "{list:?}");
    let r = post_event(&n, CLIENT, r#"{"camera":"demo","knid":"motion"}"#);
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body).contains("knid"),
        "the refusal names the unknown key"
    );
}
