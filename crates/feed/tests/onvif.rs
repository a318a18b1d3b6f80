//! The ONVIF devices and WS-Discovery responder over loopback (feature `onvif`): SOAP envelopes
//! shaped as onvif-zeep-async sends them, answers read back with quick-xml (through
//! `nvrkit_feed::onvif::soap::parse`), a directed Probe to 127.0.0.1. Clients connect from
//! 127.0.0.3, a hostile peer from 127.0.0.2.
#![cfg(feature = "onvif")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use nvrkit_feed::Clip;
use nvrkit_feed::onvif::soap::{self, Request};
use nvrkit_feed::onvif::{self, Onvif, auth::password_digest};
use nvrkit_feed::server::{Config, Server};
use nvrkit_media::{Demuxer, WallTime};
use nvrkit_testutil::hostile;

const CLIENT: [u8; 4] = [127, 0, 0, 3];
const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn sample(name: &str) -> Arc<Clip> {
    let demux = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
    Clip::load(name, &demux).unwrap()
}

/// RTSP on any loopback port, TCP only.
fn rtsp_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: false,
        ..Config::default()
    }
}

/// The devices on any loopback ports, no discovery.
async fn devices_on_loopback(devices: Vec<onvif::Device>) -> Onvif {
    Onvif::start(
        onvif::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            discovery_listen: None,
            ..onvif::Config::default()
        },
        devices,
    )
    .await
    .unwrap()
}

struct Rig {
    server: Server,
    onvif: Onvif,
}

async fn rig(credentials: Option<(&str, &str)>) -> Rig {
    rig_with(credentials, false).await
}

async fn rig_with(credentials: Option<(&str, &str)>, snapshot_basic: bool) -> Rig {
    let server = Server::start(rtsp_config(), vec![sample("bravo"), sample("alpha")])
        .await
        .unwrap();
    let onvif = Onvif::start(
        onvif::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            http: nvrkit_net::http::Config {
                request_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(2),
                ..nvrkit_net::http::Config::default()
            },
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            discovery_listen: Some("127.0.0.1:0".parse().unwrap()),
            snapshot_basic,
        },
        onvif::devices(&server),
    )
    .await
    .unwrap();
    Rig { server, onvif }
}

impl Rig {
    fn device(&self, name: &str) -> SocketAddr {
        self.onvif
            .devices()
            .iter()
            .find(|l| l.device.name == name)
            .unwrap()
            .addr
    }

    async fn stop(self) {
        self.onvif.shutdown().await;
        self.server.shutdown().await;
    }
}

/// A WS-Security header as zeep's UsernameToken(use_digest=True) writes it.
fn security(user: &str, pass: &str, nonce: &[u8], created: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        r#"<soap-env:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{}</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{}</wsse:Nonce><wsu:Created xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">{created}</wsu:Created></wsse:UsernameToken></wsse:Security></soap-env:Header>"#,
        password_digest(nonce, created, pass),
        b64.encode(nonce)
    )
}

fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope">{header}<soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"#
    )
}

fn device_action(action: &str) -> String {
    format!(r#"<ns0:{action} xmlns:ns0="http://www.onvif.org/ver10/device/wsdl"/>"#)
}

fn media_action(action: &str, inner: &str) -> String {
    format!(
        r#"<ns0:{action} xmlns:ns0="http://www.onvif.org/ver10/media/wsdl">{inner}</ns0:{action}>"#
    )
}

async fn post_raw(from: [u8; 4], to: SocketAddr, path: &str, body: String) -> hostile::Response {
    post_from(from, to, path, "", body).await
}

async fn post_with(to: SocketAddr, path: &str, headers: &str, body: String) -> hostile::Response {
    post_from(CLIENT, to, path, headers, body).await
}

/// A POST of `body` with extra `headers` (each line ending in CRLF).
async fn post_from(
    from: [u8; 4],
    to: SocketAddr,
    path: &str,
    headers: &str,
    body: String,
) -> hostile::Response {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/soap+xml; charset=utf-8\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        to.port(),
        body.len()
    );
    tokio::task::spawn_blocking(move || hostile::request(from, to, &req))
        .await
        .unwrap()
}

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `k="v"` of a challenge.
fn param<'a>(challenge: &'a str, key: &str) -> &'a str {
    let at = challenge.find(&format!("{key}=\"")).unwrap() + key.len() + 2;
    let rest = &challenge[at..];
    &rest[..rest.find('"').unwrap()]
}

/// `GET path` of a snapshot, with `extra` header lines; retried while the first keyframe is not
/// yet paced (503), up to a hang guard.
async fn snapshot(to: SocketAddr, path: &str, extra: &str) -> hostile::Response {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{extra}Connection: close\r\n\r\n",
        to.port()
    );
    for _ in 0..100 {
        let req = req.clone();
        let r = tokio::task::spawn_blocking(move || hostile::request(CLIENT, to, &req))
            .await
            .unwrap();
        if r.status != 503 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no keyframe in the ring before the hang guard");
}

/// A snapshot fetched as a Digest client does: the `401`'s challenge, then the answer
/// (`qop=auth`) for `user`/`pass`.
async fn snapshot_with_digest(
    to: SocketAddr,
    path: &str,
    user: &str,
    pass: &str,
) -> hostile::Response {
    let r = snapshot(to, path, "").await;
    assert_eq!(r.status, 401, "{}", r.head);
    let challenge = r.header("www-authenticate").unwrap().to_owned();
    let (realm, nonce) = (param(&challenge, "realm"), param(&challenge, "nonce"));
    let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
    let ha2 = md5_hex(&format!("GET:{path}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
    let header = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{path}\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\"\r\n"
    );
    snapshot(to, path, &header).await
}

async fn post(to: SocketAddr, body: String) -> (u16, Request) {
    let r = post_raw(CLIENT, to, "/onvif/device_service", body).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/soap+xml; charset=utf-8"),
        "{}",
        r.head
    );
    let parsed = soap::parse(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)));
    (r.status, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_and_media_services() {
    let rig = rig(None).await;
    let names: Vec<&str> = rig
        .onvif
        .devices()
        .iter()
        .map(|l| l.device.name.as_str())
        .collect();
    assert_eq!(names, ["alpha", "bravo"], "devices in clip-name order");
    let dev = rig.device("bravo");
    let rtsp_port = rig.server.local_addr().port();

    let (status, r) = post(dev, envelope("", &device_action("GetSystemDateAndTime"))).await;
    assert_eq!(status, 200);
    assert_eq!(r.action, "GetSystemDateAndTimeResponse");
    let year: i64 = r.field("Year").unwrap().parse().unwrap();
    assert!(year >= 2024);

    let (_, r) = post(dev, envelope("", &device_action("GetDeviceInformation"))).await;
    assert_eq!(r.field("Model"), Some("loopcam"));
    assert_eq!(r.field("SerialNumber"), Some("bravo"));

    let caps = envelope(
        "",
        r#"<ns0:GetCapabilities xmlns:ns0="http://www.onvif.org/ver10/device/wsdl"><ns0:Category>All</ns0:Category></ns0:GetCapabilities>"#,
    );
    let (_, r) = post(dev, caps).await;
    let xaddr = format!("http://127.0.0.1:{}/onvif/device_service", dev.port());
    assert_eq!(r.field("XAddr"), Some(xaddr.as_str()));

    let (_, r) = post(dev, envelope("", &device_action("GetServices"))).await;
    let namespaces: Vec<&str> = r
        .fields
        .iter()
        .filter(|(n, _)| n == "Namespace")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        namespaces,
        [
            "http://www.onvif.org/ver10/device/wsdl",
            "http://www.onvif.org/ver10/media/wsdl",
            "http://www.onvif.org/ver20/media/wsdl",
            "http://www.onvif.org/ver10/events/wsdl"
        ]
    );

    let (_, r) = post(dev, envelope("", &device_action("GetScopes"))).await;
    assert!(
        r.fields
            .iter()
            .any(|(n, v)| n == "ScopeItem" && v == "onvif://www.onvif.org/name/bravo")
    );
    let (_, r) = post(dev, envelope("", &device_action("GetHostname"))).await;
    assert_eq!(r.field("Name"), Some("loopcam-bravo"));
    let (_, r) = post(dev, envelope("", &device_action("GetNetworkInterfaces"))).await;
    assert_eq!(r.field("Address"), Some("127.0.0.1"));

    let (_, r) = post(dev, envelope("", &media_action("GetProfiles", ""))).await;
    assert_eq!(r.action, "GetProfilesResponse");
    assert_eq!(r.field("Encoding"), Some("H264"));
    assert_eq!(r.field("Width"), Some("640"), "{:?}", r.fields);
    assert_eq!(r.field("Height"), Some("360"));
    let (_, r) = post(dev, envelope("", &media_action("GetVideoSources", ""))).await;
    assert_eq!(r.field("Framerate"), Some("25.000"));
    let (_, r) = post(
        dev,
        envelope("", &media_action("GetVideoSourceConfigurations", "")),
    )
    .await;
    assert_eq!(r.field("SourceToken"), Some("source"));
    let (_, r) = post(
        dev,
        envelope("", &media_action("GetVideoEncoderConfigurations", "")),
    )
    .await;
    assert_eq!(r.field("FrameRateLimit"), Some("25"));

    let setup = r#"<ns0:StreamSetup><ns1:Stream xmlns:ns1="http://www.onvif.org/ver10/schema">RTP-Unicast</ns1:Stream><ns2:Transport xmlns:ns2="http://www.onvif.org/ver10/schema"><ns2:Protocol>RTSP</ns2:Protocol></ns2:Transport></ns0:StreamSetup><ns0:ProfileToken>main</ns0:ProfileToken>"#;
    let (status, r) = post(dev, envelope("", &media_action("GetStreamUri", setup))).await;
    assert_eq!(status, 200);
    let uri = format!("rtsp://127.0.0.1:{rtsp_port}/bravo");
    assert_eq!(r.field("Uri"), Some(uri.as_str()));
    assert_eq!(
        rig.server.urls("127.0.0.1")[1],
        uri,
        "the URL the RTSP server serves"
    );

    let (_, r) = post(
        dev,
        envelope(
            "",
            &media_action(
                "GetSnapshotUri",
                "<ns0:ProfileToken>main</ns0:ProfileToken>",
            ),
        ),
    )
    .await;
    let snap = format!("http://127.0.0.1:{}/snapshot/bravo.jpg", dev.port());
    assert_eq!(r.field("Uri"), Some(snap.as_str()));
    let s = snapshot(dev, "/snapshot/bravo.jpg", "").await;
    assert_eq!(s.status, 200, "{}", s.head);
    assert_eq!(s.header("content-type"), Some("image/jpeg"));
    assert_eq!(s.header("cache-control"), Some("no-cache"));
    assert_eq!(
        nvrkit_feed::snapshot::jpeg_size(&s.body),
        Some((640, 360)),
        "a JPEG at the clip's size"
    );
    // Revalidation with the ETag: 304 while the keyframe is the same (or 200 with a new one).
    let tag = s.header("etag").unwrap().to_owned();
    let again = snapshot(
        dev,
        "/snapshot/bravo.jpg",
        &format!("If-None-Match: {tag}\r\n"),
    )
    .await;
    assert!(
        (again.status == 304 && again.body.is_empty())
            || (again.status == 200 && again.header("etag") != Some(tag.as_str())),
        "{}",
        again.head
    );
    assert_eq!(snapshot(dev, "/snapshot/alpha.jpg", "").await.status, 404);
    assert_eq!(snapshot(dev, "/snapshot/bravo.png", "").await.status, 404);

    // Media2.
    let m2 = |action: &str, inner: &str| {
        envelope(
            "",
            &format!(
                r#"<ns0:{action} xmlns:ns0="http://www.onvif.org/ver20/media/wsdl">{inner}</ns0:{action}>"#
            ),
        )
    };
    let (_, r) = post(dev, m2("GetProfiles", "<ns0:Type>All</ns0:Type>")).await;
    assert_eq!(r.field("Encoding"), Some("H264"));
    let (_, r) = post(
        dev,
        m2(
            "GetStreamUri",
            "<ns0:Protocol>RtspUnicast</ns0:Protocol><ns0:ProfileToken>main</ns0:ProfileToken>",
        ),
    )
    .await;
    assert_eq!(r.field("Uri"), Some(uri.as_str()));

    // Faults.
    let (status, r) = post(dev, envelope("", &device_action("SystemReboot"))).await;
    assert_eq!(status, 500);
    assert_eq!(r.action, "Fault");
    let values: Vec<&str> = r
        .fields
        .iter()
        .filter(|(n, _)| n == "Value")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values, ["env:Receiver", "ter:ActionNotSupported"]);
    let (status, r) = post(
        dev,
        envelope(
            "",
            &media_action("GetStreamUri", "<ns0:ProfileToken>nope</ns0:ProfileToken>"),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(r.fields.iter().any(|(_, v)| v == "ter:NoProfile"));
    let (status, r) = post(dev, "<soap-env:Envelope><oops".to_string()).await;
    assert_eq!(status, 400);
    assert!(r.fields.iter().any(|(_, v)| v == "ter:WellFormed"));

    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_token_digest() {
    let rig = rig(Some(("admin", "secret"))).await;
    let dev = rig.device("alpha");
    let now = WallTime::now().to_rfc3339();

    // The clock is public: clients read it to date their tokens.
    let (status, _) = post(dev, envelope("", &device_action("GetSystemDateAndTime"))).await;
    assert_eq!(status, 200);

    // No credentials at all: 401 with an HTTP Digest challenge (ONVIF Core 5.9.1).
    let (status, r) = post(dev, envelope("", &device_action("GetDeviceInformation"))).await;
    assert_eq!(status, 401);
    assert!(r.fields.iter().any(|(_, v)| v == "ter:NotAuthorized"));

    let good = envelope(
        &security("admin", "secret", b"nonce-1", &now),
        &device_action("GetDeviceInformation"),
    );
    let (status, r) = post(dev, good.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(r.field("SerialNumber"), Some("alpha"));
    // The same token again is a replay.
    let (status, _) = post(dev, good).await;
    assert_eq!(status, 400);

    let wrong = envelope(
        &security("admin", "guess", b"nonce-2", &now),
        &device_action("GetDeviceInformation"),
    );
    assert_eq!(post(dev, wrong).await.0, 400);
    let old = WallTime::from_micros(WallTime::now().as_micros() - 10 * 60 * 1_000_000);
    let stale = envelope(
        &security("admin", "secret", b"nonce-3", &old.to_rfc3339()),
        &device_action("GetDeviceInformation"),
    );
    assert_eq!(post(dev, stale).await.0, 400);

    // The snapshot URL: HTTP Digest only, with the same credentials; Basic, even with the
    // right password, gets 401 and the Digest challenge.
    let r = snapshot(dev, "/snapshot/alpha.jpg", "").await;
    assert_eq!(r.status, 401);
    let challenges = |r: &hostile::Response| {
        r.head
            .lines()
            .filter_map(|l| l.strip_prefix("www-authenticate: "))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(challenges(&r), ["digest"], "{}", r.head);
    let r = snapshot(dev, "/snapshot/alpha.jpg", &basic("admin:secret")).await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(challenges(&r), ["digest"], "{}", r.head);
    assert!(String::from_utf8_lossy(&r.body).contains("Basic sends the password in clear"));
    let r = snapshot_with_digest(dev, "/snapshot/alpha.jpg", "admin", "secret").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let r = snapshot_with_digest(dev, "/snapshot/alpha.jpg", "admin", "guess").await;
    assert_eq!(r.status, 401, "{}", r.head);
    rig.stop().await;

    // Opted in (loopcam --snapshot-basic-auth): Basic is offered after Digest and taken.
    let rig = rig_with(Some(("admin", "secret")), true).await;
    let dev = rig.device("alpha");
    let r = snapshot(dev, "/snapshot/alpha.jpg", "").await;
    assert_eq!(challenges(&r), ["digest", "basic"], "{}", r.head);
    let r = snapshot(dev, "/snapshot/alpha.jpg", &basic("admin:guess")).await;
    assert_eq!(r.status, 401);
    let r = snapshot(dev, "/snapshot/alpha.jpg", &basic("admin:secret")).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let r = snapshot_with_digest(dev, "/snapshot/alpha.jpg", "admin", "secret").await;
    assert_eq!(r.status, 200, "{}", r.head);
    rig.stop().await;
}

fn basic(cred: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("Authorization: Basic {}\r\n", b64.encode(cred))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_stream_is_a_second_profile_of_the_same_device() {
    let server = Server::start(
        rtsp_config(),
        vec![sample("cam"), sample("cam/sub"), sample("other")],
    )
    .await
    .unwrap();
    let devices = onvif::devices(&server);
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["cam", "other"], "the sub stream is not a device");
    assert_eq!(devices[0].sub.as_ref().unwrap().path, "cam/sub");
    assert!(devices[1].sub.is_none());
    let onvif = devices_on_loopback(devices).await;
    let dev = onvif.devices()[0].addr;
    let rtsp_port = server.local_addr().port();
    let (status, r) = post(dev, envelope("", &media_action("GetProfiles", ""))).await;
    assert_eq!(status, 200);
    let tokens: Vec<&str> = r
        .fields
        .iter()
        .filter(|(n, _)| n == "Name")
        .map(|(_, v)| v.as_str())
        .filter(|v| *v == "main" || *v == "sub")
        .collect();
    assert_eq!(tokens, ["main", "sub"]);
    for (token, path) in [("main", "cam"), ("sub", "cam/sub")] {
        let (_, r) = post(
            dev,
            envelope(
                "",
                &media_action(
                    "GetStreamUri",
                    &format!("<ns0:ProfileToken>{token}</ns0:ProfileToken>"),
                ),
            ),
        )
        .await;
        let want = format!("rtsp://127.0.0.1:{rtsp_port}/{path}");
        assert_eq!(r.field("Uri"), Some(want.as_str()));
        let m2 = format!(
            r#"<ns0:GetStreamUri xmlns:ns0="http://www.onvif.org/ver20/media/wsdl"><ns0:Protocol>RtspUnicast</ns0:Protocol><ns0:ProfileToken>{token}</ns0:ProfileToken></ns0:GetStreamUri>"#
        );
        let (_, r) = post(dev, envelope("", &m2)).await;
        assert_eq!(r.field("Uri"), Some(want.as_str()));
    }
    let m2 = r#"<ns0:GetProfiles xmlns:ns0="http://www.onvif.org/ver20/media/wsdl"/>"#;
    let (_, r) = post(dev, envelope("", m2)).await;
    let encoders: Vec<&str> = r
        .fields
        .iter()
        .filter(|(n, v)| n == "Name" && v.starts_with("encoder_"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(encoders, ["encoder_main", "encoder_sub"]);
    onvif.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_stream_without_its_main_or_out_of_step_is_refused_at_start() {
    let e = Server::start(rtsp_config(), vec![sample("cam/sub")])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("main stream \"cam\""), "{e}");
    let ntsc = Demuxer::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/h264_ntsc_29.97.mp4"
    ))
    .unwrap();
    let sub = Clip::load("cam/sub", &ntsc).unwrap();
    let e = Server::start(rtsp_config(), vec![sample("cam"), sub])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("sub stream of cam"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_bounded() {
    let rig = rig(None).await;
    let dev = rig.device("alpha");
    // A body over the SOAP limit is refused unread.
    let big = envelope(
        "",
        &format!("<x>{}</x>", "a".repeat(soap::MAX_SOAP_BODY + 1)),
    );
    let r = post_raw(ATTACKER, dev, "/onvif/device_service", big).await;
    assert_eq!(r.status, 413);
    // Deep nesting is a fault, not a stack overflow.
    let deep = envelope(
        "",
        &format!("{}{}", "<a>".repeat(5_000), "</a>".repeat(5_000)),
    );
    let r = post_raw(ATTACKER, dev, "/onvif/device_service", deep).await;
    assert_eq!(r.status, 400);
    // A DTD is refused.
    let dtd = format!(
        "<!DOCTYPE x [<!ENTITY a \"{}\">]>{}",
        "a".repeat(100),
        envelope("", &device_action("GetHostname"))
    );
    let r = post_raw(ATTACKER, dev, "/onvif/device_service", dtd).await;
    assert_eq!(r.status, 400);
    // A client still gets its answer.
    let (status, _) = post(dev, envelope("", &device_action("GetHostname"))).await;
    assert_eq!(status, 200);
    rig.stop().await;
}

/// The devices' listeners are `nvrkit_net::http` servers: a half-sent request is cut at the
/// request deadline (1 s here), and a client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_is_cut_at_its_deadline() {
    use std::io::Write as _;
    let rig = rig(None).await;
    let dev = rig.device("alpha");
    let held = tokio::task::spawn_blocking(move || {
        let mut s = hostile::connect_from(ATTACKER, dev);
        s.write_all(b"POST /onvif/device_service HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        hostile::read_until_closed(&mut s)
    });
    let (status, _) = post(dev, envelope("", &device_action("GetHostname"))).await;
    assert_eq!(status, 200);
    assert!(
        held.await.unwrap().is_some(),
        "the half-sent request was cut before the hang guard"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_warning() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let device = |name: &str| onvif::Device {
        name: name.into(),
        rtsp_port: 8554,
        video: None,
        sub: None,
        snapshot: None,
    };
    // (No RTSP server: devices are plain descriptions.)
    let onvif = Onvif::start(
        onvif::Config {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            discovery_listen: None,
            ..onvif::Config::default()
        },
        vec![device("alpha"), device("bravo")],
    )
    .await
    .unwrap();
    let names: Vec<&str> = onvif
        .devices()
        .iter()
        .map(|l| l.device.name.as_str())
        .collect();
    // alpha's port is taken: a warning; bravo (port + 1) is served unless that one is taken
    // too by someone else.
    assert!(!names.contains(&"alpha"));
    if let Some(l) = onvif.devices().first() {
        assert_eq!(l.addr.port(), port + 1);
    }
    onvif.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directed_probe_gets_every_clip() {
    let rig = rig(None).await;
    let to = rig.onvif.discovery_addr().unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let probe = r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action><a:MessageID>urn:uuid:11111111-2222-3333-4444-555555555555</a:MessageID><a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"#;
    // Garbage first: ignored, the responder goes on.
    sock.send_to(b"<not xml", to).await.unwrap();
    sock.send_to(probe.as_bytes(), to).await.unwrap();
    let mut xaddrs = Vec::new();
    let mut buf = vec![0u8; 65536];
    while xaddrs.len() < 2 {
        let (n, from) = tokio::time::timeout(hostile::HANG_GUARD, sock.recv_from(&mut buf))
            .await
            .expect("ProbeMatches before the hang guard")
            .unwrap();
        assert_eq!(from, to);
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            text.contains(
                "<wsa:RelatesTo>urn:uuid:11111111-2222-3333-4444-555555555555</wsa:RelatesTo>"
            ),
            "{text}"
        );
        let r = soap::parse(&buf[..n]).unwrap();
        assert_eq!(r.action, "ProbeMatches");
        xaddrs.push(r.field("XAddrs").unwrap().to_owned());
    }
    xaddrs.sort();
    let mut want: Vec<String> = ["alpha", "bravo"]
        .iter()
        .map(|n| {
            format!(
                "http://127.0.0.1:{}/onvif/device_service",
                rig.device(n).port()
            )
        })
        .collect();
    want.sort();
    assert_eq!(xaddrs, want);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_digest_on_soap() {
    let rig = rig(Some(("admin", "secret"))).await;
    let dev = rig.device("alpha");
    let path = "/onvif/device_service";
    let body = envelope("", &device_action("GetDeviceInformation"));
    let r = post_with(dev, path, "", body.clone()).await;
    assert_eq!(r.status, 401, "{}", r.head);
    let challenge = r.header("www-authenticate").unwrap().to_owned();
    assert!(
        challenge.to_ascii_lowercase().starts_with("digest "),
        "{challenge}"
    );
    let (realm, nonce) = (param(&challenge, "realm"), param(&challenge, "nonce"));
    let answer = |pass: &str, nc: &str, uri: &str| {
        let ha1 = md5_hex(&format!("admin:{realm}:{pass}"));
        let ha2 = md5_hex(&format!("POST:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:abcdef:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"admin\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc={nc}, cnonce=\"abcdef\", response=\"{response}\"\r\n"
        )
    };
    let r = post_with(dev, path, &answer("secret", "00000001", path), body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        soap::parse(&r.body).unwrap().field("SerialNumber"),
        Some("alpha")
    );
    // The same nc again is a replay; a wrong password is refused; Basic is not taken.
    let r = post_with(dev, path, &answer("secret", "00000001", path), body.clone()).await;
    assert_eq!(r.status, 401);
    let r = post_with(dev, path, &answer("guess", "00000002", path), body.clone()).await;
    assert_eq!(r.status, 401);
    let basic = "Authorization: Basic YWRtaW46c2VjcmV0\r\n";
    assert_eq!(post_with(dev, path, basic, body.clone()).await.status, 401);
    // A right answer without qop (RFC 2069 style, no nc to count) is refused: it could be
    // replayed as any action on this path.
    let ha1 = md5_hex(&format!("admin:{realm}:secret"));
    let ha2 = md5_hex(&format!("POST:{path}"));
    let no_qop = format!(
        "Authorization: Digest username=\"admin\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{path}\", response=\"{}\"\r\n",
        md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
    );
    assert_eq!(
        post_with(dev, path, &no_qop, body.clone()).await.status,
        401
    );
    // The digest's uri must be the path it is sent to.
    let media = "/onvif/media_service";
    let r = post_with(dev, media, &answer("secret", "00000003", path), body).await;
    assert_eq!(r.status, 401);
    rig.stop().await;
}

fn events_action(action: &str, inner: &str) -> String {
    format!(
        r#"<ns0:{action} xmlns:ns0="http://www.onvif.org/ver10/events/wsdl">{inner}</ns0:{action}>"#
    )
}

/// Motion values (`IsMotion`, `State`) and their `PropertyOperation`s in a PullMessages answer.
fn motion(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split("<tt:Message ")
        .skip(1)
        .map(|m| {
            let op = param(m, "PropertyOperation").to_owned();
            let data = m.split("<tt:Data>").nth(1).unwrap();
            (param(data, "Value").to_owned(), op)
        })
        .collect()
}

/// A subscription holds at most one waiting PullMessages: a second pull ends the first, which
/// would otherwise wait its whole 30 s (thousands in parallel pinned the listener's connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_pull_ends_the_waiting_one() {
    let rig = rig(None).await;
    let dev = rig.device("alpha");
    let create = envelope(
        "",
        &events_action(
            "CreatePullPointSubscription",
            "<ns0:InitialTerminationTime>PT60S</ns0:InitialTerminationTime>",
        ),
    );
    let (status, r) = post(dev, create).await;
    assert_eq!(status, 200);
    let address = r.field("Address").unwrap().to_owned();
    let path = address
        .strip_prefix(&format!("http://127.0.0.1:{}", dev.port()))
        .unwrap()
        .to_owned();
    let pull = |timeout: &str| {
        envelope(
            "",
            &events_action(
                "PullMessages",
                &format!(
                    "<ns0:Timeout>{timeout}</ns0:Timeout><ns0:MessageLimit>10</ns0:MessageLimit>"
                ),
            ),
        )
    };
    // Drain the Initialized messages first, so the next pulls wait.
    assert_eq!(post_raw(CLIENT, dev, &path, pull("PT1S")).await.status, 200);
    let first = tokio::spawn({
        let (path, body) = (path.clone(), pull("PT30S"));
        async move { post_raw(CLIENT, dev, &path, body).await }
    });
    let second = tokio::spawn({
        let (path, body) = (path.clone(), pull("PT30S"));
        async move {
            // After the first is waiting.
            tokio::time::sleep(Duration::from_millis(500)).await;
            post_raw(CLIENT, dev, &path, body).await
        }
    });
    // Hang guard only: without the turn the first waits its full 30 s.
    let r = tokio::time::timeout(Duration::from_secs(15), first)
        .await
        .expect("the first pull was not ended by the second")
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        motion(&r.body).is_empty(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    second.abort();
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_point_subscription_gets_motion() {
    let rig = rig(None).await;
    let dev = rig.device("alpha");
    let (status, r) = post(dev, envelope("", &events_action("GetEventProperties", ""))).await;
    assert_eq!(status, 200);
    assert_eq!(r.action, "GetEventPropertiesResponse");
    let create = envelope(
        "",
        &events_action(
            "CreatePullPointSubscription",
            "<ns0:InitialTerminationTime>PT60S</ns0:InitialTerminationTime>",
        ),
    );
    let (status, r) = post(dev, create.clone()).await;
    assert_eq!(status, 200);
    let address = r.field("Address").unwrap().to_owned();
    let path = address
        .strip_prefix(&format!("http://127.0.0.1:{}", dev.port()))
        .unwrap()
        .to_owned();
    assert!(path.starts_with("/onvif/events/subscription/"), "{path}");
    let pull = |timeout: &str| {
        envelope(
            "",
            &events_action(
                "PullMessages",
                &format!(
                    "<ns0:Timeout>{timeout}</ns0:Timeout><ns0:MessageLimit>10</ns0:MessageLimit>"
                ),
            ),
        )
    };
    let r = post_raw(CLIENT, dev, &path, pull("PT1S")).await;
    assert_eq!(r.status, 200);
    let initialized = ("false".to_owned(), "Initialized".to_owned());
    assert_eq!(
        motion(&r.body),
        [initialized.clone(), initialized],
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // A long poll in flight gets the motion published while it waits.
    let waiting = tokio::spawn({
        let path = path.clone();
        let body = pull("PT20S");
        async move { post_raw(CLIENT, dev, &path, body).await }
    });
    let hub = rig.onvif.events("alpha").unwrap();
    let utc = WallTime::now();
    // Publish until the waiting poll has it (it may not have been read yet at the first).
    let mut published = 0;
    while !waiting.is_finished() && published < 100 {
        hub.publish(true, utc, WallTime::now());
        published += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200);
    let got = motion(&r.body);
    assert!(
        !got.is_empty() && got.iter().all(|(v, op)| v == "true" && op == "Changed"),
        "{got:?}"
    );
    assert!(
        String::from_utf8_lossy(&r.body).contains(&format!("UtcTime=\"{}\"", utc.to_rfc3339()))
    );
    // Unsubscribe ends it; a pull then is a fault.
    let un = envelope(
        "",
        r#"<ns0:Unsubscribe xmlns:ns0="http://docs.oasis-open.org/wsn/b-2"/>"#,
    );
    assert_eq!(post_raw(CLIENT, dev, &path, un).await.status, 200);
    assert_eq!(post_raw(CLIENT, dev, &path, pull("PT1S")).await.status, 400);
    // At most 16 live subscriptions per device: one more evicts one rather than being refused.
    let max = nvrkit_feed::onvif::events::MAX_SUBSCRIPTIONS;
    for _ in 0..=max {
        let (status, r) = post(dev, create.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(r.action, "CreatePullPointSubscriptionResponse");
    }
    let hub = rig.onvif.events("alpha").unwrap();
    assert_eq!(hub.subscriptions(WallTime::now()), max);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_clip_serves_its_sidecar_jpeg_or_501_with_the_reason() {
    let hevc = |name: &str| {
        let d = Demuxer::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/h265_hvc1.mp4"
        ))
        .unwrap();
        Clip::load(name, &d).unwrap()
    };
    // A real JPEG for the sidecar: the sample's first keyframe, through the H.264 path.
    let clip = sample("x");
    let v = clip.master();
    let nvrkit_media::CodecParams::H264(params) = &clip.tracks()[v].params else {
        panic!("the sample is H.264");
    };
    let key = clip.frames(v).iter().find(|f| f.keyframe).unwrap();
    let (jpeg, _, _) = nvrkit_feed::snapshot::h264_to_jpeg(params, &key.data, 85).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("withjpg.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let sidecar = nvrkit_feed::snapshot::load_sidecar(&file).unwrap().unwrap();
    assert_eq!((sidecar.width, sidecar.height), (640, 360));
    assert_eq!(
        nvrkit_feed::snapshot::load_sidecar(&dir.path().join("none.jpg")).unwrap(),
        None
    );

    let server = Server::start(rtsp_config(), vec![hevc("bare"), hevc("withjpg")])
        .await
        .unwrap();
    let devices = onvif::devices_with(&server, |name| (name == "withjpg").then(|| sidecar.clone()));
    let onvif = devices_on_loopback(devices).await;
    let addr = |name: &str| {
        onvif
            .devices()
            .iter()
            .find(|l| l.device.name == name)
            .unwrap()
            .addr
    };
    let r = snapshot(addr("bare"), "/snapshot/bare.jpg", "").await;
    assert_eq!(r.status, 501);
    let reason = String::from_utf8_lossy(&r.body);
    assert!(
        reason.contains("H.265") && reason.contains("bare.jpg"),
        "{reason}"
    );
    let r = snapshot(addr("withjpg"), "/snapshot/withjpg.jpg", "").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.body, jpeg.as_ref(), "the sidecar, as it is");
    onvif.shutdown().await;
    server.shutdown().await;
}
