//! Checks in front of the HTTP API against other web pages (docs/security.md):
//!
//! - DNS rebinding: a request whose `Host` is not this server's own address (or `localhost` on
//!   loopback, or a name given with `--http-host`) is refused with 421, so a page whose name
//!   was pointed at the NVR cannot read `/api/export.mp4` from a browser;
//! - cross-site forms: a `POST` must say `Content-Type: application/json` (a form can only send
//!   `text/plain`, urlencoded or multipart without a CORS preflight), else 415.
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
    match host {
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a Host header is required\n".into(),
            );
        }
        Some(h) if !hosts.allows(&h) => {
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
