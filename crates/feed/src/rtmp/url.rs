//! `rtmp://` and `rtmps://` URLs: where to connect, and the application and stream names to
//! publish under.

use std::fmt;

use crate::rtmp::error::PushError;

/// A parsed publishing URL: `rtmp[s]://host[:port]/app[/inst]/stream[?query]`.
///
/// The stream name is the last path segment (with the query, where servers such as Wowza and
/// nginx-rtmp's `on_publish` look for keys); the application is everything before it, as
/// ffmpeg's RTMP protocol splits `rtmp://host/app/inst/stream`.
#[derive(Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `rtmps://`: the connection runs over TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 1935 for `rtmp://`, 443 for `rtmps://`).
    pub port: u16,
    /// The application (`live` in `rtmp://host/live/cam`).
    pub app: String,
    /// The stream name, query included (`cam` in `rtmp://host/live/cam`).
    pub stream: String,
}

impl RtmpUrl {
    /// Parses a URL. The scheme must be `rtmp` or `rtmps`; there must be an application and a
    /// stream name.
    ///
    /// ```
    /// use nvrkit_feed::rtmp::RtmpUrl;
    /// let u = RtmpUrl::parse("rtmp://127.0.0.1/live/cam")?;
    /// assert_eq!((u.port, u.app.as_str(), u.stream.as_str()), (1935, "live", "cam"));
    /// assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1935/live");
    /// # Ok::<(), nvrkit_feed::rtmp::PushError>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self, PushError> {
        let bad = |why: &str| PushError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected rtmp://host/app/stream"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "rtmp" => false,
            "rtmps" => true,
            _ => return Err(bad("the scheme must be rtmp or rtmps")),
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no application and stream name after the host"))?;
        if authority.contains('@') {
            return Err(bad(
                "credentials in the authority are not supported; servers take keys in the stream name's query",
            ));
        }
        let default_port = if tls { 443 } else { 1935 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| bad("the port is not a number"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if port == 0 {
            return Err(bad("port 0"));
        }
        // The query belongs to the stream name, never to the application.
        let (path_only, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let path_only = path_only.trim_end_matches('/');
        let (app, stream) = path_only
            .rsplit_once('/')
            .ok_or_else(|| bad("expected both an application and a stream name: /app/stream"))?;
        if app.is_empty() || stream.is_empty() {
            return Err(bad(
                "expected both an application and a stream name: /app/stream",
            ));
        }
        let stream = match query {
            Some(q) => format!("{stream}?{q}"),
            None => stream.to_owned(),
        };
        Ok(RtmpUrl {
            tls,
            host,
            port,
            app: app.to_owned(),
            stream,
        })
    }

    /// The `tcUrl` of the `connect` command: scheme, host, port and application.
    pub fn tc_url(&self) -> String {
        format!(
            "{}://{}:{}/{}",
            if self.tls { "rtmps" } else { "rtmp" },
            self.host_for_url(),
            self.port,
            self.app
        )
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// The pushes one `--push` URL asks for, over the sources `names` (loopcam's clips, nvr's
/// cameras): with `{name}` in it, one per source, the name put in its place; without, the only
/// source. Each as (source name, URL), parsed. Several sources and no `{name}` is an error
/// (which of them?).
///
/// ```
/// use nvrkit_feed::rtmp::url::push_targets;
/// let names = ["garage".to_owned(), "yard".to_owned()];
/// let t = push_targets("rtmp://10.0.0.9/live/{name}?key=K", &names)?;
/// assert_eq!(t[1].0, "yard");
/// assert_eq!(t[1].1.stream, "yard?key=K");
/// assert!(push_targets("rtmp://10.0.0.9/live/cam", &names).is_err());
/// assert_eq!(push_targets("rtmp://10.0.0.9/live/cam", &names[..1])?[0].0, "garage");
/// # Ok::<(), nvrkit_feed::rtmp::PushError>(())
/// ```
pub fn push_targets(url: &str, names: &[String]) -> Result<Vec<(String, RtmpUrl)>, PushError> {
    if url.contains("{name}") {
        return names
            .iter()
            .map(|n| Ok((n.clone(), RtmpUrl::parse(&url.replace("{name}", n))?)))
            .collect();
    }
    let parsed = RtmpUrl::parse(url)?;
    match names {
        [one] => Ok(vec![(one.clone(), parsed)]),
        [] => Ok(Vec::new()),
        _ => Err(PushError::Url {
            url: parsed.to_string(),
            why: format!(
                "{} sources ({}): put {{name}} in the URL, one push per source",
                names.len(),
                names.join(", ")
            ),
        }),
    }
}

/// Prints the URL without the stream name's query, which often carries a secret key.
impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stream = self.stream.split('?').next().unwrap_or_default();
        write!(
            f,
            "{}/{}{}",
            self.tc_url(),
            stream,
            if self.stream.contains('?') {
                "?…"
            } else {
                ""
            }
        )
    }
}

/// Like [`fmt::Display`]: the query (a key, often) is never logged.
impl fmt::Debug for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtmpUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (input, tls, host, port, app, stream)
        let ok = [
            (
                "rtmp://127.0.0.1/live/cam",
                false,
                "127.0.0.1",
                1935,
                "live",
                "cam",
            ),
            ("rtmp://h:1936/live/cam", false, "h", 1936, "live", "cam"),
            ("rtmps://h/live/cam", true, "h", 443, "live", "cam"),
            ("RTMP://h/app/inst/cam", false, "h", 1935, "app/inst", "cam"),
            (
                "rtmp://h/live/cam?key=s3cret",
                false,
                "h",
                1935,
                "live",
                "cam?key=s3cret",
            ),
            (
                "rtmp://[::1]:1935/live/cam/",
                false,
                "::1",
                1935,
                "live",
                "cam",
            ),
            ("rtmp://[::1]/live/cam", false, "::1", 1935, "live", "cam"),
        ];
        for (input, tls, host, port, app, stream) in ok {
            let u = RtmpUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (
                    u.tls,
                    u.host.as_str(),
                    u.port,
                    u.app.as_str(),
                    u.stream.as_str()
                ),
                (tls, host, port, app, stream),
                "{input}"
            );
        }
        for bad in [
            "http://h/live/cam",
            "rtmp://h",
            "rtmp://h/",
            "rtmp://h/cam",
            "rtmp:///live/cam",
            "rtmp://h:x/live/cam",
            "rtmp://h:0/live/cam",
            "rtmp://u:p@h/live/cam",
            "rtmp://[::1/live/cam",
            "rtmp://h/live/?k=1",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn display_hides_the_key() {
        let u = RtmpUrl::parse("rtmp://[::1]/live/cam?key=s3cret").unwrap();
        assert_eq!(u.to_string(), "rtmp://[::1]:1935/live/cam?…");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.tc_url(), "rtmp://[::1]:1935/live");
    }
}
