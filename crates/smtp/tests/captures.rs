//! Alarm mails that real cameras and NVRs sent, as their owners published them (sources and what
//! was reconstructed around each: `tests/captures/README.md`), read with the public
//! [`nvrkit_smtp::extract`]. Each expectation is what a person reading the mail would say: which
//! vendor wrote it, what happened, on which camera and channel, at what camera time, with how
//! many snapshots.

use nvrkit_media::WallTime;
use nvrkit_smtp::{CameraEvent, EventKind, Message, Vendor, extract};

/// What a person reads in the mail.
struct Expect {
    /// The file name in `tests/captures/` and its bytes.
    capture: (&'static str, &'static [u8]),
    /// The SMTP envelope (reconstructed where the poster did not show it).
    mail_from: &'static str,
    rcpt_to: &'static str,
    vendor: Vendor,
    kind: EventKind,
    kind_text: Option<&'static str>,
    device: Option<&'static str>,
    camera: Option<&'static str>,
    channel: Option<&'static str>,
    /// The camera's time as written, and as read (local, no zone).
    time: Option<(&'static str, &'static str)>,
    snapshots: &'static [&'static str],
}

macro_rules! capture {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!("captures/", $file)) as &'static [u8],
        )
    };
}

fn captures() -> Vec<Expect> {
    vec![
        Expect {
            capture: capture!("amcrest-tamper.eml"),
            mail_from: "",
            rcpt_to: "jason@jasonantman.com",
            vendor: Vendor::Dahua,
            kind: EventKind::Tamper,
            kind_text: Some("Tamper Detect"),
            device: Some("AMC00056_24AAF8"),
            camera: Some("jason"),
            channel: Some("1"),
            time: Some(("06/05/2018 15:28:40", "2018-05-06T15:28:40")),
            snapshots: &["20180506152840423ch01.jpg"],
        },
        Expect {
            capture: capture!("amcrest-motion-flickr.eml"),
            mail_from: "amcrest@home.example",
            rcpt_to: "upload@flickr.example",
            vendor: Vendor::Dahua,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detect"),
            device: Some("AMC046CC_31B4BF"),
            camera: Some("upload"),
            channel: Some("1"),
            time: Some(("16/11/2018 20:54:54", "2018-11-16T20:54:54")),
            snapshots: &["20181116205454ch01.jpg"],
        },
        Expect {
            capture: capture!("dahua-ipc-motion.eml"),
            mail_from: "ipc06@myhome.local",
            rcpt_to: "usercctv@myhome.local",
            vendor: Vendor::Dahua,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detection"),
            device: Some("IPC06"),
            camera: Some("usercctv"),
            channel: Some("1"),
            time: Some(("23/12/2021 10:27:46", "2021-12-23T10:27:46")),
            snapshots: &[],
        },
        Expect {
            capture: capture!("dahua-ezip-motion-start.eml"),
            mail_from: "ez08@myhome.local",
            rcpt_to: "usercctv@myhome.local",
            vendor: Vendor::Dahua,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detection Start"),
            device: Some("EZIP08"),
            camera: Some("usercctv"),
            channel: Some("1"),
            time: Some(("21/12/2021 22:15:33", "2021-12-21T22:15:33")),
            snapshots: &[],
        },
        Expect {
            capture: capture!("dahua-nvr-motion.eml"),
            mail_from: "nvr@station.example",
            rcpt_to: "alarms@station.example",
            vendor: Vendor::Dahua,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detection"),
            device: Some("NVR-6C39"),
            camera: Some("IPC"),
            channel: Some("2"),
            time: Some(("12/11/2025 16:03:57", "2025-11-12T16:03:57")),
            snapshots: &[],
        },
        Expect {
            capture: capture!("hikvision-ipc-intrusion.eml"),
            mail_from: "orto@cams.example",
            rcpt_to: "alarms@home.example",
            vendor: Vendor::Hikvision,
            kind: EventKind::Intrusion,
            kind_text: Some("Intrusion Detection"),
            device: Some("ORTO"),
            camera: Some("Orto"),
            channel: Some("1"),
            time: Some(("2015-05-22,14:52:18", "2015-05-22T14:52:18")),
            snapshots: &[],
        },
        Expect {
            capture: capture!("hikvision-dvr-motion.eml"),
            mail_from: "dvr@home.example",
            rcpt_to: "receiver@home.example",
            vendor: Vendor::Hikvision,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detected"),
            device: Some("Embedded Net DVR"),
            camera: Some("CAM 2 Garage"),
            channel: Some("A2"),
            time: Some(("2025-07-26,16:53:09", "2025-07-26T16:53:09")),
            snapshots: &[],
        },
        Expect {
            capture: capture!("hikvision-nvr-calipsa.eml"),
            mail_from: "admin@calipsa.io",
            rcpt_to: "alerts@truelive.example",
            vendor: Vendor::Hikvision,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detected"),
            device: Some("Network Video Recorder"),
            camera: Some("D4"),
            channel: Some("D4"),
            time: Some(("2026-05-12,22:40:07", "2026-05-12T22:40:07")),
            snapshots: &["D4_20260512224007.jpg"],
        },
        Expect {
            capture: capture!("noname-ipc-motion.eml"),
            mail_from: "ipc@myhome.local",
            rcpt_to: "usercctv@myhome.local",
            vendor: Vendor::Hikvision,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detected"),
            device: Some("IPC"),
            camera: Some("IPC"),
            channel: Some("01"),
            time: Some(("27/12/2021 17:42:19", "2021-12-27T17:42:19")),
            snapshots: &[],
        },
        Expect {
            capture: capture!("reolink-motion.eml"),
            mail_from: "reolink@macbuntu.com",
            rcpt_to: "motion@macbuntu.com",
            vendor: Vendor::Reolink,
            kind: EventKind::Motion,
            kind_text: Some("Motion Detection"),
            device: Some("Living Room Camera"),
            camera: Some("Living Room Camera"),
            channel: Some("1"),
            time: None,
            snapshots: &[],
        },
        Expect {
            capture: capture!("swann-nvr-human.eml"),
            mail_from: "swann@macbuntu.com",
            rcpt_to: "motion@macbuntu.com",
            vendor: Vendor::Generic,
            kind: EventKind::Motion,
            kind_text: Some("Human and Vehicle"),
            device: Some("NVR8-8580RN"),
            camera: Some("Front Yard"),
            channel: Some("IP-CH1"),
            time: Some(("2024-02-07 13:08:59", "2024-02-07T13:08:59")),
            snapshots: &["IP-CH1.jpg"],
        },
    ]
}

fn read(expect: &Expect) -> CameraEvent {
    let message = Message::new(
        expect.mail_from,
        vec![expect.rcpt_to.to_owned()],
        expect.capture.1,
    );
    extract(&message, None, WallTime::from_micros(1_700_000_000_000_000))
}

/// One row per capture, reported together so a profile change shows every mail it affects.
#[test]
fn every_capture_reads_as_a_person_would() {
    let snapshot = include_bytes!("../testdata/snapshot.jpg");
    let mut wrong = Vec::new();
    for expect in captures() {
        let e = read(&expect);
        let got = (
            e.vendor,
            e.kind.clone(),
            e.kind_text.as_deref(),
            e.device.as_deref(),
            e.camera.as_deref(),
            e.channel.as_deref(),
            e.event_time
                .as_ref()
                .map(|t| (t.text.as_str(), t.local.as_deref().unwrap_or("unread"))),
            e.snapshots
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
        );
        let want = (
            expect.vendor,
            expect.kind.clone(),
            expect.kind_text,
            expect.device,
            expect.camera,
            expect.channel,
            expect.time,
            expect.snapshots.to_vec(),
        );
        if got != want {
            wrong.push(format!(
                "{}:\n  got  {got:?}\n  want {want:?}",
                expect.capture.0
            ));
        }
        for s in &e.snapshots {
            assert_eq!(s.content_type, "image/jpeg", "{}", expect.capture.0);
            assert_eq!(
                &s.data[..],
                snapshot,
                "{}: snapshot bytes",
                expect.capture.0
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The Amcrest capture is the one whole mail (headers, MIME and text part as the camera sent
/// them): its `From: <>` has no address, so the sender is the envelope's.
#[test]
fn amcrest_empty_from_falls_back_to_the_envelope() {
    let expect = captures().remove(0);
    let e = read(&expect);
    assert_eq!(e.subject, "IPC Message");
    assert_eq!(e.from, "");
    let with_sender = Message::new(
        "AMC00056_24AAF8@cams.example",
        vec!["jason@jasonantman.com".to_owned()],
        expect.capture.1,
    );
    let e = extract(&with_sender, None, WallTime::from_micros(0));
    assert_eq!(e.from, "AMC00056_24AAF8@cams.example");
}

/// Every capture the README lists is tested, and every capture here is in the README.
#[test]
fn readme_lists_every_capture() {
    let readme = include_str!("captures/README.md");
    let files: Vec<&str> = captures().iter().map(|c| c.capture.0).collect();
    for file in &files {
        assert!(
            readme.contains(&format!("`{file}`")),
            "{file} not in README"
        );
    }
    let listed = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains(".eml`"))
        .count();
    assert_eq!(listed, files.len(), "README rows vs tested captures");
}
