//! S3-compatible object storage through `object_store` (AWS S3, MinIO, Garage, Ceph RGW, R2,
//! s3s-fs, moto).
//!
//! Requests go through our own [`HttpService`]: the upstream cap paces request bodies as they
//! are handed to the socket (16 KiB pieces, each paid for in the token bucket), which is what
//! makes the cap accurate over seconds rather than over whole parts, and it counts 429/503
//! answers. `object_store`'s own retries are off: the replicator retries with its own backoff
//! and persists multipart state between tries, so a retry never re-sends a part the queue
//! already has.
//!
//! Small objects go in one `PUT` with `If-None-Match: *` (`PutMode::Create`: a retry after a
//! lost answer finds the object and checks it instead of writing it twice). Large ones use the
//! multipart API directly ([`MultipartStore`]) so the upload id and part ETags can be persisted.
//!
//! Every response body is read in the pieces the connection delivers, counted against a limit
//! chosen by what the request asks for, and never buffered past it ([`body_limit`]):
//!
//! | answer | limit | past it |
//! | --- | --- | --- |
//! | a whole object (`GET` without `Range`: manifests) | [`MAX_MANIFEST_BYTES`] (16 MiB) | [`Error::TooLarge`] |
//! | a range (`GET` with `Range: bytes=a-b`) | its length | [`Error::TooLarge`] |
//! | a list page (`GET ?list-type=2`) | [`LIST_PAGE_LIMIT`] (8 MiB) | [`Error::TooLarge`] |
//! | any other success (`PUT`, multipart create/complete, `HEAD`) | [`OTHER_BODY_LIMIT`] (64 KiB) | [`Error::TooLarge`] |
//! | an error status | [`ERROR_BODY_LIMIT`] (64 KiB) | cut there (the status still counts) |
//!
//! A declared `Content-Length` over the limit fails before the body is read. A listing stops
//! at [`MAX_LIST_OBJECTS`] objects, however many pages the endpoint offers.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{BodyDataStream, BodyExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};

use super::{PutOutcome, RemoteObject, Target, TargetSpec};
use crate::error::{Error, Result};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::rate::{PIECE, RateLimit};
use crate::stats::Counters;

/// See the module docs.
#[derive(Debug)]
pub struct S3Target {
    store: AmazonS3,
    prefix: String,
    url: String,
}

impl S3Target {
    /// Builds the client: the environment (`AWS_*`), then what `spec` sets.
    pub fn new(
        spec: &TargetSpec,
        limit: Option<Arc<RateLimit>>,
        counters: Arc<Counters>,
    ) -> Result<S3Target> {
        Self::with_builder(spec, AmazonS3Builder::from_env(), limit, counters)
    }

    /// [`S3Target::new`] on a builder already holding credentials and settings.
    fn with_builder(
        spec: &TargetSpec,
        b: AmazonS3Builder,
        limit: Option<Arc<RateLimit>>,
        counters: Arc<Counters>,
    ) -> Result<S3Target> {
        let TargetSpec::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            allow_http,
        } = spec
        else {
            return Err(Error::InvalidArgument("not an S3 target".into()));
        };
        let env_true = |k: &str| {
            std::env::var(k).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
        };
        let allow_http = *allow_http || env_true("AWS_ALLOW_HTTP");
        let mut b = b.with_bucket_name(bucket);
        if let Some(e) = endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = region {
            b = b.with_region(r);
        }
        let endpoint_http = endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .is_some_and(|e| e.starts_with("http://"));
        if endpoint_http && !allow_http {
            return Err(Error::InvalidArgument(
                "the endpoint is plain http: allow it with --allow-http (or AWS_ALLOW_HTTP=true)"
                    .into(),
            ));
        }
        let store = b
            .with_allow_http(allow_http)
            // Our backoff, not object_store's: retries above it see the queue's state.
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: Duration::from_secs(1),
                backoff: Default::default(),
            })
            // The payload's integrity is checked by its MD5 ETag; signing it too would hash
            // every byte with SHA-256 once more.
            .with_unsigned_payload(true)
            .with_http_connector(PacedConnector {
                limit,
                counters,
                allow_http,
            })
            .build()
            .map_err(|e| Error::InvalidArgument(format!("S3 target {}: {e}", spec.url())))?;
        Ok(S3Target {
            store,
            prefix: prefix.clone(),
            url: spec.url(),
        })
    }

    fn path(&self, key: &str) -> Result<Path> {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| Error::InvalidArgument(format!("object key {full:?}: {e}")))
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        if let Some(big) = find_source::<BodyTooLarge>(&e) {
            return Error::TooLarge {
                target: self.url.clone(),
                op,
                key: key.to_owned(),
                limit: big.limit,
                unit: "bytes",
            };
        }
        let what = e.to_string();
        let has = |s: &str| what.contains(s);
        // s3s-fs 0.14.1 forgets multipart uploads when it restarts and then answers
        // `AccessDenied` (not `NoSuchUpload`) to their parts and completion: for those two
        // operations it means "start the upload anew". A real refusal shows again at the new
        // upload's creation, which stops the replicator.
        let part_op = matches!(op, "part" | "complete");
        let forgot = part_op
            && (matches!(e, object_store::Error::PermissionDenied { .. }) || has("AccessDenied"));
        let refused = !forgot
            && matches!(
                e,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
            )
            || has("NoSuchBucket")
            || (has("AccessDenied") && !forgot)
            || has("InvalidAccessKeyId")
            || has("SignatureDoesNotMatch")
            || has("EntityTooSmall");
        let upload_gone = forgot
            || (matches!(e, object_store::Error::NotFound { .. }) && part_op)
            || has("NoSuchUpload")
            || has("InvalidPart");
        Error::Target {
            target: self.url.clone(),
            op,
            key: key.to_owned(),
            what,
            transient: !refused,
            upload_gone,
        }
    }
}

#[async_trait]
impl Target for S3Target {
    fn url(&self) -> &str {
        &self.url
    }

    async fn head(&self, key: &str) -> Result<Option<RemoteObject>> {
        match self.store.head(&self.path(key)?).await {
            Ok(m) => Ok(Some(RemoteObject {
                size: m.size,
                etag: m.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("HEAD", key, e)),
        }
    }

    async fn put_new(&self, key: &str, data: Bytes, blake3: &str) -> Result<PutOutcome> {
        let attributes = Attributes::from_iter([
            (Attribute::ContentType, "video/mp4".to_owned()),
            (Attribute::Metadata("blake3".into()), blake3.to_owned()),
        ]);
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(key)?, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::Existed),
            Err(e) => Err(self.err("PUT", key, e)),
        }
    }

    async fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key)?, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| self.err("PUT", key, e))
    }

    async fn begin(&self, key: &str) -> Result<String> {
        self.store
            .create_multipart(&self.path(key)?)
            .await
            .map_err(|e| self.err("create-multipart", key, e))
    }

    async fn put_part(
        &self,
        key: &str,
        upload: &str,
        n: u32,
        _offset: u64,
        data: Bytes,
    ) -> Result<String> {
        let id = upload.to_owned();
        self.store
            .put_part(&self.path(key)?, &id, n as usize, PutPayload::from(data))
            .await
            .map(|p| p.content_id)
            .map_err(|e| self.err("part", key, e))
    }

    async fn complete(
        &self,
        key: &str,
        upload: &str,
        parts: &[String],
        _blake3: &str,
    ) -> Result<()> {
        let parts = parts
            .iter()
            .map(|p| PartId {
                content_id: p.clone(),
            })
            .collect();
        self.store
            .complete_multipart(&self.path(key)?, &upload.to_owned(), parts)
            .await
            .map(|_| ())
            .map_err(|e| self.err("complete", key, e))
    }

    async fn abort(&self, key: &str, upload: &str) -> Result<()> {
        self.store
            .abort_multipart(&self.path(key)?, &upload.to_owned())
            .await
            .map_err(|e| self.err("abort", key, e))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let r = self
            .store
            .get_opts(&self.path(key)?, opts)
            .await
            .map_err(|e| self.err("GET", key, e))?;
        r.bytes().await.map_err(|e| self.err("GET", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let p = self.path(prefix.trim_end_matches('/'))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut listing = self.store.list(Some(&p));
        let mut metas = Vec::new();
        while let Some(m) = listing.next().await {
            if metas.len() as u64 >= MAX_LIST_OBJECTS {
                return Err(Error::TooLarge {
                    target: self.url.clone(),
                    op: "LIST",
                    key: prefix.to_owned(),
                    limit: MAX_LIST_OBJECTS,
                    unit: "objects",
                });
            }
            metas.push(m.map_err(|e| self.err("LIST", prefix, e))?);
        }
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .map(|m| {
                let k = m.location.to_string();
                (
                    k.strip_prefix(&strip).map(str::to_owned).unwrap_or(k),
                    m.size,
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Builds [`PacedService`]s for `object_store`.
#[derive(Debug)]
struct PacedConnector {
    limit: Option<Arc<RateLimit>>,
    counters: Arc<Counters>,
    allow_http: bool,
}

impl HttpConnector for PacedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // No overall timeout: a 16 MiB part takes two minutes at 1 Mbit/s. A server that
            // stops answering is noticed by the read timeout.
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(30))
            .https_only(!self.allow_http)
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(PacedService {
            client,
            limit: self.limit.clone(),
            counters: self.counters.clone(),
        }))
    }
}

/// One request at a time through reqwest, its body paced by the upstream cap.
#[derive(Debug)]
struct PacedService {
    client: reqwest::Client,
    limit: Option<Arc<RateLimit>>,
    counters: Arc<Counters>,
}

fn http_error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_body() || e.is_decode() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Request
    };
    HttpError::new(kind, e)
}

#[async_trait]
impl HttpService for PacedService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let range = parts
            .headers
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The request line and headers count against the cap too.
        let head_bytes = parts.uri.to_string().len()
            + 16
            + parts
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if let Some(l) = &self.limit {
            l.acquire(head_bytes as u64).await;
        }
        self.counters.add_sent(head_bytes as u64);
        let url = parts
            .uri
            .to_string()
            .parse()
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut r = reqwest::Request::new(parts.method, url);
        *r.headers_mut() = parts.headers;
        let len = body.content_length();
        if len > 0 {
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
            let limit = self.limit.clone();
            let counters = self.counters.clone();
            let pieces = body
                .into_data_stream()
                .map_ok(|chunk| {
                    let mut out = Vec::with_capacity(chunk.len().div_ceil(PIECE));
                    let mut c = chunk;
                    while c.len() > PIECE {
                        out.push(Ok(c.split_to(PIECE)));
                    }
                    out.push(Ok(c));
                    futures_util::stream::iter(out)
                })
                .try_flatten()
                .and_then(move |piece: Bytes| {
                    let limit = limit.clone();
                    let counters = counters.clone();
                    async move {
                        if let Some(l) = &limit {
                            l.acquire(piece.len() as u64).await;
                        }
                        counters.add_sent(piece.len() as u64);
                        Ok::<_, HttpError>(piece)
                    }
                });
            *r.body_mut() = Some(reqwest::Body::wrap_stream(pieces.boxed()));
        }
        let res = self.client.execute(r).await.map_err(http_error)?;
        let status = res.status().as_u16();
        if status == 429 || status == 503 {
            self.counters.add_throttled();
        }
        let res: http::Response<reqwest::Body> = res.into();
        let (parts, body) = res.into_parts();
        let (limit, cut) = body_limit(&method, &uri, range.as_deref(), parts.status);
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = bounded(body, uri.path().to_owned(), limit, cut, declared);
        let body = HttpResponseBody::new(body.map_err(http_error));
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// The most of a list page read (S3 pages hold up to 1,000 keys, about 400 KiB of XML).
pub const LIST_PAGE_LIMIT: u64 = 8 << 20;

/// The most of any other successful answer read: `PUT`, multipart create and complete, `HEAD`
/// (S3 answers them with a few hundred bytes of XML, or nothing).
pub const OTHER_BODY_LIMIT: u64 = 64 << 10;

/// The most of an error answer read: its body only becomes the error's message, so it is cut
/// here rather than refused, and the status still decides what the error means.
pub const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// The most objects one listing returns, over all its pages (an endpoint that answers page
/// after page would otherwise grow the list without end).
pub const MAX_LIST_OBJECTS: u64 = 1_000_000;

/// A response body went past its limit (the source of the `object_store` error that
/// [`S3Target`] turns into [`Error::TooLarge`]).
#[derive(Debug, thiserror::Error)]
#[error("{object}: the response body is over its limit of {limit} bytes")]
pub struct BodyTooLarge {
    /// The request's path (`/bucket/key`).
    pub object: String,
    /// The limit.
    pub limit: u64,
}

/// The limit of a response body, and whether it is cut there (`true`) rather than refused.
///
/// `range` is the request's `Range` header, `bytes=a-b` as `object_store` sends it.
pub fn body_limit(
    method: &http::Method,
    uri: &http::Uri,
    range: Option<&str>,
    status: http::StatusCode,
) -> (u64, bool) {
    if !status.is_success() {
        return (ERROR_BODY_LIMIT, true);
    }
    if method != http::Method::GET {
        return (OTHER_BODY_LIMIT, false);
    }
    let query = uri.query().unwrap_or("");
    if query.split('&').any(|p| p.starts_with("list-type=")) {
        return (LIST_PAGE_LIMIT, false);
    }
    let ranged = range
        .and_then(|r| r.trim().strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .map(|(a, b)| b - a + 1);
    (ranged.unwrap_or(MAX_MANIFEST_BYTES), false)
}

/// `body`, read piece by piece: past `limit` bytes it ends (`cut`) or fails with
/// [`BodyTooLarge`], dropping the piece that crossed the limit; a `declared` length over the
/// limit fails at once. Nothing past the limit is ever held.
fn bounded(
    body: reqwest::Body,
    object: String,
    limit: u64,
    cut: bool,
    declared: Option<u64>,
) -> reqwest::Body {
    struct State {
        inner: BodyDataStream<reqwest::Body>,
        object: String,
        limit: u64,
        cut: bool,
        seen: u64,
        done: bool,
    }
    let too_large = |object: String, limit| BodyTooLarge { object, limit };
    if !cut && declared.is_some_and(|n| n > limit) {
        let e = too_large(object, limit);
        return reqwest::Body::wrap_stream(futures_util::stream::once(async move {
            Err::<Bytes, _>(e)
        }));
    }
    let state = State {
        inner: body.into_data_stream(),
        object,
        limit,
        cut,
        seen: 0,
        done: false,
    };
    let pieces = futures_util::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        match st.inner.next().await? {
            Err(e) => {
                st.done = true;
                Some((
                    Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                    st,
                ))
            }
            Ok(mut piece) => {
                let room = st.limit - st.seen;
                if (piece.len() as u64) <= room {
                    st.seen += piece.len() as u64;
                    return Some((Ok(piece), st));
                }
                st.done = true;
                if st.cut {
                    piece.truncate(room as usize);
                    st.seen = st.limit;
                    Some((Ok(piece), st))
                } else {
                    let e = too_large(std::mem::take(&mut st.object), st.limit);
                    Some((Err(Box::new(e) as _), st))
                }
            }
        }
    });
    // Fused: hyper and reqwest may poll a body again after its end (a `HEAD`'s empty body
    // is), and `unfold` panics if polled after it returned `None`.
    reqwest::Body::wrap_stream(pieces.fuse())
}

/// The first error of type `T` in `e`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// What the hostile endpoint answers every request with.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `200`, no length, bytes until the client hangs up.
        Endless,
        /// An object: `200` (`206` to a range) declaring a terabyte, then bytes until the client
        /// hangs up.
        DeclaredHuge,
        /// `412 Precondition Failed`, then bytes until the client hangs up.
        EndlessError,
        /// `200` with this body.
        Small(&'static str),
    }

    /// An S3-like endpoint on 127.0.0.2 (the attacker's address). Returns its address and the
    /// bytes it managed to send.
    fn endpoint(answer: Answer) -> (String, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.2:0").unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let counted = sent.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let counted = counted.clone();
                std::thread::spawn(move || serve(conn, answer, &counted));
            }
        });
        (addr, sent)
    }

    fn serve(mut conn: TcpStream, answer: Answer, sent: &AtomicU64) {
        conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
        loop {
            // The request head (requests here have no body).
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut b) {
                    Ok(1) if head.len() < 64 << 10 => head.push(b[0]),
                    _ => return,
                }
            }
            let status = match answer {
                Answer::Small(body) => {
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(r.as_bytes()).is_err() {
                        return;
                    }
                    continue;
                }
                Answer::Endless => "200 OK\r\nConnection: close",
                Answer::DeclaredHuge => {
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    if head.contains("\r\nrange: bytes=0-65535") {
                        "206 Partial Content\r\nContent-Range: bytes 0-65535/1000000000000\r\n\
                         Content-Length: 1000000000000\r\nETag: \"e\"\r\n\
                         Last-Modified: Wed, 25 Nov 2026 12:00:00 GMT"
                    } else {
                        "200 OK\r\nContent-Length: 1000000000000\r\nETag: \"e\"\r\n\
                         Last-Modified: Wed, 25 Nov 2026 12:00:00 GMT"
                    }
                }
                Answer::EndlessError => "412 Precondition Failed\r\nConnection: close",
            };
            if write!(conn, "HTTP/1.1 {status}\r\n\r\n").is_err() {
                return;
            }
            let chunk = [b' '; 64 << 10];
            while conn.write_all(&chunk).is_ok() {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            return;
        }
    }

    fn target(endpoint: &str) -> S3Target {
        let spec = TargetSpec::S3 {
            bucket: "b".into(),
            prefix: "site".into(),
            endpoint: Some(endpoint.into()),
            region: Some("us-east-1".into()),
            allow_http: true,
        };
        let b = AmazonS3Builder::new()
            .with_access_key_id("key")
            .with_secret_access_key("secret");
        S3Target::with_builder(&spec, b, None, Arc::new(Counters::default())).unwrap()
    }

    /// The hang guard: a body read without a limit would never end.
    async fn guarded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("the read ended within the hang guard")
    }

    #[tokio::test]
    async fn endless_manifest_body_is_cut_at_its_limit() {
        let (addr, sent) = endpoint(Answer::DeclaredHuge);
        let t = target(&addr);
        let key = "front/2026/11/25/manifest.json";
        match guarded(t.get(key, None)).await {
            Err(Error::TooLarge {
                op, key: k, limit, ..
            }) => {
                assert_eq!((op, k.as_str(), limit), ("GET", key, MAX_MANIFEST_BYTES));
            }
            other => panic!("{other:?}"),
        }
        // The endpoint stopped being read: what it sent is at most the limit plus socket
        // buffers.
        let e = Error::TooLarge {
            target: t.url.clone(),
            op: "GET",
            key: key.into(),
            limit: MAX_MANIFEST_BYTES,
            unit: "bytes",
        };
        assert!(e.to_string().contains("manifest.json") && e.to_string().contains("16777216"));
        assert!(sent.load(Ordering::Relaxed) < MAX_MANIFEST_BYTES + (64 << 20));
    }

    #[tokio::test]
    async fn endless_list_page_is_cut_at_its_limit() {
        let (addr, _) = endpoint(Answer::Endless);
        let t = target(&addr);
        match guarded(t.list("front/")).await {
            Err(Error::TooLarge { op, limit, .. }) => {
                assert_eq!((op, limit), ("LIST", LIST_PAGE_LIMIT));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn oversized_declared_length_is_refused_before_reading() {
        let (addr, _) = endpoint(Answer::DeclaredHuge);
        let t = target(&addr);
        match guarded(t.get("front/x.mp4", Some(0..65536))).await {
            Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, 65536),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn endless_error_body_is_cut_and_its_status_still_counts() {
        // 412 to a create-if-absent PUT means "it exists": the endless body must not hide it.
        let (addr, _) = endpoint(Answer::EndlessError);
        let t = target(&addr);
        let out = guarded(t.put_new("front/x.mp4", Bytes::from_static(b"abc"), "h")).await;
        assert_eq!(out.unwrap(), PutOutcome::Existed);
    }

    #[tokio::test]
    async fn a_small_manifest_is_read_as_usual() {
        let body =
            r#"{"format":"nvrkit-replica-manifest","version":1,"camera":"front","segments":[]}"#;
        let (addr, _) = endpoint(Answer::Small(body));
        let t = target(&addr);
        let got = guarded(t.get("front/2026/11/25/manifest.json", None))
            .await
            .unwrap();
        let m = crate::Manifest::parse(&got).unwrap();
        assert_eq!(m.camera, "front");
    }

    #[tokio::test]
    async fn bounded_body_stops_at_the_limit_of_an_endless_stream() {
        // An endless body in 1 KiB pieces: the reader fails after the limit, having pulled at
        // most the piece that crossed it.
        let pulled = Arc::new(AtomicU64::new(0));
        let p = pulled.clone();
        let endless = futures_util::stream::repeat_with(move || {
            p.fetch_add(1024, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from_static(&[b'x'; 1024]))
        });
        let body = bounded(
            reqwest::Body::wrap_stream(endless),
            "/b/k".into(),
            10_000,
            false,
            None,
        );
        let mut data = body.into_data_stream();
        let mut got = 0;
        let err = loop {
            match guarded(data.next()).await {
                Some(Ok(b)) => got += b.len(),
                Some(Err(e)) => break e,
                None => panic!("an endless body ended"),
            }
        };
        assert_eq!(got, 9 * 1024);
        assert_eq!(pulled.load(Ordering::Relaxed), 10 * 1024);
        let big = find_source::<BodyTooLarge>(&err).expect("the cause is BodyTooLarge");
        assert_eq!((big.object.as_str(), big.limit), ("/b/k", 10_000));

        // Cut (an error answer): the first 10,000 bytes, then the end.
        let endless = futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from_static(&[b'x'; 1024]))
        });
        let body = bounded(
            reqwest::Body::wrap_stream(endless),
            "/b/k".into(),
            10_000,
            true,
            None,
        );
        let all = guarded(body.collect()).await.unwrap().to_bytes();
        assert_eq!(all.len(), 10_000);
    }

    #[tokio::test]
    async fn a_bounded_body_may_be_polled_after_its_end() {
        // hyper polls a finished body again (an S3 `HEAD`'s empty one, against moto and
        // s3s-fs): that must be another end, not a panic.
        for cut in [false, true] {
            let body = bounded(
                reqwest::Body::wrap_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(
                    Bytes::from_static(b"abc"),
                )])),
                "/b/k".into(),
                10,
                cut,
                Some(3),
            );
            let mut data = body.into_data_stream();
            assert_eq!(guarded(data.next()).await.unwrap().unwrap(), "abc");
            for _ in 0..3 {
                assert!(guarded(data.next()).await.is_none());
            }
        }
    }

    #[tokio::test]
    async fn head_of_an_empty_answer_is_read() {
        let (addr, _) = endpoint(Answer::Small(""));
        let t = target(&addr);
        let got = guarded(t.head("front/x.mp4")).await.unwrap().unwrap();
        assert_eq!(got.size, 0);
    }

    #[test]
    fn limits_follow_the_request() {
        let get = http::Method::GET;
        let ok = http::StatusCode::OK;
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        assert_eq!(
            body_limit(&get, &uri("http://h/b/k/manifest.json"), None, ok),
            (MAX_MANIFEST_BYTES, false)
        );
        assert_eq!(
            body_limit(&get, &uri("http://h/b?list-type=2&prefix=x"), None, ok),
            (LIST_PAGE_LIMIT, false)
        );
        assert_eq!(
            body_limit(&get, &uri("http://h/b/k"), Some("bytes=10-19"), ok),
            (10, false)
        );
        assert_eq!(
            body_limit(&http::Method::PUT, &uri("http://h/b/k"), None, ok),
            (OTHER_BODY_LIMIT, false)
        );
        assert_eq!(
            body_limit(
                &get,
                &uri("http://h/b/k"),
                None,
                http::StatusCode::NOT_FOUND
            ),
            (ERROR_BODY_LIMIT, true)
        );
    }
}
