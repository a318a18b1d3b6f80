//! Splits the bytes of an RTSP connection into requests and interleaved data frames
//! (RFC 2326 §10.12), with a cap on the size of a message and recovery from garbage.

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::{Message, ParseError, Request};

/// The largest request (head and body) accepted. Real requests are under 2 kB; the cap bounds
/// the memory a connection can hold.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// One thing read from a connection.
#[derive(Debug)]
pub enum Incoming {
    /// An RTSP request.
    Request(Box<Request<Vec<u8>>>),
    /// An interleaved binary frame (`$`, channel, length): RTCP receiver reports from a client.
    Data {
        /// The interleaved channel.
        channel: u8,
        /// The payload.
        payload: Bytes,
    },
    /// Something that is not a request: answer 400 and go on reading (the bad bytes are gone).
    Malformed(String),
    /// An RTSP response from the client (ignored; clients answer server-sent requests we never
    /// send).
    Response,
}

/// The read side of a connection, sans-I/O.
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
    /// Discarding an oversized or garbled message up to the next blank line.
    skipping: bool,
}

fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

impl Framer {
    /// A framer with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Option<Incoming> {
        if self.skipping {
            match find_blank_line(&self.buf) {
                Some(end) => {
                    self.buf.advance(end);
                    self.skipping = false;
                }
                None => {
                    // Keep the last 3 bytes: a blank line may straddle two reads.
                    let keep = self.buf.len().min(3);
                    let drop = self.buf.len() - keep;
                    self.buf.advance(drop);
                    return None;
                }
            }
        }
        // Stray line breaks between messages are allowed (RFC 2326 §15.1, robustness).
        while self.buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            self.buf.advance(1);
        }
        if self.buf.is_empty() {
            return None;
        }
        if self.buf[0] == b'$' {
            if self.buf.len() < 4 {
                return None;
            }
            let channel = self.buf[1];
            let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            if self.buf.len() < 4 + len {
                return None;
            }
            self.buf.advance(4);
            let payload = self.buf.split_to(len).freeze();
            return Some(Incoming::Data { channel, payload });
        }
        // A request head ends at a blank line: until one is buffered there is nothing to parse
        // (and a client trickling bytes costs one scan per read, not a parse).
        if find_blank_line(&self.buf).is_none() {
            if self.buf.len() > MAX_MESSAGE {
                self.skipping = true;
                return Some(Incoming::Malformed(format!(
                    "request larger than {MAX_MESSAGE} bytes"
                )));
            }
            return None;
        }
        let parsed = Message::<Vec<u8>>::parse(&self.buf[..]);
        match parsed {
            Ok((msg, consumed)) => {
                self.buf.advance(consumed);
                Some(match msg {
                    Message::Request(r) => Incoming::Request(Box::new(r)),
                    Message::Response(_) => Incoming::Response,
                    Message::Data(d) => Incoming::Data {
                        channel: d.channel_id(),
                        payload: Bytes::copy_from_slice(d.as_slice()),
                    },
                })
            }
            Err(ParseError::Incomplete(_)) => {
                let head_end = find_blank_line(&self.buf);
                if self.buf.len() > MAX_MESSAGE || head_end.is_some_and(|e| e > MAX_MESSAGE) {
                    self.skipping = true;
                    return Some(Incoming::Malformed(format!(
                        "request larger than {MAX_MESSAGE} bytes"
                    )));
                }
                if let Some(end) = head_end {
                    // A complete head that still does not parse with its body: a body
                    // longer than allowed is caught above, so wait for the body.
                    let declared = content_length(&self.buf[..end]);
                    if declared.is_some_and(|l| l > MAX_MESSAGE.saturating_sub(end)) {
                        self.skipping = true;
                        return Some(Incoming::Malformed(format!(
                            "request body larger than {MAX_MESSAGE} bytes"
                        )));
                    }
                }
                None
            }
            Err(ParseError::Error) => {
                match find_blank_line(&self.buf) {
                    Some(end) => self.buf.advance(end),
                    None => self.skipping = true,
                }
                Some(Incoming::Malformed("not an RTSP request".into()))
            }
        }
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(f: &mut Framer) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = f.next_message() {
            out.push(match m {
                Incoming::Request(r) => format!("req {}", <&str>::from(r.method())),
                Incoming::Data { channel, payload } => format!("data {channel} {}", payload.len()),
                Incoming::Malformed(w) => format!("bad {w}"),
                Incoming::Response => "resp".into(),
            });
        }
        out
    }

    #[test]
    fn requests_and_interleaved_data_byte_by_byte() {
        let wire = b"OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x01\x00\x03abcGET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nping";
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            f.push(&[*b]);
            got.extend(drain(&mut f));
        }
        assert_eq!(got, ["req OPTIONS", "data 1 3", "req GET_PARAMETER"]);
    }

    #[test]
    fn garbage_gets_one_error_and_the_next_request_is_read() {
        let mut f = Framer::new();
        f.push(b"\x16\x03\x01 hello garbage\r\n\r\nOPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 3\r\n\r\n");
        let got = drain(&mut f);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("bad"));
        assert_eq!(got[1], "req OPTIONS");
    }

    #[test]
    fn a_huge_content_length_is_refused_not_overflowed() {
        // Regression: end + Content-Length overflowed usize.
        let mut f = Framer::new();
        f.push(b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 18446744073709551615\r\n\r\n");
        let got = drain(&mut f);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("bad"), "{got:?}");
    }

    #[test]
    fn oversized_requests_are_cut_and_memory_stays_bounded() {
        let mut f = Framer::new();
        f.push(b"OPTIONS rtsp://h/s RTSP/1.0\r\nX-Junk: ");
        let mut errors = 0;
        for _ in 0..1000 {
            f.push(&[b'a'; 1024]);
            errors += drain(&mut f)
                .iter()
                .filter(|m| m.starts_with("bad"))
                .count();
            assert!(f.buffered() <= MAX_MESSAGE + 1024);
        }
        assert_eq!(errors, 1);
        f.push(b"\r\n\r\nOPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 4\r\n\r\n");
        assert_eq!(drain(&mut f), ["req OPTIONS"]);
    }
}
