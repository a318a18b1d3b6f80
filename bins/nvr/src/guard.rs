//! Checks in front of the HTTP API against other web pages (docs/security.md):
//!
//! - DNS rebinding: a request whose `Host` is not this server's own address (or `localhost` on
//!   loopback, or a name given with `--http-host`) is refused with 421, so a page whose name
//!   was pointed at the NVR cannot read `/api/export.mp4` from a browser;
//! - cross-site forms: a `POST` must say `Content-Type: application/json` (a form can only send
//!   `text/plain`, urlencoded or multipart without a CORS preflight), else 415;
//! - cross-site reads: a request with an `Origin` header must come from this server's own origin
//!   (the `Host` it asked for), else 403. WebSockets are not bound by the same-origin policy, so
//!   without this any page the operator opens could play the live view
//!   (`new WebSocket("ws://127.0.0.1:8080/api/live/garage")`). A `GET /api/…` that a browser
//!   marks `Sec-Fetch-Site: cross-site` or `same-site` (an `<img>`, `<video>` or `no-cors` fetch
//!   from another page, which sends no `Origin`) is refused with 403 too, so no page can make
//!   the operator's browser start exports or store scans. Clients that send neither header
//!   (curl, ffmpeg, cameras, scripts) are not affected.
//!
//! `X-Content-Type-Options: nosniff` is set on every response by `nvrkit_net::http`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nvrkit_net::http::AllowedHosts;

/// The largest request body any route reads; axum's default, made explicit so it cannot
/// silently change. `POST /api/events` parses at most
/// [`nvrkit_smtp::MAX_UNTRUSTED_EVENT_JSON`] of it.
pub const MAX_BODY: usize = 2 << 20;

/// `router` behind the Host and Content-Type checks and the body limit.
pub fn guarded(router: Router, hosts: AllowedHosts) -> Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(Arc::new(hosts), check))
}

fn refuse(status: StatusCode, why: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

async fn check(State(hosts): State<Arc<AllowedHosts>>, req: Request, next: Next) -> Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    match &host {
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a Host header is required\n".into(),
            );
        }
        Some(h) if !hosts.allows(h) => {
            tracing::info!(host = h, "HTTP request for another host refused (421)");
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {h:?} is not this server's address; to reach nvr by that name, start it with --http-host {}\n",
                    h.rsplit_once(':')
                        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                        .map_or(h.as_str(), |(n, _)| n)
                ),
            );
        }
        Some(_) => {}
    }
    if let Err(why) = same_origin(&req, host.as_deref().unwrap_or("")) {
        tracing::info!(why, "cross-origin HTTP request refused (403)");
        return refuse(StatusCode::FORBIDDEN, format!("{why}\n"));
    }
    if req.method() == Method::POST {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST needs Content-Type: application/json (curl --json)\n".into(),
            );
        }
    }
    next.run(req).await
}

/// `Ok` unless the request comes from a browser on another origin: an `Origin` that is not
/// `http(s)://` followed by the request's own `host` (`null`, another name or port), or
/// `Sec-Fetch-Site: cross-site`/`same-site` on `/api/…`.
fn same_origin(req: &Request, host: &str) -> Result<(), String> {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let ok = origin_authority(origin).is_some_and(|(scheme, a)| {
            same_authority(scheme, &a, &host.trim().to_ascii_lowercase())
        });
        if !ok {
            return Err(format!(
                "Origin {:?} is not this server's own page (http://{host})",
                origin.chars().take(64).collect::<String>()
            ));
        }
    }
    if req.uri().path().starts_with("/api/")
        && let Some(site) = req.headers().get("sec-fetch-site")
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return Err(format!(
            "a request from another site's page (Sec-Fetch-Site: {}) may not use the API",
            String::from_utf8_lossy(site.as_bytes())
        ));
    }
    Ok(())
}

/// `http://host[:port]` or `https://…` (no path): the scheme and the lower-cased authority.
fn origin_authority(origin: &str) -> Option<(&'static str, String)> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = if let Some(r) = origin.strip_prefix("http://") {
        ("http", r)
    } else {
        ("https", origin.strip_prefix("https://")?)
    };
    (!rest.is_empty() && !rest.contains(['/', '?', '#', '@'])).then(|| (scheme, rest.to_owned()))
}

/// Whether an origin's authority names the same host and port as `host` (both lower case): a
/// port left out is the scheme's default.
fn same_authority(scheme: &str, origin: &str, host: &str) -> bool {
    let default = if scheme == "http" { ":80" } else { ":443" };
    let strip = |a: &str| a.strip_suffix(default).unwrap_or(a).to_owned();
    !host.is_empty() && strip(origin) == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn only_the_own_origin_and_no_origin_pass() {
        let host = "127.0.0.1:8080";
        let ws = "/api/live/garage";
        for ok in [
            req(ws, &[]),
            req(ws, &[("origin", "http://127.0.0.1:8080")]),
            req(ws, &[("origin", "HTTP://127.0.0.1:8080")]),
            req("/api/recordings", &[("sec-fetch-site", "same-origin")]),
            req("/api/export.mp4", &[("sec-fetch-site", "none")]),
            // A link from another site to the page itself still opens it.
            req("/", &[("sec-fetch-site", "cross-site")]),
        ] {
            assert!(same_origin(&ok, host).is_ok(), "{:?}", ok.headers());
        }
        for bad in [
            req(ws, &[("origin", "http://evil.example")]),
            req(ws, &[("origin", "http://127.0.0.1:8081")]),
            req(ws, &[("origin", "http://127.0.0.1")]),
            req(ws, &[("origin", "null")]),
            req(ws, &[("origin", "http://127.0.0.1:8080/x")]),
            req(ws, &[("origin", "http://user@127.0.0.1:8080")]),
            req(ws, &[("origin", "ftp://127.0.0.1:8080")]),
            req("/api/recordings", &[("sec-fetch-site", "cross-site")]),
            req("/api/export.mp4", &[("sec-fetch-site", "same-site")]),
        ] {
            assert!(same_origin(&bad, host).is_err(), "{:?}", bad.headers());
        }
        // Default ports: `http://nvr.example` is `nvr.example:80`.
        let r = req(ws, &[("origin", "http://nvr.example")]);
        assert!(same_origin(&r, "nvr.example:80").is_ok());
        assert!(same_origin(&r, "nvr.example").is_ok());
        assert!(same_origin(&r, "nvr.example:8080").is_err());
    }
}
