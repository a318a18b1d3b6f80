//! The faults through the session core: requests in, responses and packets out, no sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nvrkit_media::{Demuxer, Frame, WallTime};
use rtsp_types::{HeaderName, Response, headers};

use crate::loop_source::{Clip, LoopSource};
use crate::rtp::{Outgoing, Route};
use crate::rtsp::auth::Auth;
use crate::rtsp::core::tests::{One, catalog, conn_with, req};
use crate::rtsp::core::{Action, Connection, FAULT_AUTH, StreamInfo, serialize, split_query};
use crate::rtsp::play::RtpConfig;

fn conn() -> Connection {
    conn_with(None, RtpConfig::default())
}

fn status(r: &Response<Vec<u8>>) -> u16 {
    r.status().into()
}

fn header<'a>(r: &'a Response<Vec<u8>>, name: &HeaderName) -> Option<&'a str> {
    r.header(name).map(|v| v.as_str())
}

const TCP: &str = "RTP/AVP/TCP;unicast;interleaved=0-1";
const UDP: &str = "RTP/AVP;unicast;client_port=5000-5001";

fn setup(c: &mut Connection, cat: &One, url: &str, transport: &str) -> Response<Vec<u8>> {
    let text = format!("SETUP {url} RTSP/1.0\r\nCSeq: 2\r\nTransport: {transport}\r\n\r\n");
    c.handle(&req(&text), cat).0
}

fn describe(c: &mut Connection, cat: &One, url: &str) -> Response<Vec<u8>> {
    c.handle(
        &req(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        cat,
    )
    .0
}

#[test]
fn denytcp_and_denyudp_answer_461_for_that_transport_only() {
    let cat = catalog();
    let url = "rtsp://h/sample/trackID=0?denytcp";
    assert_eq!(status(&setup(&mut conn(), &cat, url, TCP)), 461);
    assert_eq!(status(&setup(&mut conn(), &cat, url, UDP)), 200);
    // A client offering both gets the one allowed.
    let both = format!("{TCP},{UDP}");
    let r = setup(&mut conn(), &cat, url, &both);
    assert!(
        header(&r, &headers::TRANSPORT)
            .unwrap()
            .contains("client_port=5000")
    );
    let url = "rtsp://h/sample/trackID=0?denyudp";
    assert_eq!(status(&setup(&mut conn(), &cat, url, UDP)), 461);
    assert_eq!(status(&setup(&mut conn(), &cat, url, TCP)), 200);
    // Without the query the same path serves both.
    let url = "rtsp://h/sample/trackID=0";
    assert_eq!(status(&setup(&mut conn(), &cat, url, TCP)), 200);
}

#[test]
fn with_a_query_the_sdp_and_rtp_info_carry_absolute_urls_with_the_query_last() {
    let cat = catalog();
    let mut c = conn();
    let r = describe(&mut c, &cat, "rtsp://h/sample?drop=1%25&denyudp");
    assert_eq!(status(&r), 200);
    let base = "rtsp://127.0.0.1:8554/sample/";
    assert_eq!(
        header(&r, &headers::CONTENT_BASE),
        Some(format!("{base}?denyudp&drop=1%25").as_str())
    );
    let sdp = String::from_utf8(r.body().clone()).unwrap();
    let controls: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=control:"))
        .collect();
    assert_eq!(
        controls,
        [
            "*".to_owned(),
            format!("{base}trackID=0?denyudp&drop=1%25"),
            format!("{base}trackID=1?denyudp&drop=1%25"),
        ]
    );
    // The client SETUPs the control URL as given; PLAY goes to the Content-Base.
    let r = setup(&mut c, &cat, controls[1], TCP);
    assert_eq!(status(&r), 200);
    assert!(c.session().unwrap().faults.deny_udp);
    let (_, a) = c.handle(
        &req(&format!(
            "PLAY {base}?denyudp&drop=1%25 RTSP/1.0\r\nCSeq: 3\r\n\r\n"
        )),
        &cat,
    );
    assert_eq!(a, Action::Play);
    let r = c.play_response("3", &[(0, 1, 2)]);
    let info = header(&r, &HeaderName::from_static_str("RTP-Info").unwrap()).unwrap();
    assert_eq!(info, format!("url={};seq=1;rtptime=2", controls[1]));
    // Without a query: relative controls, as before.
    let r = describe(&mut conn(), &cat, "rtsp://h/sample");
    let sdp = String::from_utf8(r.body().clone()).unwrap();
    assert!(sdp.contains("a=control:trackID=0\r\n"));
}

#[test]
fn a_query_is_read_after_the_track_and_before_it() {
    assert_eq!(
        split_query("/bikes", Some("denytcp/trackID=0")),
        ("/bikes/trackID=0".into(), Some("denytcp".into()))
    );
    assert_eq!(
        split_query("/bikes/trackID=1", Some("denytcp")),
        ("/bikes/trackID=1".into(), Some("denytcp".into()))
    );
    // A value with a `/` (a sub stream's path) stays in the query; it was cut at its `/`.
    assert_eq!(
        split_query("/bikes", Some("sps_change_at_seam=cam/sub")),
        ("/bikes".into(), Some("sps_change_at_seam=cam/sub".into()))
    );
    assert_eq!(
        split_query("/bikes", Some("sps_change_at_seam=cam/sub/trackID=0")),
        (
            "/bikes/trackID=0".into(),
            Some("sps_change_at_seam=cam/sub".into())
        )
    );
    let cat = catalog();
    // A client that joined `trackID=0` after the query.
    let r = setup(&mut conn(), &cat, "rtsp://h/sample?denytcp/trackID=0", TCP);
    assert_eq!(status(&r), 461);
}

#[test]
fn a_setup_without_the_query_keeps_the_described_faults() {
    let cat = catalog();
    let mut c = conn();
    describe(&mut c, &cat, "rtsp://h/sample?denytcp");
    let r = setup(&mut c, &cat, "rtsp://h/sample/trackID=0", TCP);
    assert_eq!(status(&r), 461, "a client that dropped the query");
    // A second SETUP naming other faults cannot join the session.
    let mut c = conn();
    setup(&mut c, &cat, "rtsp://h/sample/trackID=0?stall=2s", TCP);
    let text = format!(
        "SETUP rtsp://h/sample/trackID=1?stall=3s RTSP/1.0\r\nCSeq: 3\r\nSession: {}\r\nTransport: {TCP}\r\n\r\n",
        c.session().unwrap().id
    );
    assert_eq!(status(&c.handle(&req(&text), &cat).0), 459);
}

#[test]
fn a_bad_query_is_a_400_that_says_why() {
    let cat = catalog();
    for url in [
        "rtsp://h/sample?denytpc",
        "rtsp://h/sample?noidr=5parsecs",
        &format!("rtsp://h/sample?{}", "a".repeat(2000)),
    ] {
        let r = describe(&mut conn(), &cat, url);
        assert_eq!(status(&r), 400, "{url}");
        let body = String::from_utf8(r.body().clone()).unwrap();
        assert!(body.contains("fault"), "{body}");
    }
}

fn challenges(r: &Response<Vec<u8>>) -> Vec<String> {
    String::from_utf8(serialize(r))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(|c| c.split(' ').next().unwrap().to_owned())
        .collect()
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn auth_asks_for_the_one_scheme_on_that_path_only() {
    let cat = catalog();
    let describe_with = |url: &str, auth: Option<String>| {
        let extra = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let text = format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n{extra}\r\n");
        conn().handle(&req(&text), &cat).0
    };
    assert_eq!(status(&describe_with("rtsp://h/sample", None)), 200);
    let r = describe_with("rtsp://h/sample?auth=basic", None);
    assert_eq!((status(&r), challenges(&r)), (401, vec!["Basic".into()]));
    let r = describe_with("rtsp://h/sample?auth=digest", None);
    assert_eq!((status(&r), challenges(&r)), (401, vec!["Digest".into()]));
    // Without --auth the fault's credentials are admin:admin.
    let (u, p) = FAULT_AUTH;
    let good = Some(format!("Basic {}", basic(u, p)));
    assert_eq!(
        status(&describe_with("rtsp://h/sample?auth=basic", good.clone())),
        200
    );
    assert_eq!(
        status(&describe_with("rtsp://h/sample?auth=digest", good)),
        401,
        "Basic is refused where the path asks for Digest"
    );
    let wrong = Some(format!("Basic {}", basic(u, "nope")));
    assert_eq!(
        status(&describe_with("rtsp://h/sample?auth=basic", wrong)),
        401
    );
    // With --auth, those credentials, in the path's scheme.
    let mut c = conn_with(Some(Auth::new("u", "p")), RtpConfig::default());
    let text = format!(
        "DESCRIBE rtsp://h/sample?auth=basic RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Basic {}\r\n\r\n",
        basic("u", "p")
    );
    assert_eq!(status(&c.handle(&req(&text), &cat).0), 200);
}

#[test]
fn session_expires_answers_401_from_then_on_and_announces_a_timeout_before_it() {
    let cat = catalog();
    let mut c = conn();
    let t0 = Instant::now();
    let text = format!(
        "SETUP rtsp://h/sample/trackID=0?session_expires=3s RTSP/1.0\r\nCSeq: 1\r\nTransport: {TCP}\r\n\r\n"
    );
    let r = c.handle_at(&req(&text), &cat, t0).0;
    assert_eq!(status(&r), 200);
    assert!(
        header(&r, &headers::SESSION)
            .unwrap()
            .ends_with(";timeout=3")
    );
    let id = c.session().unwrap().id.clone();
    let keepalive =
        format!("GET_PARAMETER rtsp://h/sample/ RTSP/1.0\r\nCSeq: 2\r\nSession: {id}\r\n\r\n");
    let at = |s: u64| t0 + Duration::from_millis(s);
    assert_eq!(
        status(&c.handle_at(&req(&keepalive), &cat, at(2999)).0),
        200
    );
    let r = c.handle_at(&req(&keepalive), &cat, at(3000)).0;
    assert_eq!(status(&r), 401);
    assert!(!challenges(&r).is_empty(), "a 401 carries a challenge");
    let options = "OPTIONS rtsp://h/sample/ RTSP/1.0\r\nCSeq: 3\r\n\r\n";
    assert_eq!(status(&c.handle_at(&req(options), &cat, at(9000)).0), 401);
}

#[test]
fn disconnect_every_is_due_that_long_after_the_first_request_naming_it() {
    let cat = catalog();
    let mut c = conn();
    let t0 = Instant::now();
    assert_eq!(c.close_at(), None);
    let text = "DESCRIBE rtsp://h/sample?disconnect_every=2s RTSP/1.0\r\nCSeq: 1\r\n\r\n";
    c.handle_at(&req(text), &cat, t0);
    assert_eq!(c.close_at(), Some(t0 + Duration::from_secs(2)));
    // A later request does not move it.
    c.handle_at(&req(text), &cat, t0 + Duration::from_secs(1));
    assert_eq!(c.close_at(), Some(t0 + Duration::from_secs(2)));
    assert!(!c.disconnect_due(t0 + Duration::from_millis(1999)));
    assert!(c.disconnect_due(t0 + Duration::from_secs(2)));
    assert_eq!(conn().close_at(), None);
}

/// The sample looping (with laps), its frames from the first keyframe on for `secs` seconds.
fn looping(secs: i64) -> (One, Vec<Frame>) {
    let d = Demuxer::from_bytes("sample.mp4", nvrkit_media::sample()).unwrap();
    let clip = Clip::load("sample", &d).unwrap();
    let info = StreamInfo {
        laps: Some(clip.laps()),
        ..StreamInfo::new("sample", clip.tracks().to_vec())
    };
    let end = WallTime::from_micros(1_000_000 + secs * 1_000_000);
    let frames = LoopSource::new(clip, WallTime::from_micros(1_000_000))
        .take_while(|f| f.wall.is_some_and(|w| w < end))
        .collect();
    (One(Arc::new(info)), frames)
}

fn playing(cat: &One, query: &str, transport: &str) -> Connection {
    let mut c = conn();
    let url = format!("rtsp://h/sample/trackID=0?{query}");
    assert_eq!(status(&setup(&mut c, cat, &url, transport)), 200);
    let play = format!("PLAY rtsp://h/sample/?{query} RTSP/1.0\r\nCSeq: 3\r\n\r\n");
    assert_eq!(c.handle(&req(&play), cat).1, Action::Play);
    c
}

fn is_bye(o: &Outgoing) -> bool {
    o.head.windows(2).any(|w| w == [0x81, 203])
}

#[test]
fn bye_at_seam_sends_bye_at_the_next_loop_and_then_nothing() {
    let (cat, frames) = looping(12);
    let period = 10_000_000i64;
    let mut c = playing(&cat, "bye_at_seam", TCP);
    let video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
    let mut out = Vec::new();
    let _ = c.play("3", video[0], 0, &mut out);
    let mut sent_before_bye = 0;
    let mut bye_at = None;
    for f in &video {
        let before = out.len();
        c.frame(f, &mut out);
        if out[before..].iter().any(is_bye) {
            bye_at = Some(f.wall.unwrap().micros_since(video[0].wall.unwrap()));
            break;
        }
        sent_before_bye += 1;
    }
    let bye_at = bye_at.expect("a BYE at the seam");
    assert!(
        (period - 100_000..=period).contains(&bye_at),
        "BYE {bye_at} µs in, the loop is {period} µs"
    );
    assert_eq!(sent_before_bye, 250, "one loop of 25 fps video");
    out.clear();
    for f in &video[sent_before_bye + 1..] {
        c.frame(f, &mut out);
    }
    c.sender_reports(&mut out);
    c.bye(&mut out);
    assert!(
        out.is_empty(),
        "nothing after the seam, not even a second BYE"
    );
}

#[test]
fn stall_stops_rtp_and_rtcp_while_rtsp_answers() {
    let (cat, frames) = looping(5);
    let mut c = playing(&cat, "stall=2s", TCP);
    let mut out = Vec::new();
    let _ = c.play("3", &frames[0], 0, &mut out);
    let mut last_sent = None;
    for f in &frames {
        let before = out.len();
        c.frame(f, &mut out);
        if out.len() > before {
            last_sent = f.wall;
        }
    }
    let span = last_sent.unwrap().micros_since(frames[0].wall.unwrap());
    assert!(
        (1_900_000..2_000_000).contains(&span),
        "media for {span} µs"
    );
    out.clear();
    c.sender_reports(&mut out);
    assert!(out.is_empty(), "no sender reports either");
    let id = c.session().unwrap().id.clone();
    let keepalive =
        format!("GET_PARAMETER rtsp://h/sample/ RTSP/1.0\r\nCSeq: 4\r\nSession: {id}\r\n\r\n");
    assert_eq!(status(&c.handle(&req(&keepalive), &cat).0), 200);
    assert!(c.playing(), "the session is alive");
    // At TEARDOWN (which ends the playout), no BYE either: a stalled camera sends nothing.
    c.bye(&mut out);
    assert!(out.is_empty(), "nor a BYE: a stalled camera sends nothing");
}

#[test]
fn drop_and_jitter_bend_udp_rtp_only() {
    let (cat, frames) = looping(2);
    let video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
    let count = |query: &str, transport: &str| {
        let mut c = playing(&cat, query, transport);
        let mut out = Vec::new();
        let _ = c.play("3", video[0], 0, &mut out);
        out.clear();
        let now = Instant::now();
        for f in &video {
            c.frame_at(f, now, &mut out);
        }
        let held = c.next_due().is_some();
        (
            out.iter()
                .filter(|o| !matches!(o.route, Route::UdpRtcp(_)))
                .count(),
            held,
        )
    };
    let (all_udp, _) = count("denytcp", UDP);
    let (dropped, _) = count("drop=50%", UDP);
    assert!(
        dropped < all_udp * 7 / 10 && dropped > all_udp * 3 / 10,
        "{dropped} of {all_udp}"
    );
    let (all_tcp, _) = count("denyudp", TCP);
    assert_eq!(count("drop=50%", TCP).0, all_tcp, "TCP loses nothing");
    let (now, held) = count("jitter=50ms", UDP);
    assert!(
        now < all_udp && held,
        "jittered packets wait for their deadline"
    );
    assert_eq!(count("jitter=50ms", TCP), (all_tcp, false));
}
