//! The SOAP envelope reader shared by the ONVIF services and WS-Discovery: a streaming
//! quick-xml parse of untrusted bytes into the few things the services read (the action, its
//! leaf parameters, the WS-Addressing `MessageID` and a WS-Security `UsernameToken`), and the
//! writer of envelopes and faults.
//!
//! Bounded: the caller bounds the input ([`MAX_SOAP_BODY`], [`super::discovery::MAX_DATAGRAM`]);
//! here nesting deeper than [`MAX_DEPTH`], more than [`MAX_FIELDS`] parameters and any DTD are
//! refused, so no input makes the parse allocate much more than its own size.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};

/// The largest SOAP request body read, in bytes (a larger one is refused before parsing).
pub const MAX_SOAP_BODY: usize = 64 * 1024;
/// The deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;
/// The most leaf parameters kept from a request body.
pub const MAX_FIELDS: usize = 64;

/// SOAP 1.2 envelope namespace.
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// SOAP 1.1 envelope namespace (accepted on input; answers are SOAP 1.2).
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// WS-Security `wsse` namespace.
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// Not well-formed XML (quick-xml's reason).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// A document type declaration (refused: no entity expansion of any kind).
    #[error("a DTD is not allowed")]
    Dtd,
    /// The root element is not a SOAP envelope.
    #[error("the root element is not a SOAP Envelope")]
    NotEnvelope,
    /// The envelope has no element in its Body.
    #[error("the SOAP Body is empty or missing")]
    NoBody,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The document ended inside an element.
    #[error("the document ends inside an element")]
    Truncated,
}

/// A WS-Security `UsernameToken`, as sent (nothing checked yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsernameToken {
    /// `Username`.
    pub username: String,
    /// `Password` (the Base64 digest, or the password with `#PasswordText`).
    pub password: String,
    /// The `Type` attribute of `Password` (`…#PasswordDigest` or `…#PasswordText`).
    pub password_type: String,
    /// `Nonce`, Base64.
    pub nonce: String,
    /// `Created`, RFC 3339.
    pub created: String,
}

/// What a SOAP request says, as far as the services read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The namespace of the first element of the Body (the service: `…/device/wsdl`, …).
    pub ns: String,
    /// Its local name (the action: `GetProfiles`, `Probe`, …).
    pub action: String,
    /// Leaf elements inside the action: (local name, text), in document order, at most
    /// [`MAX_FIELDS`]. In `Types` and `Scopes` each QName is written `{namespace}local`.
    pub fields: Vec<(String, String)>,
    /// The WS-Addressing `MessageID` header.
    pub message_id: Option<String>,
    /// The WS-Addressing `To` header (the address the request was sent to).
    pub to: Option<String>,
    /// The WS-Security `UsernameToken`, when the header has one.
    pub token: Option<UsernameToken>,
}

impl Request {
    /// The text of the first parameter with this local name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where the reader is in the envelope.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Header,
    Body,
}

/// Parses a SOAP request.
pub fn parse(input: &[u8]) -> Result<Request, SoapError> {
    let mut reader = NsReader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut req = Request::default();
    // Local names of the open elements, and whether each has a child element.
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut part: Option<Part> = None;
    // Depth of the action element (inside Body) once found.
    let mut action_depth: Option<usize> = None;
    let mut text = String::new();
    let mut password_type = String::new();
    let mut token: Option<UsernameToken> = None;
    let mut seen_root = false;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| SoapError::Xml(e.to_string()))?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match event {
            Event::DocType(_) => return Err(SoapError::Dtd),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let depth = stack.len();
                if depth == 0 {
                    if seen_root || local != "Envelope" || (ns != NS_SOAP12 && ns != NS_SOAP11) {
                        return Err(SoapError::NotEnvelope);
                    }
                    seen_root = true;
                }
                if depth >= MAX_DEPTH {
                    return Err(SoapError::TooDeep);
                }
                if let Some(top) = stack.last_mut() {
                    top.1 = true;
                }
                if depth == 1 {
                    part = match local.as_str() {
                        "Header" => Some(Part::Header),
                        "Body" => Some(Part::Body),
                        _ => None,
                    };
                }
                if depth == 2 && part == Some(Part::Body) && action_depth.is_none() {
                    req.ns = ns.clone();
                    req.action = local.clone();
                    action_depth = Some(depth);
                }
                if part == Some(Part::Header) && local == "UsernameToken" && token.is_none() {
                    token = Some(UsernameToken::default());
                }
                if local == "Password" {
                    password_type = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"Type")
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                        .unwrap_or_default();
                }
                text.clear();
                if empty {
                    finish(
                        &mut req,
                        &mut token,
                        (part, action_depth),
                        depth,
                        &local,
                        "",
                        &password_type,
                    );
                    if depth == 1 {
                        part = None;
                    }
                    if depth == 0 {
                        break;
                    }
                } else {
                    stack.push((local, false));
                }
            }
            Event::Text(t) => {
                let s = t
                    .xml10_content()
                    .map_err(|e| SoapError::Xml(e.to_string()))?;
                push_text(&reader, &stack, &mut text, &s);
            }
            Event::CData(t) => {
                let s = String::from_utf8_lossy(&t.into_inner()).into_owned();
                push_text(&reader, &stack, &mut text, &s);
            }
            Event::GeneralRef(r) => {
                let s = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| SoapError::Xml(e.to_string()))?;
                        quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| SoapError::Xml(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                    Err(e) => return Err(SoapError::Xml(e.to_string())),
                };
                text.push_str(&s);
            }
            Event::End(_) => {
                let Some((local, had_child)) = stack.pop() else {
                    return Err(SoapError::Xml("unmatched end tag".into()));
                };
                let depth = stack.len();
                if !had_child {
                    let t = std::mem::take(&mut text);
                    let at = (part, action_depth);
                    finish(
                        &mut req,
                        &mut token,
                        at,
                        depth,
                        &local,
                        t.trim(),
                        &password_type,
                    );
                }
                text.clear();
                if depth == 1 {
                    part = None;
                }
                if depth == 0 {
                    break;
                }
            }
            Event::Eof => {
                if stack.is_empty() && !seen_root {
                    return Err(SoapError::NotEnvelope);
                }
                return Err(SoapError::Truncated);
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if action_depth.is_none() {
        return Err(SoapError::NoBody);
    }
    req.token = token;
    Ok(req)
}

/// Appends text to the current element's; in `Types` and `Scopes`, QNames are expanded while
/// their namespace declarations are in scope.
fn push_text(reader: &NsReader<&[u8]>, stack: &[(String, bool)], text: &mut String, s: &str) {
    let in_qnames = stack.last().is_some_and(|(n, _)| n == "Types");
    if !in_qnames {
        text.push_str(s);
        return;
    }
    for item in s.split_whitespace() {
        let (res, local) = reader.resolver().resolve(QName(item.as_bytes()), true);
        let ns = match res {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        if !text.is_empty() {
            text.push(' ');
        }
        text.push('{');
        text.push_str(&ns);
        text.push('}');
        text.push_str(&String::from_utf8_lossy(local.as_ref()));
    }
}

/// Records a leaf element that just closed at `depth`; `at` is the envelope part it is in and
/// the depth of the action element.
fn finish(
    req: &mut Request,
    token: &mut Option<UsernameToken>,
    (part, action_depth): (Option<Part>, Option<usize>),
    depth: usize,
    local: &str,
    text: &str,
    password_type: &str,
) {
    match part {
        Some(Part::Header) => {
            if depth == 2 && local == "MessageID" {
                req.message_id = Some(text.to_owned());
            }
            if depth == 2 && local == "To" {
                req.to = Some(text.to_owned());
            }
            if let Some(t) = token.as_mut() {
                match local {
                    "Username" => t.username = text.to_owned(),
                    "Password" => {
                        t.password = text.to_owned();
                        t.password_type = password_type.to_owned();
                    }
                    "Nonce" => t.nonce = text.to_owned(),
                    "Created" => t.created = text.to_owned(),
                    _ => {}
                }
            }
        }
        Some(Part::Body) => {
            if let Some(a) = action_depth
                && depth > a
                && req.fields.len() < MAX_FIELDS
            {
                req.fields.push((local.to_owned(), text.to_owned()));
            }
        }
        None => {}
    }
}

/// Escapes text for an XML element or attribute.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// The namespace declarations every answer carries.
const NAMESPACES: &str = concat!(
    r#"xmlns:env="http://www.w3.org/2003/05/soap-envelope" "#,
    r#"xmlns:ter="http://www.onvif.org/ver10/error" "#,
    r#"xmlns:tt="http://www.onvif.org/ver10/schema" "#,
    r#"xmlns:tds="http://www.onvif.org/ver10/device/wsdl" "#,
    r#"xmlns:trt="http://www.onvif.org/ver10/media/wsdl" "#,
    r#"xmlns:tr2="http://www.onvif.org/ver20/media/wsdl" "#,
    r#"xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" "#,
    r#"xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" "#,
    r#"xmlns:dn="http://www.onvif.org/ver10/network/wsdl" "#,
    r#"xmlns:tev="http://www.onvif.org/ver10/events/wsdl" "#,
    r#"xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" "#,
    r#"xmlns:wstop="http://docs.oasis-open.org/wsn/t-1" "#,
    r#"xmlns:tns1="http://www.onvif.org/ver10/topics" "#,
    r#"xmlns:wsa5="http://www.w3.org/2005/08/addressing" "#,
    r#"xmlns:xs="http://www.w3.org/2001/XMLSchema""#,
);

/// A SOAP 1.2 envelope around `body` (and `header`, when not empty).
pub fn envelope(header: &str, body: &str) -> String {
    let header = if header.is_empty() {
        String::new()
    } else {
        format!("<env:Header>{header}</env:Header>")
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope {NAMESPACES}>{header}<env:Body>{body}</env:Body></env:Envelope>"#
    )
}

/// A SOAP 1.2 fault: `code` is `env:Sender` or `env:Receiver`, `subcode` an ONVIF `ter:` code.
pub fn fault(code: &str, subcode: &str, reason: &str) -> String {
    envelope(
        "",
        &format!(
            r#"<env:Fault><env:Code><env:Value>{code}</env:Value><env:Subcode><env:Value>{subcode}</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">{}</env:Text></env:Reason></env:Fault>"#,
            esc(reason)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEEP: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope"><soap-env:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken><wsse:Username>admin</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">abc=</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">bm9uY2U=</wsse:Nonce><wsu:Created xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">2026-12-03T11:00:00+00:00</wsu:Created></wsse:UsernameToken></wsse:Security></soap-env:Header><soap-env:Body><ns0:GetStreamUri xmlns:ns0="http://www.onvif.org/ver10/media/wsdl"><ns0:StreamSetup><ns1:Stream xmlns:ns1="http://www.onvif.org/ver10/schema">RTP-Unicast</ns1:Stream><ns2:Transport xmlns:ns2="http://www.onvif.org/ver10/schema"><ns2:Protocol>RTSP</ns2:Protocol></ns2:Transport></ns0:StreamSetup><ns0:ProfileToken>bikes&amp;x</ns0:ProfileToken></ns0:GetStreamUri></soap-env:Body></soap-env:Envelope>"#;

    #[test]
    fn reads_a_zeep_request() {
        let r = parse(ZEEP.as_bytes()).unwrap();
        assert_eq!(r.ns, "http://www.onvif.org/ver10/media/wsdl");
        assert_eq!(r.action, "GetStreamUri");
        assert_eq!(r.field("ProfileToken"), Some("bikes&x"));
        assert_eq!(r.field("Protocol"), Some("RTSP"));
        assert_eq!(r.field("Stream"), Some("RTP-Unicast"));
        let t = r.token.unwrap();
        assert_eq!(t.username, "admin");
        assert_eq!(t.password, "abc=");
        assert!(t.password_type.ends_with("#PasswordDigest"));
        assert_eq!(t.nonce, "bm9uY2U=");
        assert_eq!(t.created, "2026-12-03T11:00:00+00:00");
    }

    #[test]
    fn empty_action_element() {
        let x = r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><GetHostname xmlns="http://www.onvif.org/ver10/device/wsdl"/></e:Body></e:Envelope>"#;
        let r = parse(x.as_bytes()).unwrap();
        assert_eq!(r.action, "GetHostname");
        assert_eq!(r.ns, "http://www.onvif.org/ver10/device/wsdl");
        assert!(r.token.is_none());
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(parse(b"<a>"), Err(SoapError::NotEnvelope)));
        assert!(matches!(parse(b""), Err(SoapError::NotEnvelope)));
        let trunc =
            br#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x/>"#;
        assert!(parse(trunc).is_err());
        let dtd = br#"<!DOCTYPE e [<!ENTITY a "aaaa">]><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x>&a;</x></e:Body></e:Envelope>"#;
        assert_eq!(parse(dtd), Err(SoapError::Dtd));
        let nobody = br#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#;
        assert_eq!(parse(nobody), Err(SoapError::NoBody));
        let deep = format!(
            r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>{}{}</e:Body></e:Envelope>"#,
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert_eq!(parse(deep.as_bytes()), Err(SoapError::TooDeep));
        let unknown = br#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x>&nope;</x></e:Body></e:Envelope>"#;
        assert!(matches!(parse(unknown), Err(SoapError::Xml(_))));
    }

    #[test]
    fn expands_types_qnames() {
        let x = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"><s:Body><d:Probe><d:Types xmlns:dn="http://www.onvif.org/ver10/network/wsdl">dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"#;
        let r = parse(x.as_bytes()).unwrap();
        assert_eq!(
            r.field("Types"),
            Some("{http://www.onvif.org/ver10/network/wsdl}NetworkVideoTransmitter")
        );
    }
}
