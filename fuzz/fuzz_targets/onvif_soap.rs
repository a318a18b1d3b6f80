//! Arbitrary bytes as an ONVIF SOAP request body and as a WS-Discovery datagram: the quick-xml
//! envelope reader, the action dispatch of one device (every answer must parse back as a SOAP
//! envelope), the UsernameToken check, the probe parser with its matching, and the sidecar JPEG
//! size reader. Nothing may panic. The service bounds: a SOAP body at most 64 KiB, a datagram at
//! most 16 KiB; longer inputs are cut there, as the listeners refuse them unread.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use nvrkit_feed::onvif::auth::Verifier;
use nvrkit_feed::onvif::discovery::{self, MAX_DATAGRAM, Responder};
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
