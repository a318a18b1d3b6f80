//! Arbitrary bytes as an ONVIF SOAP request body and as a WS-Discovery datagram: the quick-xml
//! envelope reader, the action dispatch of one device (every answer must parse back as a SOAP
//! envelope), the UsernameToken check, the probe parser with its matching, and the sidecar JPEG
//! size reader; the Events service on a device hub filled past its cap from addresses the input
//! picks (eviction keeps the cap) with a live subscription (every answer, a pull's too, must
//! parse back), and the HTTP Digest check of the SOAP endpoints on the input as
//! an `Authorization` value. Nothing may panic. The service bounds: a SOAP body at most 64 KiB, a datagram at
//! most 16 KiB; longer inputs are cut there, as the listeners refuse them unread.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use nvrkit_feed::onvif::auth::Verifier;
use nvrkit_feed::onvif::discovery::{self, MAX_DATAGRAM, Responder};
use nvrkit_feed::onvif::events::{self, Answer, Hub};
use nvrkit_feed::onvif::service::{self, Reached};
use nvrkit_feed::onvif::soap::{self, MAX_SOAP_BODY};
use nvrkit_feed::onvif::{Device, SubStream, Video, VideoCodec};
use nvrkit_media::WallTime;

fuzz_target!(|data: &[u8]| {
    let device = Device {
        name: "cam<&>".into(),
        rtsp_port: 8554,
        video: Some(Video {
            codec: VideoCodec::H265,
            width: 1920,
            height: 1080,
            fps: 25.0,
        }),
        sub: Some(SubStream {
            path: "cam<&>/sub".into(),
            video: None,
        }),
        snapshot: None,
    };
    let now = WallTime::from_micros(1_796_000_000_000_000);
    let body = &data[..data.len().min(MAX_SOAP_BODY)];
    if let Ok(req) = soap::parse(body) {
        let at = Reached {
            host: "127.0.0.1".into(),
            http_port: 8000,
        };
        let xml = match service::answer(&device, &at, &req, now) {
            Ok(b) => soap::envelope("", &b),
            Err(f) => soap::fault(f.code, f.subcode, &f.reason),
        };
        assert!(soap::parse(xml.as_bytes()).is_ok(), "{xml}");
        let _ = Verifier::new("admin", "secret").verify(req.token.as_ref(), now);
        let hub = Hub::new();
        // A full device from addresses the input picks: eviction keeps the cap; a new one is
        // refused only when the device is full of other addresses' only, recently used ones.
        for b in data.iter().take(events::MAX_SUBSCRIPTIONS + 4) {
            let from = (b & 1 == 1).then(|| [127, 0, 0, b >> 1].into());
            let at = now.add_micros(i64::from(*b) * 1_000_000);
            let before = hub.subscriptions(at);
            if let Err(f) = hub.subscribe(from, at, at.add_micros(60_000_000)) {
                assert_eq!(before, events::MAX_SUBSCRIPTIONS, "{f:?}");
            }
            assert!(hub.subscriptions(at) <= events::MAX_SUBSCRIPTIONS);
        }
        if let Ok((id, _)) = hub.subscribe(None, now, now.add_micros(60_000_000)) {
            hub.publish(true, now, now);
            for path_id in [Some(id.as_str()), None] {
                let xml = match events::answer(&hub, &at, Some([127, 0, 0, 2].into()), &req, path_id, now) {
                    Ok(Answer::Body(b)) => soap::envelope("", &b),
                    Ok(Answer::Pull { id, limit, .. }) => match hub.pull(&id, limit, now) {
                        Ok(p) => soap::envelope("", &events::pull_response(&p, now)),
                        Err(f) => soap::fault(f.code, f.subcode, &f.reason),
                    },
                    Err(f) => soap::fault(f.code, f.subcode, &f.reason),
                };
                assert!(soap::parse(xml.as_bytes()).is_ok(), "{xml}");
            }
        }
    }
    if let Ok(header) = std::str::from_utf8(&data[..data.len().min(8 * 1024)]) {
        let digest = nvrkit_feed::auth::Auth::new("admin", "secret");
        let mut conn = nvrkit_feed::auth::ConnAuth::default();
        let _ = digest.check("POST", "/onvif/device_service", Some(header), &mut conn);
    }
    let datagram = &data[..data.len().min(MAX_DATAGRAM)];
    if let Ok(probe) = discovery::parse_probe(datagram) {
        let _ = discovery::matches(&probe, &device);
        let xml = discovery::probe_matches(&probe, &device, "127.0.0.1", 8000);
        assert!(soap::parse(xml.as_bytes()).is_ok(), "{xml}");
    }
    // The sidecar JPEG check walks marker segments by their lengths.
    let _ = nvrkit_feed::snapshot::jpeg_size(data);
    let peer: SocketAddr = ([127, 0, 0, 1], 3702).into();
    let _ = Responder::new(vec![(device, ([127, 0, 0, 1], 8000).into())]).answer(datagram, peer);
});
