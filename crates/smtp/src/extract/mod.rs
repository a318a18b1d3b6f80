//! From an accepted [`Message`] to a [`CameraEvent`]: MIME parsing with `mail-parser`, then the
//! first vendor profile that recognizes the mail.
//!
//! An unknown format is never refused (a refused mail makes a camera retry forever): it becomes a
//! [`Vendor::Generic`] event read from the subject. A message that is not even MIME still gives
//! an event, with what the envelope says.

mod dahua;
mod generic;
mod hikvision;
mod reolink;

use std::net::SocketAddr;

use bytes::Bytes;
use mail_parser::{MessageParser, MimeHeaders};
use nvrkit_media::WallTime;

use crate::event::{CameraEvent, EventKind, EventPhase, EventTime, Snapshot, Source, Vendor};
use crate::session::Message;

/// A mail as the vendor profiles see it: decoded headers and text.
#[derive(Debug, Default)]
pub(crate) struct MailView {
    pub subject: String,
    pub x_mailer: String,
    /// The text body (text/plain, else text/html reduced to text), transfer encoding and charset
    /// decoded.
    pub text: String,
    /// The first MIME boundary, if multipart (Hikvision's is `#BOUNDARY#`).
    pub boundary: Option<String>,
    /// The `Date:` header as sent.
    pub date: Option<String>,
    /// `KEY: value` lines of the body's first [`FIELD_LINES`] lines, as byte ranges of `text`
    /// (key, value); made once by [`MailView::index_fields`], read by every profile.
    fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// Camera alarm texts put their fields in the first dozen lines; a long body (a forwarded mail,
/// a load test) is not searched past this.
const FIELD_LINES: usize = 100;

impl MailView {
    /// Finds the `KEY: value` lines once.
    pub fn index_fields(&mut self) {
        let base = self.text.as_ptr() as usize;
        self.fields = self
            .text
            .lines()
            .take(FIELD_LINES)
            .filter_map(split_field)
            .map(|(k, v)| {
                let (k0, v0) = (k.as_ptr() as usize - base, v.as_ptr() as usize - base);
                (k0..k0 + k.len(), v0..v0 + v.len())
            })
            .collect();
    }

    /// `KEY: value` lines of the body, keys as written, values trimmed.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|(k, v)| (&self.text[k.clone()], &self.text[v.clone()]))
    }

    /// The value of the first field whose key matches (ASCII case-insensitive, blanks collapsed).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }

    /// The first field whose key starts with `prefix`, with the key (for keys that carry a
    /// format, like `Alarm Start Time(D/M/Y H:M:S)`).
    pub fn field_prefix(&self, prefix: &str) -> Option<(&str, &str)> {
        self.fields().find(|(k, _)| {
            k.len() >= prefix.len()
                && k.is_char_boundary(prefix.len())
                && same_key(&k[..prefix.len()], prefix)
        })
    }
}

/// What a vendor profile read.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub device: Option<String>,
    pub camera: Option<String>,
    pub channel: Option<String>,
    pub kind_text: Option<String>,
    pub kind: Option<EventKind>,
    pub event_time: Option<EventTime>,
}

/// `KEY: value`, splitting at the first `:` outside parentheses (Dahua's
/// `Alarm Start Time(D/M/Y H:M:S): 05/12/2019 09:10:11`).
fn split_field(line: &str) -> Option<(&str, &str)> {
    let mut depth = 0u32;
    // Keys are short: a colon past 64 bytes is not a field separator.
    for (i, &c) in line.as_bytes().iter().enumerate().take(66) {
        match c {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b':' if depth == 0 => {
                let key = line[..i].trim();
                if key.is_empty() || key.len() > 64 {
                    return None;
                }
                return Some((key, line[i + 1..].trim()));
            }
            _ => {}
        }
    }
    None
}

fn same_key(a: &str, b: &str) -> bool {
    let mut a = a.split_ascii_whitespace();
    let mut b = b.split_ascii_whitespace();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
            _ => return false,
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Reads a camera timestamp as a local date-time, ISO 8601 without zone. `order` is a format hint
/// like `D/M/Y`, `M/D/Y` or `Y-M-D`; with none, a four-digit first field means Y-M-D, and a
/// day/month order is only guessed when one field is above 12.
pub(crate) fn parse_local_time(text: &str, order: Option<&str>) -> Option<String> {
    let nums: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(7)
        .map(|s| {
            if s.len() > 4 {
                u32::MAX
            } else {
                s.parse().unwrap_or(u32::MAX)
            }
        })
        .collect();
    if nums.len() < 5 {
        return None;
    }
    let first_is_year = text
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .len()
        == 4;
    let order = order.map(|o| {
        o.to_ascii_uppercase()
            .replace(|c: char| !c.is_ascii_alphabetic(), "")
    });
    let (y, mo, d) = match order.as_deref() {
        Some(o) if o.starts_with("YMD") => (nums[0], nums[1], nums[2]),
        Some(o) if o.starts_with("DMY") => (nums[2], nums[1], nums[0]),
        Some(o) if o.starts_with("MDY") => (nums[2], nums[0], nums[1]),
        _ if first_is_year => (nums[0], nums[1], nums[2]),
        _ if nums[0] > 12 && nums[1] <= 12 => (nums[2], nums[1], nums[0]),
        _ if nums[1] > 12 && nums[0] <= 12 => (nums[2], nums[0], nums[1]),
        _ => return None,
    };
    let (h, mi) = (nums[3], nums[4]);
    let s = nums.get(5).copied().unwrap_or(0);
    let pm = text.to_ascii_uppercase().contains("PM");
    let h = if pm && h < 12 { h + 12 } else { h };
    let valid = (1970..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && h < 24
        && mi < 60
        && s < 61;
    valid.then(|| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"))
}

/// Reads an RFC 5322 `Date:` (`Tue, 02 Jun 2020 08:00:01 +0200`) as the local time it names.
pub(crate) fn parse_rfc5322_local(text: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let month_at = tokens.iter().position(|t| {
        t.len() >= 3
            && t.is_char_boundary(3)
            && MONTHS.contains(&t[..3].to_ascii_lowercase().as_str())
    })?;
    let month = MONTHS
        .iter()
        .position(|m| tokens[month_at][..3].eq_ignore_ascii_case(m))?
        + 1;
    let day = tokens.get(month_at.checked_sub(1)?)?;
    let year = tokens.get(month_at + 1)?;
    let time = tokens.get(month_at + 2)?;
    parse_local_time(&format!("{year}-{month}-{day} {time}"), Some("Y-M-D"))
}

/// Reads an accepted message into an event. Never fails: what cannot be read is left out.
///
/// ```
/// use nvrkit_smtp::{extract, EventKind, Message, Vendor};
/// let mail = &b"From: cam@x\r\nSubject: Motion alarm on Door\r\n\r\nMotion detected\r\n"[..];
/// let message = Message::new("cam@x", vec!["door@nvr".to_owned()], mail);
/// let event = extract(&message, None, nvrkit_media::WallTime::now());
/// assert_eq!(event.vendor, Vendor::Generic);
/// assert_eq!(event.kind, EventKind::Motion);
/// assert_eq!(event.camera.as_deref(), Some("door"));
/// ```
pub fn extract(message: &Message, peer: Option<SocketAddr>, received_at: WallTime) -> CameraEvent {
    let (raw, cuts) = prepare(&message.data);
    let parsed = MessageParser::default().parse(&raw[..]);
    let mut view = MailView::default();
    let mut snapshots = Vec::new();
    let mut from = String::new();
    if let Some(mail) = &parsed {
        view.subject = mail.subject().unwrap_or_default().trim().to_owned();
        view.x_mailer = mail
            .header_raw("X-Mailer")
            .unwrap_or_default()
            .trim()
            .to_owned();
        view.text = mail
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default();
        view.index_fields();
        view.boundary = mail
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .map(str::to_owned);
        view.date = mail.header_raw("Date").map(|d| d.trim().to_owned());
        from = mail
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned();
        for part in mail.attachments() {
            let name = part.attachment_name().map(str::to_owned);
            let ctype = part.content_type().map(|ct| {
                format!(
                    "{}/{}",
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or_default().to_ascii_lowercase()
                )
            });
            let Some(content_type) = image_type(ctype.as_deref(), name.as_deref()) else {
                continue;
            };
            let n = snapshots.len() + 1;
            let ext = if content_type == "image/png" {
                "png"
            } else {
                "jpg"
            };
            let name = name.unwrap_or_else(|| format!("snapshot-{n}.{ext}"));
            let headers = part.offset_header as usize..part.offset_body as usize;
            let original = cuts
                .iter()
                .find(|c| headers.contains(&c.cte_in_copy))
                .map(|c| c.body.clone());
            let data = match original {
                Some(body) => decode_base64_body(&message.data[body]),
                None => part.contents().to_vec(),
            };
            snapshots.push(Snapshot::new(
                name,
                content_type.to_owned(),
                Bytes::from(data),
            ));
        }
    }
    if from.is_empty() {
        from = message.mail_from.clone();
    }

    let (vendor, fields) = if let Some(f) = hikvision::read(&view) {
        (Vendor::Hikvision, f)
    } else if let Some(f) = reolink::read(&view) {
        (Vendor::Reolink, f)
    } else if let Some(f) = dahua::read(&view) {
        (Vendor::Dahua, f)
    } else {
        (Vendor::Generic, generic::read(&view))
    };

    let kind = fields
        .kind
        .or_else(|| fields.kind_text.as_deref().and_then(EventKind::classify))
        .or_else(|| EventKind::classify(&view.subject))
        .unwrap_or_else(|| {
            EventKind::Other(
                fields
                    .kind_text
                    .clone()
                    .or_else(|| non_empty(&view.subject))
                    .unwrap_or_else(|| "mail".to_owned()),
            )
        });
    let camera = fields.camera.or_else(|| {
        message
            .rcpt_to
            .first()
            .and_then(|r| r.split('@').next())
            .and_then(non_empty)
    });
    CameraEvent {
        phase: EventPhase::Start,
        received_at,
        vendor,
        device: fields.device,
        camera,
        channel: fields.channel,
        kind,
        kind_text: fields.kind_text,
        event_time: fields.event_time,
        subject: view.subject,
        from,
        to: message.rcpt_to.clone(),
        snapshots,
        source: Source {
            peer,
            helo: message.helo.clone(),
            auth_user: message.auth_user.clone(),
            tls: message.tls,
            mail_from: message.mail_from.clone(),
        },
    }
}

/// An image part's base64 body, cut out of the copy given to mail-parser.
#[derive(Debug)]
struct Cut {
    /// Where its `Content-Transfer-Encoding` value starts, in the copy.
    cte_in_copy: usize,
    /// Its body in the original message.
    body: std::ops::Range<usize>,
}

/// Bytes of text (headers and non-image bodies) handed to mail-parser at most. A camera's alarm
/// text is a few hundred bytes; its snapshots are cut out ([`Cut`]) or left whole.
const MAX_COPY: usize = 1 << 20;
/// One header block (the mail's, or a part's) at most; the rest of the block is left out.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// One header field at most, folded lines included; the rest of the field is left out.
const MAX_FIELD: usize = 16 * 1024;
/// Fields of one header block at most.
const MAX_FIELDS: usize = 256;
/// Body bytes of one non-image part at most (the profiles read the first 100 lines of text).
const MAX_PART_BODY: usize = 64 * 1024;
/// Part delimiter lines (`--boundary`) at most: past them the copy ends. A camera mail has
/// under ten.
const MAX_DELIMITERS: usize = 256;

/// What mail-parser is given instead of the mail: a copy in which every header block, header
/// field, text body and the count of parts is bounded, and the base64 bodies of image parts
/// inside a multipart are cut out (decoded by us from the original with the base64 crate,
/// [`decode_base64_body`]).
///
/// Why: mail-parser 0.11 goes through every part a byte at a time, decoding base64 as it goes
/// (94 % of the time of a mail with three 100 KB snapshots, measured with perf: cutting took it
/// from 778 to about 420 µs, `cargo bench --bench smtp -- extract/hikvision_3x100KB`), and its
/// time grows faster than the input on some shapes (1 MiB of 30,000 tiny parts: 117 ms; a
/// header with 150,000 parameters: 48 ms, 13× the time of a quarter of it). Bounding what
/// reaches it keeps extraction linear in the mail whatever its shape, without patching it.
///
/// One pass over the lines, each byte looked at a bounded number of times: the search for the
/// end of a cut image body starts after its header and the scan resumes there; the first search
/// that finds no end stops all cutting (so a mail of unterminated image parts cannot make it
/// search the rest of the message once per part).
fn prepare(raw: &[u8]) -> (Vec<u8>, Vec<Cut>) {
    let mut p = Prepare {
        raw,
        dash: Next::new(b"\n--"),
        blank_lf: Next::new(b"\n\n"),
        blank_crlf: Next::new(b"\n\r\n"),
        copy: Vec::with_capacity(raw.len().min(MAX_COPY) + 1024),
        cuts: Vec::new(),
        text_bytes: 0,
        delimiters: 0,
        cutting: true,
    };
    p.run();
    (p.copy, p.cuts)
}

struct Prepare<'a> {
    raw: &'a [u8],
    /// The next `\n--` (a line that may be a part delimiter), `\n\n` and `\n\r\n` (a blank
    /// line): skipping what is not kept jumps with these instead of going line by line.
    dash: Next,
    blank_lf: Next,
    blank_crlf: Next,
    copy: Vec<u8>,
    cuts: Vec<Cut>,
    /// Text bytes copied so far (not counting uncut image bodies).
    text_bytes: usize,
    delimiters: usize,
    /// False after a cut image body found no end.
    cutting: bool,
}

/// The header block being read: its bounded lines, and what they say.
#[derive(Default)]
struct Block {
    bytes: Vec<u8>,
    /// Where a `Content-Transfer-Encoding: base64` value is, in `bytes`.
    cte_base64: Option<usize>,
    fields: usize,
    field_len: usize,
    /// The delimiter line that opened it (a part's), trimmed.
    boundary: Option<std::ops::Range<usize>>,
}

impl Block {
    /// Whether nothing more will be kept of this block: it holds its most fields or bytes, or a
    /// field overflowed (what follows a 16 KiB header is not a camera's mail).
    fn full(&self) -> bool {
        self.fields >= MAX_FIELDS
            || self.field_len >= MAX_FIELD
            || self.bytes.len() + 3 > MAX_HEADER_BLOCK
    }

    fn push_line(&mut self, line: &[u8]) {
        if self.full() {
            return;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if continuation {
            if self.fields == 0 {
                return;
            }
        } else {
            self.fields += 1;
            self.field_len = 0;
        }
        let room = (MAX_FIELD - self.field_len).min(MAX_HEADER_BLOCK - self.bytes.len());
        if room < 3 {
            return;
        }
        if line.len() <= room {
            if !continuation && self.cte_base64.is_none() {
                self.cte_base64 = cte_base64(line).map(|at| self.bytes.len() + at);
            }
            self.bytes.extend_from_slice(line);
            self.field_len += line.len();
        } else {
            // Cut the field short, keeping the line ended.
            self.bytes.extend_from_slice(&line[..room - 2]);
            self.bytes.extend_from_slice(b"\r\n");
            self.field_len = MAX_FIELD;
        }
    }

    /// Whether the block heads a base64 image part (not itself a multipart).
    fn is_base64_image(&self) -> bool {
        if self.cte_base64.is_none() {
            return false;
        }
        let lower = self.bytes.to_ascii_lowercase();
        let has = |needle: &[u8]| memchr::memmem::find(&lower, needle).is_some();
        (has(b"image/") || has(b".jpg") || has(b".jpeg") || has(b".png")) && !has(b"multipart/")
    }

    fn is_image(&self) -> bool {
        memchr::memmem::find(&self.bytes.to_ascii_lowercase(), b"image/").is_some()
    }
}

/// Where `base64` starts in a `Content-Transfer-Encoding: base64` line (any case, any blanks).
fn cte_base64(line: &[u8]) -> Option<usize> {
    const HEADER: &[u8] = b"content-transfer-encoding:";
    let text = line.trim_ascii_end();
    if text.len() < HEADER.len() + 6 || !text[..HEADER.len()].eq_ignore_ascii_case(HEADER) {
        return None;
    }
    let value = text[HEADER.len()..].trim_ascii_start();
    value
        .eq_ignore_ascii_case(b"base64")
        .then(|| text.len() - value.len())
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// The next match of a pattern, remembered: asked with positions that never go back, each byte
/// is searched at most once over a whole mail.
struct Next {
    finder: memchr::memmem::Finder<'static>,
    /// Where the last search started, and what it found.
    searched_from: usize,
    found: Option<usize>,
}

impl Next {
    fn new(pattern: &'static [u8]) -> Next {
        Next {
            finder: memchr::memmem::Finder::new(pattern),
            searched_from: usize::MAX,
            found: None,
        }
    }

    /// The first match starting at or after `from`.
    fn at_or_after(&mut self, raw: &[u8], from: usize) -> Option<usize> {
        if self.searched_from <= from {
            match self.found {
                Some(p) if p >= from => return Some(p),
                None => return None,
                Some(_) => {}
            }
        }
        self.searched_from = from;
        self.found = self.finder.find(&raw[from..]).map(|p| from + p);
        self.found
    }
}

/// The line of `raw` starting at `pos`, terminator included.
fn line_at(raw: &[u8], pos: usize) -> &[u8] {
    let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |p| pos + p + 1);
    &raw[pos..end]
}

impl Prepare<'_> {
    /// The start of the first line at or after the line start `pos` that begins with `--`
    /// (when `dash`) or is blank (when `blank`); the end of the mail if none.
    fn skip_to(&mut self, pos: usize, dash: bool, blank: bool) -> usize {
        let raw = self.raw;
        if pos >= raw.len() {
            return raw.len();
        }
        let line = line_at(raw, pos);
        if (dash && line.starts_with(b"--")) || (blank && is_blank(line)) {
            return pos;
        }
        // A match's `\n` ends a line at or after `pos`'s; the line after it is the one sought.
        let mut next = raw.len();
        if dash && let Some(p) = self.dash.at_or_after(raw, pos) {
            next = next.min(p + 1);
        }
        if blank {
            for finder in [&mut self.blank_lf, &mut self.blank_crlf] {
                if let Some(p) = finder.at_or_after(raw, pos) {
                    next = next.min(p + 1);
                }
            }
        }
        next
    }

    fn copy_text(&mut self, bytes: &[u8], budget: &mut usize) {
        let room = (*budget).min(MAX_COPY.saturating_sub(self.text_bytes));
        if bytes.len() <= room {
            self.copy.extend_from_slice(bytes);
            self.text_bytes += bytes.len();
            *budget -= bytes.len();
        } else {
            // Past a limit: nothing more of this body (a cut line would be half a line).
            *budget = 0;
        }
    }

    fn run(&mut self) {
        let raw = self.raw;
        let mut pos = 0;
        // The mail's own header block.
        let mut block = Block::default();
        while pos < raw.len() {
            if block.full() {
                pos = self.skip_to(pos, false, true);
                if pos >= raw.len() {
                    break;
                }
            }
            let line = line_at(raw, pos);
            pos += line.len();
            if is_blank(line) {
                block.bytes.extend_from_slice(line);
                break;
            }
            block.push_line(line);
        }
        let top_is_image = block.is_image();
        self.text_bytes += block.bytes.len();
        self.copy.extend_from_slice(&block.bytes);
        if top_is_image {
            // A mail that is one image: mail-parser decodes it; nothing to bound but its size.
            self.copy.extend_from_slice(&raw[pos..]);
            return;
        }
        // The body: text lines, and part delimiters each followed by a header block.
        let mut budget = MAX_PART_BODY;
        while pos < raw.len() {
            if budget == 0 || self.text_bytes >= MAX_COPY {
                pos = self.skip_to(pos, true, false);
                if pos >= raw.len() {
                    return;
                }
            }
            let line = line_at(raw, pos);
            if !line.starts_with(b"--") {
                pos += line.len();
                self.copy_text(line, &mut budget);
                continue;
            }
            self.delimiters += 1;
            if self.delimiters > MAX_DELIMITERS {
                return;
            }
            // A part: its header block, up to the blank line (or the next delimiter).
            let mut block = Block {
                boundary: Some(pos..pos + line.trim_ascii_end().len()),
                ..Block::default()
            };
            block.bytes.extend_from_slice(line);
            pos += line.len();
            let mut ended = false;
            while pos < raw.len() {
                if block.full() {
                    pos = self.skip_to(pos, true, true);
                    if pos >= raw.len() {
                        break;
                    }
                }
                let line = line_at(raw, pos);
                if line.starts_with(b"--") {
                    break; // a delimiter before any blank line: this one had no body
                }
                pos += line.len();
                if is_blank(line) {
                    block.bytes.extend_from_slice(line);
                    ended = true;
                    break;
                }
                block.push_line(line);
            }
            let copy_at = self.copy.len();
            self.text_bytes += block.bytes.len();
            self.copy.extend_from_slice(&block.bytes);
            budget = MAX_PART_BODY;
            if !ended {
                continue;
            }
            if self.cutting && block.is_base64_image() {
                let boundary = block.boundary.clone().unwrap_or(0..0);
                // The body ends at the next line that starts with the same delimiter.
                let mut needle = Vec::with_capacity(boundary.len() + 1);
                needle.push(b'\n');
                needle.extend_from_slice(&raw[boundary]);
                match memchr::memmem::find(&raw[pos..], &needle) {
                    Some(p) => {
                        let cte = block.cte_base64.unwrap_or(0);
                        self.cuts.push(Cut {
                            cte_in_copy: copy_at + cte,
                            body: pos..pos + p,
                        });
                        pos += p;
                    }
                    None => self.cutting = false,
                }
            } else if block.is_image() {
                // An image not in base64 (8bit, quoted-printable): whole, outside the budget.
                let start = pos;
                pos = self.skip_to(pos, true, false);
                self.copy.extend_from_slice(&raw[start..pos]);
            }
        }
    }
}

/// Base64 text of a MIME part (wrapped or not, padded or not) to bytes. Bytes outside the
/// alphabet are skipped, as mail-parser does, so a damaged snapshot still decodes.
fn decode_base64_body(text: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut clean = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(p) = memchr::memchr3(b'\r', b'\n', b' ', rest) {
        clean.extend_from_slice(&rest[..p]);
        rest = &rest[p + 1..];
    }
    clean.extend_from_slice(rest);
    // Stop at padding: what follows `=` is not data.
    if let Some(p) = memchr::memchr(b'=', &clean) {
        clean.truncate(p);
    }
    if let Ok(bytes) = LENIENT.decode(&clean) {
        return bytes;
    }
    clean.retain(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
    // A single leftover character carries no whole byte.
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT.decode(&clean).unwrap_or_default()
}

/// `image/jpeg` or `image/png` from the content type, else from the file name (cameras send
/// `application/octet-stream` snapshots named `*.jpg`).
fn image_type(ctype: Option<&str>, name: Option<&str>) -> Option<&'static str> {
    match ctype {
        Some("image/jpeg" | "image/jpg" | "image/pjpeg") => return Some("image/jpeg"),
        Some("image/png") => return Some("image/png"),
        _ => {}
    }
    let name = name?.to_ascii_lowercase();
    if name.ends_with(".jpg") || name.ends_with(".jpeg") {
        Some("image/jpeg")
    } else if name.ends_with(".png") {
        Some("image/png")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_formats() {
        let cases = [
            ("2015-05-22,14:52:18", None, Some("2015-05-22T14:52:18")),
            (
                "05/12/2019 09:10:11",
                Some("D/M/Y H:M:S"),
                Some("2019-12-05T09:10:11"),
            ),
            (
                "05/12/2019 09:10:11",
                Some("M/D/Y H:M:S"),
                Some("2019-05-12T09:10:11"),
            ),
            (
                "2020-03-21 12:34:56",
                Some("Y-M-D H:M:S"),
                Some("2020-03-21T12:34:56"),
            ),
            ("21/03/2020 12:34:56", None, Some("2020-03-21T12:34:56")),
            ("03/21/2020 01:34:56 PM", None, Some("2020-03-21T13:34:56")),
            ("05/06/2020 12:34:56", None, None),
            ("yesterday", None, None),
            ("2015-13-22,14:52:18", None, None),
            ("99999999999-1-1 1:1:1", None, None),
        ];
        for (text, order, want) in cases {
            assert_eq!(
                parse_local_time(text, order).as_deref(),
                want,
                "{text} {order:?}"
            );
        }
    }

    #[test]
    fn fields_split_outside_parentheses() {
        assert_eq!(
            split_field("Alarm Start Time(D/M/Y H:M:S): 05/12/2019 09:10:11"),
            Some(("Alarm Start Time(D/M/Y H:M:S)", "05/12/2019 09:10:11"))
        );
        assert_eq!(
            split_field("EVENT TIME:    2015-05-22,14:52:18"),
            Some(("EVENT TIME", "2015-05-22,14:52:18"))
        );
        assert_eq!(split_field("no field here"), None);
        assert!(same_key("CAMERA  NAME(NUM)", "camera name(num)"));
    }

    fn event_of(mail: &'static [u8], rcpt: &str) -> CameraEvent {
        let message = Message::new("sender@cams.example", vec![rcpt.to_owned()], mail);
        extract(&message, None, WallTime::from_micros(1_700_000_000_000_000))
    }

    #[test]
    fn hikvision_ipc() {
        let e = event_of(
            include_bytes!("../../testdata/hikvision_ipc.eml"),
            "nvr@events.example",
        );
        assert_eq!(e.vendor, Vendor::Hikvision);
        assert_eq!(e.kind, EventKind::Motion);
        assert_eq!(e.kind_text.as_deref(), Some("Motion Detected"));
        assert_eq!(e.device.as_deref(), Some("Front Door"));
        assert_eq!(e.camera.as_deref(), Some("Front Door"));
        assert_eq!(e.channel.as_deref(), Some("1"));
        let t = e.event_time.unwrap();
        assert_eq!(
            (t.text.as_str(), t.local.as_deref()),
            ("2015-05-22,14:52:18", Some("2015-05-22T14:52:18"))
        );
        assert_eq!(e.subject, "IPCamera: Motion Detected");
        assert_eq!(e.from, "ipc@cams.example");
        assert_eq!(e.snapshots.len(), 1);
        assert_eq!(e.snapshots[0].name, "ch01_20150522145218.jpg");
        assert_eq!(
            &e.snapshots[0].data[..],
            include_bytes!("../../testdata/snapshot.jpg")
        );
    }

    #[test]
    fn hikvision_nvr_names_the_channel_camera() {
        let e = event_of(
            include_bytes!("../../testdata/hikvision_nvr.eml"),
            "alarms@events.example",
        );
        assert_eq!(e.vendor, Vendor::Hikvision);
        assert_eq!(e.kind, EventKind::Motion);
        assert_eq!(e.device.as_deref(), Some("Embedded Net DVR"));
        assert_eq!(e.camera.as_deref(), Some("Garage"));
        assert_eq!(e.channel.as_deref(), Some("A2"));
        assert_eq!(
            e.event_time.unwrap().local.as_deref(),
            Some("2019-03-04T10:32:12")
        );
        assert_eq!(e.snapshots.len(), 1);
    }

    #[test]
    fn hikvision_nvr_channel_from_subject_only() {
        let mail = b"From: n@x\r\nSubject: NVR: Video Tampering Detected On Channel D3\r\nX-Mailer: HIKMailer\r\n\r\nEVENT TYPE: Video Tampering\r\n";
        let e = event_of(mail, "shed@nvr");
        assert_eq!(e.kind, EventKind::Tamper);
        assert_eq!(e.channel.as_deref(), Some("D3"));
        assert_eq!(
            e.camera.as_deref(),
            Some("shed"),
            "falls back to the recipient"
        );
    }

    #[test]
    fn dahua_base64_gb2312_body() {
        let e = event_of(
            include_bytes!("../../testdata/dahua.eml"),
            "backyard@events.example",
        );
        assert_eq!(e.vendor, Vendor::Dahua);
        assert_eq!(e.kind, EventKind::Motion);
        assert_eq!(e.kind_text.as_deref(), Some("Motion Detection"));
        assert_eq!(e.channel.as_deref(), Some("2"));
        assert_eq!(e.device.as_deref(), Some("后院摄像机"));
        assert_eq!(e.camera.as_deref(), Some("backyard"));
        let t = e.event_time.unwrap();
        assert_eq!(t.text, "05/12/2019 09:10:11");
        assert_eq!(t.local.as_deref(), Some("2019-12-05T09:10:11"));
        assert_eq!(
            e.snapshots.len(),
            1,
            "octet-stream named .jpg is a snapshot"
        );
        assert_eq!(e.snapshots[0].content_type, "image/jpeg");
    }

    #[test]
    fn reolink() {
        let e = event_of(
            include_bytes!("../../testdata/reolink.eml"),
            "nvr@events.example",
        );
        assert_eq!(e.vendor, Vendor::Reolink);
        assert_eq!(e.kind, EventKind::Motion);
        assert_eq!(e.camera.as_deref(), Some("Front Porch"));
        assert_eq!(e.channel.as_deref(), Some("1"));
        assert_eq!(
            e.event_time.unwrap().local.as_deref(),
            Some("2020-03-21T12:34:56")
        );
        assert_eq!(e.snapshots[0].name, "Front Porch_00_20200321123456.jpg");
    }

    #[test]
    fn axis_is_generic_and_read_by_keywords() {
        let e = event_of(
            include_bytes!("../../testdata/axis.eml"),
            "driveway@events.example",
        );
        assert_eq!(e.vendor, Vendor::Generic);
        assert_eq!(e.kind, EventKind::LineCrossing);
        assert_eq!(e.camera.as_deref(), Some("driveway"));
        let t = e.event_time.unwrap();
        assert_eq!(t.text, "Tue, 02 Jun 2020 08:00:01 +0200");
        assert_eq!(t.local.as_deref(), Some("2020-06-02T08:00:01"));
        assert_eq!(e.snapshots.len(), 1);
    }

    #[test]
    fn unknown_and_broken_mail_still_make_events() {
        let e = event_of(b"Subject: hello there\r\n\r\nwhat is this\r\n", "x@y");
        assert_eq!(e.vendor, Vendor::Generic);
        assert_eq!(e.kind, EventKind::Other("hello there".to_owned()));
        let e = event_of(b"", "");
        assert_eq!(e.kind, EventKind::Other("mail".to_owned()));
        assert_eq!(e.from, "sender@cams.example");
        assert_eq!(e.camera, None);
        let e = event_of(b"\xff\xfe\x00garbage: \x80\r\n\r\n--\r\n", "cam@x");
        assert_eq!(e.vendor, Vendor::Generic);
    }

    #[test]
    fn json_round_trip() {
        let e = event_of(
            include_bytes!("../../testdata/hikvision_nvr.eml"),
            "alarms@events.example",
        );
        let json = e.to_json();
        assert!(
            json.starts_with(r#"{"v":1,"phase":"start","received_at":"2023-11-14T22:13:20Z""#),
            "{json}"
        );
        let back = CameraEvent::from_json(&json).unwrap();
        assert_eq!(back.to_json(), json);
        assert_eq!(back.snapshots[0].size, e.snapshots[0].size);
        let other = CameraEvent::from_json(&json.replace(r#""v":1"#, r#""v":2"#)).unwrap_err();
        assert!(other.to_string().contains("schema version 2"), "{other}");
        assert!(CameraEvent::from_json("{").is_err());
    }

    #[test]
    fn every_vendor_snapshot_decodes_to_the_original_jpeg() {
        for mail in [
            &include_bytes!("../../testdata/hikvision_ipc.eml")[..],
            include_bytes!("../../testdata/hikvision_nvr.eml"),
            include_bytes!("../../testdata/dahua.eml"),
            include_bytes!("../../testdata/reolink.eml"),
            include_bytes!("../../testdata/axis.eml"),
        ] {
            let e = event_of(mail, "x@y");
            assert_eq!(e.snapshots.len(), 1);
            assert_eq!(
                &e.snapshots[0].data[..],
                include_bytes!("../../testdata/snapshot.jpg")
            );
        }
    }

    #[test]
    fn fast_base64_matches_the_standard_and_tolerates_damage() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: Vec<u8> = encoded
            .as_bytes()
            .chunks(76)
            .flat_map(|c| c.iter().copied().chain(*b"\r\n"))
            .collect();
        assert_eq!(decode_base64_body(&wrapped), data);
        assert_eq!(
            decode_base64_body(encoded.trim_end_matches('=').as_bytes()),
            data
        );
        let mut damaged = wrapped.clone();
        damaged.insert(10, b'!');
        assert_eq!(decode_base64_body(&damaged), data);
        assert!(decode_base64_body(b"").is_empty());
        assert_eq!(decode_base64_body(b"QQ"), b"A");
    }

    #[test]
    fn only_image_parts_are_cut() {
        let dahua = include_bytes!("../../testdata/dahua.eml");
        let (copy, cuts) = prepare(dahua);
        assert_eq!(cuts.len(), 1, "the base64 text body stays with mail-parser");
        assert_eq!(
            &copy[cuts[0].cte_in_copy..cuts[0].cte_in_copy + 6],
            b"base64"
        );
        assert!(copy.len() < dahua.len() - 1000);
        // A lone part with no boundary, and a header in a body, are left alone.
        let lone = b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD";
        let (copy, cuts) = prepare(lone);
        assert_eq!(copy, lone);
        assert!(cuts.is_empty());
        let in_body = b"Subject: x\r\n\r\nContent-Transfer-Encoding: base64\r\n";
        assert!(prepare(in_body).1.is_empty());
    }

    /// What reaches mail-parser stays within its bounds whatever the shape of the mail (the
    /// shapes of benches/compare/worst_mail.py, 4 MiB each).
    #[test]
    fn worst_case_shapes_reach_mail_parser_bounded() {
        let mib4 = 4 << 20;
        let rep = |unit: &[u8]| unit.repeat(mib4 / unit.len());
        let shapes: Vec<(&str, Vec<u8>)> = vec![
            ("cte-headers", rep(b"--b\r\nContent-Transfer-Encoding: base64\r\n")),
            ("header-flood", rep(b"X-Header: value\r\n")),
            ("folded-header", [b"Subject: x\r\n".to_vec(), rep(b" folded\r\n")].concat()),
            (
                "many-parts",
                [
                    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec(),
                    rep(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"),
                ]
                .concat(),
            ),
            (
                "unterminated-images",
                [
                    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec(),
                    rep(b"--c\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n"),
                ]
                .concat(),
            ),
            ("long-text", [b"Subject: x\r\n\r\n".to_vec(), rep(b"base64base64\r\n")].concat()),
        ];
        for (name, mail) in shapes {
            let (copy, _) = prepare(&mail);
            assert!(
                copy.len() <= MAX_COPY + MAX_HEADER_BLOCK,
                "{name}: {}",
                copy.len()
            );
            let delimiters = copy
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"--"))
                .count();
            assert!(
                delimiters <= MAX_DELIMITERS + 1,
                "{name}: {delimiters} parts"
            );
        }
    }

    #[test]
    fn image_types() {
        assert_eq!(image_type(Some("image/jpeg"), None), Some("image/jpeg"));
        assert_eq!(
            image_type(Some("application/octet-stream"), Some("A.JPG")),
            Some("image/jpeg")
        );
        assert_eq!(image_type(Some("text/plain"), Some("x.txt")), None);
        assert_eq!(image_type(None, None), None);
    }
}
