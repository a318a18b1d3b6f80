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

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
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
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
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
        let metas: Vec<_> = self
            .store
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| self.err("LIST", prefix, e))?;
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
        let body = HttpResponseBody::new(body.map_err(http_error));
        Ok(HttpResponse::from_parts(parts, body))
    }
}
