//! Splits the bytes of an RTSP connection into requests and interleaved data frames
//! (RFC 2326 §10.12), with a cap on the size of a message and recovery from garbage.
//!
//! Linear in the bytes received, however they are split into reads: the search for the blank
//! line that ends a request head resumes where the last one stopped, the head is parsed once,
//! and a body is waited for by its `Content-Length` without parsing again. (It used to rescan
//! the buffered request from its start on every read: a 64 KiB head sent a byte at a time cost
//! about 2 × 10⁹ byte comparisons, on loopcam's one thread.)

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
    /// A request (head, or head and declared body) larger than [`MAX_MESSAGE`]: answer 400 and
    /// close the connection (the framer would discard the rest up to the next blank line).
    TooLarge(String),
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
    /// Where the search for the blank line resumes: no `\r\n\r\n` starts before it in `buf`.
    scanned: usize,
    /// The length of the head of the message at the front of `buf` (blank line included),
    /// once found.
    head_end: Option<usize>,
    /// Bytes scanned for blank lines since creation (a test's measure of the work done).
    #[cfg(test)]
    work: usize,
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

    /// Whether part of a message is buffered (or an oversized one is being discarded): what
    /// the connection's request deadline times.
    pub fn in_message(&self) -> bool {
        self.skipping || !self.buf.is_empty()
    }

    /// Drops `n` bytes from the front; the scan state, relative to the front, starts over.
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.scanned = 0;
        self.head_end = None;
    }

    /// The end of the first blank line (`\r\n\r\n`) in the buffer, searching only bytes not
    /// searched before.
    fn find_blank_line(&mut self) -> Option<usize> {
        let from = self.scanned;
        let found = self.buf[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| from + p + 4);
        #[cfg(test)]
        {
            self.work += found.map_or(self.buf.len() - from, |end| end - from);
        }
        // A blank line may straddle this read and the next: resume 3 bytes back.
        self.scanned = match found {
            Some(end) => end - 4,
            None => self.buf.len().saturating_sub(3).max(from),
        };
        found
    }

    /// The next complete message, or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Option<Incoming> {
        if self.skipping {
            match self.find_blank_line() {
                Some(end) => {
                    self.consume(end);
                    self.skipping = false;
                }
                None => {
                    // Keep the last 3 bytes: a blank line may straddle two reads.
                    let keep = self.buf.len().min(3);
                    let drop = self.buf.len() - keep;
                    self.consume(drop);
                    return None;
                }
            }
        }
        // Stray line breaks between messages are allowed (RFC 2326 §15.1, robustness).
        let stray = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if stray > 0 {
            self.consume(stray);
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
            self.consume(4);
            let payload = self.buf.split_to(len).freeze();
            return Some(Incoming::Data { channel, payload });
        }
        // A request head ends at a blank line: until one is buffered there is nothing to parse,
        // and each read is searched once.
        let head_end = match self.head_end {
            Some(end) => end,
            None => match self.find_blank_line() {
                Some(end) => {
                    self.head_end = Some(end);
                    end
                }
                None => {
                    if self.buf.len() > MAX_MESSAGE {
                        self.skipping = true;
                        return Some(Incoming::TooLarge(format!(
                            "request head larger than {MAX_MESSAGE} bytes"
                        )));
                    }
                    return None;
                }
            },
        };
        if head_end > MAX_MESSAGE {
            self.consume(head_end);
            return Some(Incoming::TooLarge(format!(
                "request head larger than {MAX_MESSAGE} bytes"
            )));
        }
        // The body is waited for by its declared length (the head is read once per arrival,
        // never parsed per read).
        let declared = content_length(&self.buf[..head_end]).unwrap_or(0);
        if declared > MAX_MESSAGE.saturating_sub(head_end) {
            self.skipping = true;
            self.consume(head_end);
            return Some(Incoming::TooLarge(format!(
                "request body larger than {MAX_MESSAGE} bytes"
            )));
        }
        let total = head_end + declared;
        if self.buf.len() < total {
            return None;
        }
        match Message::<Vec<u8>>::parse(&self.buf[..total]) {
            Ok((msg, consumed)) => {
                self.consume(consumed.min(total));
                Some(match msg {
                    Message::Request(r) => Incoming::Request(Box::new(r)),
                    Message::Response(_) => Incoming::Response,
                    Message::Data(d) => Incoming::Data {
                        channel: d.channel_id(),
                        payload: Bytes::copy_from_slice(d.as_slice()),
                    },
                })
            }
            // Still incomplete with the whole declared message here: the head says something
            // else than our reading of it (a second Content-Length, say). Dropped whole, so no
            // byte is ever parsed twice.
            Err(ParseError::Incomplete(_)) | Err(ParseError::Error) => {
                self.consume(total);
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
                Incoming::TooLarge(w) => format!("big {w}"),
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
        assert!(got[0].starts_with("big"), "{got:?}");
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
                .filter(|m| m.starts_with("big"))
                .count();
            assert!(f.buffered() <= MAX_MESSAGE + 1024);
        }
        assert_eq!(errors, 1);
        f.push(b"\r\n\r\nOPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 4\r\n\r\n");
        assert_eq!(drain(&mut f), ["req OPTIONS"]);
    }

    /// A 64 KiB head sent one byte per read: the framer searches each byte a bounded number of
    /// times (it used to search the whole buffer again on every read, ~2 × 10⁹ bytes here).
    #[test]
    fn a_64_kib_head_byte_by_byte_costs_linear_work() {
        let mut wire = b"DESCRIBE rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ".to_vec();
        wire.resize(MAX_MESSAGE - 4, b'a');
        wire.extend_from_slice(b"\r\n\r\n");
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &wire {
            f.push(&[*b]);
            got.extend(drain(&mut f));
        }
        assert_eq!(got, ["req DESCRIBE"]);
        assert!(
            f.work <= 4 * wire.len(),
            "{} bytes searched for a {}-byte request",
            f.work,
            wire.len()
        );
        // Past the cap, byte by byte: refused once, and the discarding stays linear too.
        let mut f = Framer::new();
        let mut got = Vec::new();
        let mut n = 0;
        for b in wire
            .iter()
            .take(MAX_MESSAGE - 4)
            .chain(wire.iter().take(MAX_MESSAGE))
        {
            f.push(&[*b]);
            got.extend(drain(&mut f));
            n += 1;
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("big"));
        assert!(f.work <= 4 * n, "{} bytes searched for {n}", f.work);
    }

    #[test]
    fn a_body_trickled_byte_by_byte_is_not_reparsed() {
        let mut wire =
            b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 60000\r\n\r\n"
                .to_vec();
        let head = wire.len();
        wire.resize(head + 60_000, b'x');
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &wire {
            f.push(&[*b]);
            got.extend(drain(&mut f));
        }
        assert_eq!(got, ["req SET_PARAMETER"]);
        assert!(f.work <= 4 * head, "the body is never searched: {}", f.work);
        assert!(!f.in_message());
    }
}
