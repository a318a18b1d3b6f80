//! The broker URL: `mqtt[s]://[USER:PASS@]HOST[:PORT]`.

use std::fmt;
use std::str::FromStr;

use crate::error::UrlError;

/// The port of `mqtt://` when the URL names none (IANA, MQTT 5.0 section 4.8).
pub const DEFAULT_PORT: u16 = 1883;
/// The port of `mqtts://` when the URL names none.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// Where the broker is and how to log in: `mqtt[s]://[USER:PASS@]HOST[:PORT]`.
///
/// USER and PASS are percent-decoded (`%40` for `@`, `%3A` for `:`). An IPv6 host is written in
/// brackets (`mqtt://[::1]:1883`). [`fmt::Display`] hides the password.
///
/// ```
/// let url: nvrkit_mqtt::BrokerUrl = "mqtts://ha:s%40cret@broker.lan".parse()?;
/// assert!(url.tls);
/// assert_eq!((url.host.as_str(), url.port), ("broker.lan", 8883));
/// assert_eq!(url.credentials, Some(("ha".to_owned(), "s@cret".to_owned())));
/// assert_eq!(url.to_string(), "mqtts://ha:***@broker.lan:8883");
/// # Ok::<(), nvrkit_mqtt::UrlError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerUrl {
    /// `mqtts://`: TLS (rustls on ring, Mozilla's roots), the host name checked.
    pub tls: bool,
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// User and password for the CONNECT packet.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://")?;
        if let Some((user, _)) = &self.credentials {
            write!(f, "{user}:***@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<BrokerUrl, UrlError> {
        let url = redact(text);
        let (tls, rest) = if let Some(r) = strip_prefix_ci(text, "mqtts://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(text, "mqtt://") {
            (false, r)
        } else {
            return Err(UrlError::Scheme { url });
        };
        // One trailing slash is what people paste; anything more is a path.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(UrlError::Trailing { url });
        }
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let Some((user, pass)) = userinfo.split_once(':') else {
                    return Err(UrlError::Credentials { url });
                };
                let (Some(user), Some(pass)) = (percent_decode(user), percent_decode(pass)) else {
                    return Err(UrlError::Credentials { url });
                };
                if user.is_empty() {
                    return Err(UrlError::Credentials { url });
                }
                (Some((user, pass)), hostport)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(UrlError::NoHost { url });
            };
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(UrlError::NoHost { url }),
            }
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.contains(['[', ']', '@', ' ']) {
            return Err(UrlError::NoHost { url });
        }
        let port = match port {
            None => {
                if tls {
                    DEFAULT_TLS_PORT
                } else {
                    DEFAULT_PORT
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(UrlError::Port {
                        url,
                        port: p.to_owned(),
                    });
                }
            },
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
            credentials,
        })
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The URL as errors show it: the password (between the first `:` after the scheme and the
/// last `@`) replaced by `***`.
fn redact(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{}{user}:***@{hostport}", &text[..scheme_end])
        }
        None => text.to_owned(),
    }
}

/// `%XX` decoding (RFC 3986 section 2.1); `None` for a broken escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> BrokerUrl {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn urls_that_parse() {
        type Case = (
            &'static str,
            bool,
            &'static str,
            u16,
            Option<(&'static str, &'static str)>,
        );
        let cases: &[Case] = &[
            ("mqtt://broker", false, "broker", 1883, None),
            ("mqtt://broker/", false, "broker", 1883, None),
            ("mqtts://broker", true, "broker", 8883, None),
            ("MQTT://127.0.0.1:1884", false, "127.0.0.1", 1884, None),
            ("mqtt://u:p@h:2", false, "h", 2, Some(("u", "p"))),
            ("mqtt://u:@h", false, "h", 1883, Some(("u", ""))),
            ("mqtt://u:p:q@h", false, "h", 1883, Some(("u", "p:q"))),
            ("mqtt://u:a@b@h", false, "h", 1883, Some(("u", "a@b"))),
            (
                "mqtt://u%3Ax:%40%25@h",
                false,
                "h",
                1883,
                Some(("u:x", "@%")),
            ),
            ("mqtts://[::1]:8884", true, "::1", 8884, None),
            ("mqtt://[fe80::1]", false, "fe80::1", 1883, None),
        ];
        for &(text, tls, host, port, creds) in cases {
            let u = ok(text);
            assert_eq!(
                (u.tls, u.host.as_str(), u.port),
                (tls, host, port),
                "{text}"
            );
            let creds = creds.map(|(a, b)| (a.to_owned(), b.to_owned()));
            assert_eq!(u.credentials, creds, "{text}");
        }
    }

    #[test]
    fn urls_that_do_not_parse_say_why_and_hide_the_password() {
        use UrlError::*;
        type Case = (&'static str, fn(&UrlError) -> bool);
        let cases: &[Case] = &[
            ("http://h", |e| matches!(e, Scheme { .. })),
            ("h:1883", |e| matches!(e, Scheme { .. })),
            ("mqtt://", |e| matches!(e, NoHost { .. })),
            ("mqtt://u:secret@", |e| matches!(e, NoHost { .. })),
            ("mqtt://:1883", |e| matches!(e, NoHost { .. })),
            ("mqtt://[::1", |e| matches!(e, NoHost { .. })),
            ("mqtt://h:0", |e| matches!(e, Port { .. })),
            ("mqtt://h:65536", |e| matches!(e, Port { .. })),
            ("mqtt://h:+1", |e| matches!(e, Port { .. })),
            ("mqtt://h:x", |e| matches!(e, Port { .. })),
            ("mqtt://user@h", |e| matches!(e, Credentials { .. })),
            ("mqtt://:secret@h", |e| matches!(e, Credentials { .. })),
            ("mqtt://u:%zz@h", |e| matches!(e, Credentials { .. })),
            ("mqtt://h/topic", |e| matches!(e, Trailing { .. })),
            ("mqtt://h?x=1", |e| matches!(e, Trailing { .. })),
        ];
        for &(text, want) in cases {
            let e = text.parse::<BrokerUrl>().unwrap_err();
            assert!(want(&e), "{text}: {e:?}");
        }
        let e = "mqtt://u:secret@h:99999".parse::<BrokerUrl>().unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("u:***@h:99999"), "{e}");
        let u = ok("mqtt://u:secret@h");
        assert!(!format!("{u} {u:?}").contains("secret"));
    }
}
