//! Reading the server's chunk stream (RTMP spec 1.0 §5.3): basic header, message header of
//! type 0–3, extended timestamp, payload in pieces of the peer's chunk size.
//!
//! Ours rather than `rml_rtmp`'s `ChunkDeserializer`: the fuzz target `rtmp_session` found that
//! one subtracting unchecked on hostile headers (an extended timestamp delta below 0xFFFFFF
//! underflows at deserializer.rs:371; a message shorter than what was already read underflows
//! its remaining length), which panics in debug builds and asks for a near-2⁶⁴ allocation in
//! release. A publisher only receives a few small messages (command results, control), so this
//! reader also caps what a server can make it hold: messages of at most [`MAX_MESSAGE`] bytes on
//! at most [`MAX_CHUNK_STREAMS`] chunk streams.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted from a server (commands and control messages are far smaller).
pub const MAX_MESSAGE: u32 = 1 << 20;
/// Most chunk streams a server may use at once.
pub const MAX_CHUNK_STREAMS: usize = 64;

/// One complete message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message type id (1 = set chunk size, 20 = AMF0 command…).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Timestamp, ms modulo 2³².
    pub timestamp: u32,
    /// The payload.
    pub data: Bytes,
}

#[derive(Debug, Default, Clone)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header's timestamp field was 0xFFFFFF: type 3 chunks carry 4 more bytes.
    extended: bool,
    /// Payload of the message in progress.
    partial: BytesMut,
    /// A header has been seen (type 1–3 chunks need one).
    known: bool,
}

/// Splits bytes from the server into messages.
#[derive(Debug)]
pub struct ChunkReader {
    buf: BytesMut,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            buf: BytesMut::new(),
            chunk_size: 128,
            streams: HashMap::new(),
        }
    }
}

impl ChunkReader {
    /// A reader at the protocol's initial chunk size (128).
    pub fn new() -> Self {
        Self::default()
    }

    /// The server announced a new chunk size (Set Chunk Size, §5.4.1).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), String> {
        if size == 0 || size > 0x7FFF_FFFF {
            return Err(format!("chunk size {size}"));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed, or why the stream is
    /// broken (the connection must then close).
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        loop {
            let Some((consumed, done)) = self.chunk()? else {
                return Ok(None);
            };
            self.buf.advance(consumed);
            if let Some(m) = done {
                return Ok(Some(m));
            }
        }
    }

    /// Parses one chunk from the front of the buffer: bytes consumed, and the message it
    /// completed. `None` when the chunk is not all there yet (nothing is changed then).
    fn chunk(&mut self) -> Result<Option<(usize, Option<Message>)>, String> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut at) = match first & 0x3F {
            0 if b.len() >= 2 => (u32::from(b[1]) + 64, 2),
            1 if b.len() >= 3 => (u32::from(b[1]) + u32::from(b[2]) * 256 + 64, 3),
            0 | 1 => return Ok(None),
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        if b.len() < at + header_len {
            return Ok(None);
        }
        if !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(format!("more than {MAX_CHUNK_STREAMS} chunk streams"));
        }
        let mut st = self.streams.get(&csid).cloned().unwrap_or_default();
        if fmt != 0 && !st.known {
            return Err(format!(
                "a type {fmt} chunk on chunk stream {csid} before any type 0 chunk"
            ));
        }
        let be24 = |i: usize| u32::from_be_bytes([0, b[i], b[i + 1], b[i + 2]]);
        let starting = st.partial.is_empty();
        let mut field = None;
        if fmt <= 2 {
            field = Some(be24(at));
        }
        if fmt <= 1 {
            st.length = be24(at + 3);
            st.type_id = b[at + 6];
        }
        if fmt == 0 {
            st.stream_id = u32::from_le_bytes([b[at + 7], b[at + 8], b[at + 9], b[at + 10]]);
        }
        at += header_len;
        let extended = match field {
            Some(f) => f == 0xFF_FFFF,
            None => st.extended,
        };
        let mut value = field.unwrap_or(0);
        if extended {
            if b.len() < at + 4 {
                return Ok(None);
            }
            value = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4;
        }
        if fmt != 3 && !starting {
            return Err(format!(
                "a new message header on chunk stream {csid} inside an unfinished message"
            ));
        }
        if st.length > MAX_MESSAGE {
            return Err(format!(
                "a message of {} bytes (more than a publisher accepts: {MAX_MESSAGE})",
                st.length
            ));
        }
        let want = (st.length as usize - st.partial.len()).min(self.chunk_size as usize);
        if b.len() < at + want {
            return Ok(None);
        }
        // The chunk is complete: commit its header.
        match fmt {
            0 => {
                st.timestamp = value;
                st.delta = 0;
            }
            1 | 2 => {
                st.delta = value;
                st.timestamp = st.timestamp.wrapping_add(value);
            }
            // A type 3 chunk that starts a message repeats the previous delta (§5.3.1.2.4).
            _ if starting => st.timestamp = st.timestamp.wrapping_add(st.delta),
            _ => {}
        }
        if fmt != 3 {
            st.extended = extended;
        }
        st.known = true;
        st.partial.extend_from_slice(&b[at..at + want]);
        let done = (st.partial.len() == st.length as usize).then(|| Message {
            type_id: st.type_id,
            stream_id: st.stream_id,
            timestamp: st.timestamp,
            data: std::mem::take(&mut st.partial).freeze(),
        });
        self.streams.insert(csid, st);
        Ok(Some((at + want, done)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn payload(type_id: u8, ts: u32, len: usize) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(ts),
            type_id,
            message_stream_id: 1,
            data: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>()),
        }
    }

    #[test]
    fn reads_what_rml_rtmp_serializes_in_any_split() {
        // Compressed headers (types 1–3), multi-chunk messages, extended timestamps, the wrap.
        let mut ser = ChunkSerializer::new();
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for (i, ts) in [0u32, 40, 80, 0x00FF_FFFF, 0x0100_0000, u32::MAX - 10, 30]
            .into_iter()
            .enumerate()
        {
            let p = payload(if i % 2 == 0 { 9 } else { 8 }, ts, 50 + i * 70);
            bytes.extend(ser.serialize(&p, false, false).unwrap().bytes);
            want.push((p.type_id, ts, p.data.clone()));
        }
        for split in [1, 7, 128, bytes.len()] {
            let mut r = ChunkReader::new();
            let mut got = Vec::new();
            for piece in bytes.chunks(split) {
                r.push(piece);
                while let Some(m) = r.next_message().unwrap() {
                    got.push((m.type_id, m.timestamp, m.data));
                }
            }
            assert_eq!(got, want, "split {split}");
        }
    }

    #[test]
    fn hostile_headers_are_errors() {
        // Type 1 chunk with no type 0 before it.
        let mut r = ChunkReader::new();
        r.push(&[0x43, 0, 0, 0, 0, 0, 4, 20, 1, 2, 3, 4]);
        assert!(r.next_message().is_err());
        // A 16 MB message.
        let mut r = ChunkReader::new();
        r.push(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0]);
        assert!(r.next_message().unwrap_err().contains("bytes"));
        // Extended timestamp delta smaller than 0xFFFFFF: fine, no underflow.
        let mut r = ChunkReader::new();
        r.push(&[0x03, 0, 0, 1, 0, 0, 1, 20, 0, 0, 0, 0, 9]);
        assert_eq!(r.next_message().unwrap().unwrap().timestamp, 1);
        r.push(&[0x83, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 5]);
        assert_eq!(r.next_message().unwrap().unwrap().timestamp, 2);
        r.push(&[0x43, 0xFF, 0xFF, 0xFF, 0, 0, 1, 20, 0, 0, 0, 1, 7]);
        assert_eq!(r.next_message().unwrap().unwrap().timestamp, 3);
        assert_eq!(r.next_message().unwrap(), None);
    }
}
