//! Random client bytes into the sans-I/O SMTP session (`nvrkit_smtp::Session`).
//!
//! The first byte picks the mode: raw bytes, or each byte picks a token of the SMTP alphabet
//! (commands, DATA terminators, AUTH lines, BDAT chunks), which reaches deep states far faster
//! than raw bytes (smtp-proto's own fuzzer does the same). The input is fed in pieces whose sizes
//! come from the input, and again in one piece: both runs must give the same replies and
//! messages. Invariants: no panic, `consumed` within the input, messages within the size limit,
//! the buffered command line within its limit.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use nvrkit_smtp::{Session, SessionConfig, SessionEvent};

const TOKENS: &[&[u8]] = &[
    b"EHLO cam\r\n", b"HELO\r\n", b"MAIL FROM:<a@b>\r\n", b"MAIL FROM:a@b SIZE=100\r\n",
    b"RCPT TO:<c@d>\r\n", b"RCPT TO:c@d\r\n", b"DATA\r\n", b"\r\n.\r\n", b".\r\n", b"\n.\n",
    b"..x\r\n", b".\r", b"BDAT 5\r\n", b"BDAT 0 LAST\r\n", b"BDAT 3 LAST\r\n", b"AUTH LOGIN\r\n",
    b"AUTH PLAIN\r\n", b"AUTH PLAIN AGEAYg==\r\n", b"YQ==\r\n", b"*\r\n", b"STARTTLS\r\n",
    b"RSET\r\n", b"NOOP\r\n", b"VRFY x\r\n", b"QUIT\r\n", b"Subject: x\r\n", b"\r\n", b"\n",
    b"\r", b".", b"x", b"\xff", b"MAIL FROM:<>\r\n", b"AUTH CRAM-MD5\r\n", b"LHLO x\r\n",
];

fn config() -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        max_message_size: 2048,
        max_line: 128,
        max_data_line: 512,
        max_recipients: 4,
        max_errors: 1000,
        starttls: true,
        ..SessionConfig::default()
    })
}

/// Feeds `input` in pieces of the given sizes; returns the replies and the messages.
fn run(input: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> (Vec<u8>, Vec<Vec<u8>>) {
    let cfg = config();
    let mut session = Session::new(Arc::clone(&cfg), false);
    let mut out = Vec::new();
    let mut messages = Vec::new();
    let mut pos = 0;
    'outer: while pos < input.len() {
        let take = sizes.next().unwrap_or(usize::MAX).max(1).min(input.len() - pos);
        let piece = &input[pos..pos + take];
        pos += take;
        let mut at = 0;
        while at < piece.len() {
            let fed = session.feed(&piece[at..]);
            assert!(fed.consumed <= piece.len() - at);
            at += fed.consumed;
            match fed.event {
                None => assert_eq!(at, piece.len()),
                Some(SessionEvent::Message(m)) => {
                    assert!(m.data.len() <= cfg.max_message_size);
                    messages.push(m.data.to_vec());
                }
                // The I/O layer drops what follows STARTTLS; to compare runs, both treat the
                // TLS handshake as done and go on with the rest.
                Some(SessionEvent::StartTls) => session.tls_started(),
                Some(SessionEvent::Close) => break 'outer,
                Some(_) => {}
            }
        }
        out.extend_from_slice(session.output());
        session.clear_output();
    }
    out.extend_from_slice(session.output());
    (out, messages)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let input: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        rest.iter().flat_map(|&b| TOKENS[b as usize % TOKENS.len()].iter().copied()).collect()
    };
    let whole = run(&input, &mut std::iter::empty());
    let sizes: Vec<usize> = data.iter().map(|&b| (b as usize % 17) + 1).collect();
    let pieces = run(&input, &mut sizes.into_iter().cycle());
    assert_eq!(whole, pieces, "feeding in pieces must not change the dialogue");
});
