//! The publisher's side of an RTMP connection, sans I/O: bytes from the server in, bytes for
//! the server out, and events.
//!
//! `rml_rtmp` does the handshake (with the Flash Player 9 digest, which some servers require)
//! and our outgoing chunk stream (chunk size, header compression, extended timestamps);
//! [`crate::rtmp::chunks`] reads the server's; this module drives the publish dialogue on top of it, as ffmpeg and OBS do
//! (RTMP spec 1.0 §7.2): `connect` (with `tcUrl`, `type: nonprivate`, and `fourCcList` when
//! the clip needs Enhanced RTMP), `releaseStream` + `FCPublish` (Wowza and some CDNs want them;
//! nginx-rtmp ignores them), `createStream`, `publish(name, "live")` on the new message stream,
//! then waits for `onStatus NetStream.Publish.Start`. It answers pings (nginx-rtmp drops a
//! publisher that does not: `ping_timeout`), acknowledges received bytes per the server's
//! window, and follows the server's chunk size.
//!
//! `rml_rtmp`'s own `ClientSession` is not used: it cannot add `type`, `fourCcList` or
//! `FCPublish` to the dialogue, and does not show us the connect result's properties.

use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use crate::rtmp::amf;
use crate::rtmp::chunks::{ChunkReader, Message};
use crate::rtmp::error::PushError;
use crate::rtmp::flv::{Tag, TagKind};
use crate::rtmp::url::RtmpUrl;

/// Our outgoing chunk size (ffmpeg's and OBS's): a 40 KB keyframe goes in 10 chunks, not 320.
pub const CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size we announce.
const WINDOW_ACK: u32 = 2_500_000;
/// AMF0 command messages the server sends (type 20) and data messages (type 18).
const TYPE_AMF0_COMMAND: u8 = 20;
/// Protocol control messages (RTMP spec §5.4) and user control (§6.2).
const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_USER_CONTROL: u8 = 4;
const TYPE_WINDOW_ACK: u8 = 5;
const TYPE_SET_PEER_BANDWIDTH: u8 = 6;
const TYPE_AMF0_DATA: u8 = 18;

const TX_CONNECT: f64 = 1.0;
const TX_RELEASE: f64 = 2.0;
const TX_FCPUBLISH: f64 = 3.0;
const TX_CREATE: f64 = 4.0;
const TX_PUBLISH: f64 = 5.0;

/// Where the dialogue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// C0/C1 sent, waiting for S0/S1/S2.
    Handshake,
    /// `connect` sent.
    Connecting,
    /// `createStream` sent.
    CreatingStream,
    /// `publish` sent, waiting for `NetStream.Publish.Start`.
    Publishing,
    /// The server accepted the stream: media may flow.
    Live,
}

/// What the server said that the caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `connect` succeeded. `fourcc` lists the Enhanced RTMP codecs the server announced in its
    /// result (`fourCcList`, or the keys of `videoFourCcInfoMap`); empty for a classic server.
    Connected {
        /// FourCCs the server announced.
        fourcc: Vec<String>,
    },
    /// `NetStream.Publish.Start`: send metadata, sequence headers and frames.
    Live,
}

/// Settings of one publishing session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where and under which name to publish.
    pub url: RtmpUrl,
    /// FourCCs to announce in `connect` (`hvc1` for an H.265 clip); empty for classic RTMP.
    pub fourcc: Vec<String>,
}

/// One publishing connection's protocol state.
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    handshake: Handshake,
    serializer: ChunkSerializer,
    reader: ChunkReader,
    out: Vec<u8>,
    stream_id: u32,
    received: u64,
    acked: u64,
    ack_window: Option<u32>,
    answered_bandwidth: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.config.url)
            .field("phase", &self.phase)
            .field("stream_id", &self.stream_id)
            .finish_non_exhaustive()
    }
}

fn protocol(stage: &'static str) -> impl Fn(String) -> PushError {
    move |why| PushError::Protocol { stage, why }
}

impl Session {
    /// Starts a session: C0 and C1 are queued for the server.
    pub fn new(config: SessionConfig) -> Result<Self, PushError> {
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| protocol("handshake")(e.to_string()))?;
        Ok(Session {
            config,
            phase: Phase::Handshake,
            handshake,
            serializer: ChunkSerializer::new(),
            reader: ChunkReader::new(),
            out: c0c1,
            stream_id: 0,
            received: 0,
            acked: 0,
            ack_window: None,
            answered_bandwidth: false,
        })
    }

    /// Where the dialogue is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes to send to the server, in order (empties the queue).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// True when output is waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Takes bytes from the server; returns what happened. An error ends the connection.
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<Event>, PushError> {
        let mut events = Vec::new();
        if self.phase == Phase::Handshake {
            match self
                .handshake
                .process_bytes(data)
                .map_err(|e| protocol("handshake")(e.to_string()))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.out.extend_from_slice(&response_bytes);
                    return Ok(events);
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.out.extend_from_slice(&response_bytes);
                    self.start_connect()?;
                    self.phase = Phase::Connecting;
                    self.chunks(&remaining_bytes, &mut events)?;
                }
            }
        } else {
            self.chunks(data, &mut events)?;
        }
        Ok(events)
    }

    fn chunks(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), PushError> {
        self.received += data.len() as u64;
        self.reader.push(data);
        while let Some(message) = self
            .reader
            .next_message()
            .map_err(protocol("chunk stream"))?
        {
            self.message(message, events)?;
        }
        if let Some(window) = self.ack_window
            && window > 0
            && self.received - self.acked >= u64::from(window)
        {
            // RTMP spec §5.4.3: the sequence number is the total bytes received so far.
            self.acked = self.received;
            self.send(
                RtmpMessage::Acknowledgement {
                    sequence_number: self.received as u32,
                },
                0,
                0,
            )?;
        }
        Ok(())
    }

    fn message(&mut self, payload: Message, events: &mut Vec<Event>) -> Result<(), PushError> {
        if matches!(payload.type_id, TYPE_AMF0_COMMAND | TYPE_AMF0_DATA)
            && amf::nesting_depth(&payload.data) > amf::MAX_DEPTH
        {
            return Err(protocol("AMF0")(format!(
                "a message nests objects deeper than {}",
                amf::MAX_DEPTH
            )));
        }
        if payload.type_id == TYPE_AMF0_COMMAND {
            // Parsed here, not by `rml_rtmp`'s message layer: its command decoder slices the first three values
            // unchecked and panics on a shorter command, and ffmpeg 5.1's `-listen 1` server
            // sends one (found by the interop test against it).
            let mut values =
                rml_rtmp::rml_amf0::deserialize(&mut std::io::Cursor::new(&payload.data))
                    .map_err(|e| protocol("AMF0")(e.to_string()))?
                    .into_iter();
            let name = match values.next() {
                Some(Amf0Value::Utf8String(n)) => n,
                other => {
                    return Err(protocol("command")(format!(
                        "a command without a name: {other:?}"
                    )));
                }
            };
            let tx = match values.next() {
                Some(Amf0Value::Number(n)) => n,
                _ => 0.0,
            };
            let object = values.next().unwrap_or(Amf0Value::Null);
            tracing::trace!(command = name, tx, "from the server");
            return self.command(&name, tx, object, values.collect(), events);
        }
        // Control messages are decoded here too (RTMP spec §5.4, §7.1.7): four fixed layouts,
        // so nothing of `rml_rtmp`'s message decoders runs on the server's bytes.
        let d = &payload.data;
        let be32 = |at: usize| {
            d.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| {
                    protocol("message")(format!(
                        "message type {} of {} bytes is too short",
                        payload.type_id,
                        d.len()
                    ))
                })
        };
        match payload.type_id {
            TYPE_SET_CHUNK_SIZE => {
                let size = be32(0)? & 0x7FFF_FFFF;
                if size == 0 {
                    return Err(protocol("message")("chunk size 0".into()));
                }
                self.reader
                    .set_chunk_size(size)
                    .map_err(protocol("message"))?;
            }
            TYPE_WINDOW_ACK => self.ack_window = Some(be32(0)?),
            TYPE_SET_PEER_BANDWIDTH if !self.answered_bandwidth => {
                // As ffmpeg does: answer the server's bandwidth with our window.
                self.answered_bandwidth = true;
                self.send(
                    RtmpMessage::WindowAcknowledgement { size: WINDOW_ACK },
                    0,
                    0,
                )?;
            }
            TYPE_USER_CONTROL if d.len() >= 6 && d[..2] == [0, 6] => {
                // PingRequest: echo its timestamp in a PingResponse.
                let timestamp = be32(2)?;
                self.send(
                    RtmpMessage::UserControl {
                        event_type: UserControlEventType::PingResponse,
                        stream_id: None,
                        buffer_length: None,
                        timestamp: Some(RtmpTimestamp::new(timestamp)),
                    },
                    0,
                    0,
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    fn command(
        &mut self,
        name: &str,
        tx: f64,
        object: Amf0Value,
        mut args: Vec<Amf0Value>,
        events: &mut Vec<Event>,
    ) -> Result<(), PushError> {
        let info = args.first().cloned().unwrap_or(Amf0Value::Null);
        match name {
            "_result" if tx == TX_CONNECT && self.phase == Phase::Connecting => {
                let fourcc = announced_fourcc(&object)
                    .into_iter()
                    .chain(announced_fourcc(&info))
                    .collect();
                events.push(Event::Connected { fourcc });
                self.create_stream()?;
                self.phase = Phase::CreatingStream;
            }
            "_result" if tx == TX_CREATE && self.phase == Phase::CreatingStream => {
                let id = match args.drain(..).next() {
                    Some(Amf0Value::Number(n)) if n >= 0.0 && n <= f64::from(u32::MAX) => n as u32,
                    other => {
                        return Err(protocol("createStream")(format!(
                            "the result carries no stream id: {other:?}"
                        )));
                    }
                };
                self.stream_id = id;
                let stream = self.config.url.stream.clone();
                self.command_out(
                    "publish",
                    TX_PUBLISH,
                    vec![
                        Amf0Value::Utf8String(stream),
                        Amf0Value::Utf8String("live".into()),
                    ],
                    id,
                )?;
                self.phase = Phase::Publishing;
            }
            "_error" if tx == TX_CONNECT || tx == TX_CREATE || tx == TX_PUBLISH => {
                let (code, description) = status(&info);
                return Err(PushError::Rejected {
                    command: match tx {
                        TX_CONNECT => "connect",
                        TX_CREATE => "createStream",
                        _ => "publish",
                    },
                    code,
                    description,
                });
            }
            "onStatus" => {
                let (code, description) = status(&info);
                let level = match &info {
                    Amf0Value::Object(o) => match o.get("level") {
                        Some(Amf0Value::Utf8String(l)) => l.clone(),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                if code == "NetStream.Publish.Start" && self.phase == Phase::Publishing {
                    self.phase = Phase::Live;
                    events.push(Event::Live);
                } else if level == "error"
                    || code.ends_with(".BadName")
                    || code.ends_with(".Rejected")
                    || code.ends_with(".Failed")
                {
                    return Err(PushError::Rejected {
                        command: "publish",
                        code,
                        description,
                    });
                }
            }
            // _result/_error of releaseStream and FCPublish, onFCPublish, onBWDone, and the rest:
            // advisory; servers differ in which of them they send.
            _ => {}
        }
        Ok(())
    }

    fn start_connect(&mut self) -> Result<(), PushError> {
        let packet = self
            .serializer
            .set_max_chunk_size(CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| protocol("chunk stream")(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        let url = &self.config.url;
        let mut props = std::collections::HashMap::new();
        let s = |v: &str| Amf0Value::Utf8String(v.to_owned());
        props.insert("app".to_owned(), s(&url.app));
        props.insert("type".to_owned(), s("nonprivate"));
        // The Flash Media Live Encoder string: what ffmpeg and OBS send when publishing.
        props.insert("flashVer".to_owned(), s("FMLE/3.0 (compatible; nvrkit)"));
        props.insert("tcUrl".to_owned(), s(&url.tc_url()));
        if !self.config.fourcc.is_empty() {
            props.insert(
                "fourCcList".to_owned(),
                Amf0Value::StrictArray(self.config.fourcc.iter().map(|f| s(f)).collect()),
            );
        }
        self.send(
            RtmpMessage::Amf0Command {
                command_name: "connect".into(),
                transaction_id: TX_CONNECT,
                command_object: Amf0Value::Object(props),
                additional_arguments: Vec::new(),
            },
            0,
            0,
        )
    }

    fn create_stream(&mut self) -> Result<(), PushError> {
        let stream = Amf0Value::Utf8String(self.config.url.stream.clone());
        self.command_out("releaseStream", TX_RELEASE, vec![stream.clone()], 0)?;
        self.command_out("FCPublish", TX_FCPUBLISH, vec![stream], 0)?;
        self.command_out("createStream", TX_CREATE, Vec::new(), 0)
    }

    fn command_out(
        &mut self,
        name: &str,
        tx: f64,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), PushError> {
        self.send(
            RtmpMessage::Amf0Command {
                command_name: name.to_owned(),
                transaction_id: tx,
                command_object: Amf0Value::Null,
                additional_arguments: args,
            },
            0,
            stream_id,
        )
    }

    fn send(&mut self, m: RtmpMessage, timestamp: u32, stream_id: u32) -> Result<(), PushError> {
        let payload = m
            .into_message_payload(RtmpTimestamp::new(timestamp), stream_id)
            .map_err(|e| protocol("serialize")(e.to_string()))?;
        let packet = self
            .serializer
            .serialize(&payload, false, false)
            .map_err(|e| protocol("serialize")(e.to_string()))?;
        self.out.extend_from_slice(&packet.bytes);
        Ok(())
    }

    /// Queues one FLV tag on the published stream. Only in [`Phase::Live`].
    pub fn send_tag(&mut self, tag: &Tag) -> Result<(), PushError> {
        if self.phase != Phase::Live {
            return Err(protocol("publish")(format!(
                "media before the server accepted the stream (phase {:?})",
                self.phase
            )));
        }
        let m = match tag.kind {
            TagKind::Video => RtmpMessage::VideoData {
                data: tag.body.clone(),
            },
            TagKind::Audio => RtmpMessage::AudioData {
                data: tag.body.clone(),
            },
            TagKind::Data => RtmpMessage::Unknown {
                type_id: TYPE_AMF0_DATA,
                data: tag.body.clone(),
            },
        };
        self.send(m, tag.timestamp, self.stream_id)
    }

    /// Queues `FCUnpublish` and `deleteStream`: a clean goodbye before closing.
    pub fn unpublish(&mut self) -> Result<(), PushError> {
        if self.phase != Phase::Live {
            return Ok(());
        }
        let stream = Amf0Value::Utf8String(self.config.url.stream.clone());
        self.command_out("FCUnpublish", 6.0, vec![stream], 0)?;
        let id = self.stream_id;
        self.command_out(
            "deleteStream",
            7.0,
            vec![Amf0Value::Number(f64::from(id))],
            0,
        )?;
        self.phase = Phase::Connecting;
        Ok(())
    }
}

/// `code` and `description` of an `onStatus`/`_error` info object.
fn status(info: &Amf0Value) -> (String, String) {
    let Amf0Value::Object(o) = info else {
        return (String::new(), String::new());
    };
    let get = |k: &str| match o.get(k) {
        Some(Amf0Value::Utf8String(v)) => v.clone(),
        _ => String::new(),
    };
    (get("code"), get("description"))
}

/// Enhanced RTMP codecs a connect result announces (E-RTMP v1 `fourCcList`, v2
/// `videoFourCcInfoMap`).
fn announced_fourcc(v: &Amf0Value) -> Vec<String> {
    let Amf0Value::Object(o) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(Amf0Value::StrictArray(list)) = o.get("fourCcList") {
        out.extend(list.iter().filter_map(|x| match x {
            Amf0Value::Utf8String(s) => Some(s.clone()),
            _ => None,
        }));
    }
    if let Some(Amf0Value::Object(map)) = o.get("videoFourCcInfoMap") {
        out.extend(map.keys().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };

    /// `rml_rtmp`'s server session as the peer: handshake, connect, publish, media.
    struct Peer {
        handshake: Handshake,
        session: Option<ServerSession>,
        events: Vec<ServerSessionEvent>,
    }

    impl Peer {
        fn new() -> Self {
            Peer {
                handshake: Handshake::new(PeerType::Server),
                session: None,
                events: Vec::new(),
            }
        }

        /// Feeds the client's bytes; returns the server's answer.
        fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let rest = match &mut self.session {
                Some(_) => bytes.to_vec(),
                None => match self.handshake.process_bytes(bytes).unwrap() {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        return response_bytes;
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        out.extend(response_bytes);
                        let (s, results) = ServerSession::new(ServerSessionConfig::new()).unwrap();
                        self.session = Some(s);
                        self.results(results, &mut out);
                        remaining_bytes
                    }
                },
            };
            let results = self.session.as_mut().unwrap().handle_input(&rest).unwrap();
            self.results(results, &mut out);
            out
        }

        fn results(&mut self, results: Vec<ServerSessionResult>, out: &mut Vec<u8>) {
            for r in results {
                match r {
                    ServerSessionResult::OutboundResponse(p) => out.extend(p.bytes),
                    ServerSessionResult::RaisedEvent(e) => {
                        let s = self.session.as_mut().unwrap();
                        let more = match &e {
                            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                                s.accept_request(*request_id).unwrap()
                            }
                            ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                                s.accept_request(*request_id).unwrap()
                            }
                            _ => Vec::new(),
                        };
                        self.events.push(e);
                        self.results(more, out);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
    }

    fn config() -> SessionConfig {
        SessionConfig {
            url: RtmpUrl::parse("rtmp://127.0.0.1/live/cam").unwrap(),
            fourcc: Vec::new(),
        }
    }

    /// Runs the dialogue between the session and the peer until it goes live.
    fn go_live(session: &mut Session, peer: &mut Peer) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..20 {
            let out = session.take_output();
            let answer = peer.feed(&out);
            events.extend(session.receive(&answer).unwrap());
            if session.phase() == Phase::Live {
                return events;
            }
        }
        panic!("never went live: {:?}", session.phase());
    }

    #[test]
    fn publishes_to_rml_rtmp_server_session() {
        let mut s = Session::new(config()).unwrap();
        let mut peer = Peer::new();
        let events = go_live(&mut s, &mut peer);
        assert_eq!(
            events,
            vec![Event::Connected { fourcc: vec![] }, Event::Live]
        );
        assert!(peer.events.iter().any(|e| matches!(e,
            ServerSessionEvent::ConnectionRequested { app_name, .. } if app_name == "live")));
        assert!(peer.events.iter().any(|e| matches!(e,
            ServerSessionEvent::PublishStreamRequested { stream_key, .. } if stream_key == "cam")));
        // Media near the 32-bit wrap: the peer reads back the same timestamps.
        let body = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        for ts in [u32::MAX - 40, u32::MAX - 7, 25, 58] {
            s.send_tag(&Tag {
                kind: TagKind::Video,
                timestamp: ts,
                body: body.clone(),
                keyframe: true,
            })
            .unwrap();
        }
        let out = s.take_output();
        peer.events.clear();
        peer.feed(&out);
        let got: Vec<u32> = peer
            .events
            .iter()
            .filter_map(|e| match e {
                ServerSessionEvent::VideoDataReceived {
                    timestamp, data, ..
                } => {
                    assert_eq!(data, &body);
                    Some(timestamp.value)
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![u32::MAX - 40, u32::MAX - 7, 25, 58]);
    }

    #[test]
    fn answers_pings_and_reports_rejections() {
        let mut s = Session::new(config()).unwrap();
        let mut peer = Peer::new();
        go_live(&mut s, &mut peer);
        let ping = peer
            .session
            .as_mut()
            .unwrap()
            .send_ping_request()
            .unwrap()
            .0;
        s.receive(&ping.bytes).unwrap();
        peer.events.clear();
        peer.feed(&s.take_output());
        assert!(
            peer.events
                .iter()
                .any(|e| matches!(e, ServerSessionEvent::PingResponseReceived { .. })),
            "{:?}",
            peer.events
        );

        // A server that refuses the stream name.
        let mut ser = ChunkSerializer::new();
        let refusal = RtmpMessage::Amf0Command {
            command_name: "onStatus".into(),
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            additional_arguments: vec![Amf0Value::Object(
                [
                    ("level", "error"),
                    ("code", "NetStream.Publish.BadName"),
                    ("description", "Already publishing"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Amf0Value::Utf8String(v.to_owned())))
                .collect(),
            )],
        };
        let mut s = Session::new(config()).unwrap();
        let mut peer = Peer::new();
        // Handshake and connect only; then the refusal instead of Publish.Start.
        while s.phase() != Phase::CreatingStream && s.phase() != Phase::Publishing {
            let a = peer.feed(&s.take_output());
            s.receive(&a).unwrap();
        }
        ser.set_max_chunk_size(4096, RtmpTimestamp::new(0)).unwrap();
        let p = ser
            .serialize(
                &refusal
                    .into_message_payload(RtmpTimestamp::new(0), 1)
                    .unwrap(),
                true,
                false,
            )
            .unwrap();
        // A fresh chunk stream from the "server" after a chunk size change it announced.
        let mut bytes = Vec::new();
        let mut setsize = ChunkSerializer::new();
        bytes.extend(
            setsize
                .set_max_chunk_size(4096, RtmpTimestamp::new(0))
                .unwrap()
                .bytes,
        );
        bytes.extend(p.bytes);
        let e = s.receive(&bytes).unwrap_err();
        assert!(
            e.to_string().contains("NetStream.Publish.BadName")
                && e.to_string().contains("Already publishing"),
            "{e}"
        );
    }

    #[test]
    fn short_commands_are_not_a_panic() {
        // Regression: `rml_rtmp` panics on a command of fewer than 3 values (ffmpeg -listen).
        let mut s = Session::new(config()).unwrap();
        let mut peer = Peer::new();
        go_live(&mut s, &mut peer);
        let mut bytes = Vec::new();
        let mut ser = ChunkSerializer::new();
        bytes.extend(
            ser.set_max_chunk_size(4096, RtmpTimestamp::new(0))
                .unwrap()
                .bytes,
        );
        for values in [
            vec![Amf0Value::Utf8String("onBWDone".into())],
            vec![
                Amf0Value::Utf8String("onFCPublish".into()),
                Amf0Value::Number(0.0),
            ],
        ] {
            let payload = MessagePayload {
                timestamp: RtmpTimestamp::new(0),
                type_id: TYPE_AMF0_COMMAND,
                message_stream_id: 0,
                data: Bytes::from(rml_rtmp::rml_amf0::serialize(&values).unwrap()),
            };
            bytes.extend(ser.serialize(&payload, true, false).unwrap().bytes);
        }
        assert_eq!(s.receive(&bytes).unwrap(), vec![]);
        assert_eq!(s.phase(), Phase::Live);
    }

    #[test]
    fn announced_fourcc_is_read_from_the_connect_result() {
        let o = Amf0Value::Object(
            [(
                "fourCcList".to_owned(),
                Amf0Value::StrictArray(vec![
                    Amf0Value::Utf8String("hvc1".into()),
                    Amf0Value::Utf8String("av01".into()),
                ]),
            )]
            .into_iter()
            .collect(),
        );
        assert_eq!(announced_fourcc(&o), vec!["hvc1", "av01"]);
        assert!(announced_fourcc(&Amf0Value::Null).is_empty());
    }
}
