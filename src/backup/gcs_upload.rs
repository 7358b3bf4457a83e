//! Google Cloud Storage uploads through the JSON API.
//!
//! `object_store`'s GCS client uploads through the XML API (`PUT
//! /bucket/object` and XML multipart uploads). [`GcsJsonUploads`] wraps it
//! and sends every upload through the JSON API instead, which real GCS
//! serves and which Google recommends for large objects:
//!
//! - an object up to [`MEDIA_MAX`] bytes without extra metadata is one
//!   `POST {base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=…`;
//! - anything else (and every streamed upload, i.e. `put_multipart`) is a
//!   resumable session: `POST …?uploadType=resumable&name=…` returns the
//!   session URI in `Location`; the bytes follow in `PUT`s to it with
//!   `Content-Range: bytes a-b/*`, each a multiple of 256 KiB, answered by
//!   `308` with `Range: bytes=0-n` (what the server persisted); the last one
//!   carries the total (`bytes a-b/total`) and is answered by the object
//!   resource. After a failed request the session is asked where it is
//!   (`Content-Range: bytes */*`) and the upload resumes from there.
//!
//! Reading, listing, deleting and copying stay with `object_store`'s client;
//! the bearer token comes from its credential provider (none is sent when
//! the key disables OAuth, as `object_store` does).
//!
//! fake-gcs-server (1.54, 1.56) serves this protocol more loosely than GCS:
//! it appends whatever a chunk carries without checking the offset or the
//! 256 KiB multiple, and it finalizes an upload on a `bytes */*` status
//! query. The unit tests below therefore also run against a strict server
//! that checks offsets and chunk sizes, persists only part of a chunk and
//! fails requests, as GCS may.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorage};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result, RetryConfig, UploadPart,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use tokio::sync::{Mutex, oneshot};

/// The `store` of errors raised here, as `object_store` names it.
const STORE: &str = "GCS";
/// Where GCS serves its APIs unless the target names an endpoint.
pub const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// Every chunk of a resumable upload but the last is a multiple of this.
pub const QUANTUM: usize = 256 * 1024;
/// The smallest chunk sent before the end of an upload (fewer, larger
/// requests; Google recommends at least 8 MiB where memory allows, which
/// the callers' 8 MiB parts give).
const MIN_CHUNK: usize = 4 * QUANTUM;
/// The largest chunk in one request: a failed request is resent from what
/// the server persisted, at most this much.
const MAX_CHUNK: usize = 64 * QUANTUM;
/// Objects up to this size go up in one request.
pub const MEDIA_MAX: usize = 8 * 1024 * 1024;
/// A connection that is not established within this time counts as
/// unreachable (object_store's default too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, up to a 16 MiB chunk on a slow link.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of an error response is quoted.
const BODY_EXCERPT: usize = 300;

/// Object names and bucket names in URLs: everything but RFC 3986's
/// unreserved characters is percent-encoded (`/` too: the name is one query
/// value).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A GCS store whose uploads go through the JSON API; everything else is
/// `object_store`'s client.
#[derive(Debug)]
pub struct GcsJsonUploads {
    inner: GoogleCloudStorage,
    uploader: Arc<Uploader>,
}

impl GcsJsonUploads {
    /// `base_url`: the target's endpoint (or [`DEFAULT_BASE_URL`]), the
    /// same one the inner client talks to; `retry`: the inner client's.
    pub fn new(
        inner: GoogleCloudStorage,
        base_url: &str,
        bucket: &str,
        retry: RetryConfig,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: STORE,
                source: format!("cannot build the HTTP client for JSON API uploads: {e}").into(),
            })?;
        let uploader = Uploader {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            credentials: inner.credentials().clone(),
            retry,
        };
        Ok(Self {
            inner,
            uploader: Arc::new(uploader),
        })
    }
}

impl std::fmt::Display for GcsJsonUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} with JSON API uploads", self.inner)
    }
}

#[async_trait]
impl ObjectStore for GcsJsonUploads {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let PutOptions {
            mode,
            tags: _, // GCS has no object tags; object_store's client drops them too
            attributes,
            extensions: _,
        } = opts;
        let metadata = metadata_json(&attributes)?;
        let only_content_type = metadata.keys().all(|k| k == "contentType");
        if payload.content_length() <= MEDIA_MAX && only_content_type {
            let content_type = metadata.get("contentType").and_then(|v| v.as_str());
            return self
                .uploader
                .put_media(location, payload, &mode, content_type)
                .await;
        }
        let session = Session::start(&self.uploader, location, &mode, metadata).await?;
        session.append(payload).await?;
        session.finish().await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let PutMultipartOptions {
            tags: _,
            attributes,
            extensions: _,
        } = opts;
        let metadata = metadata_json(&attributes)?;
        let session =
            Session::start(&self.uploader, location, &PutMode::Overwrite, metadata).await?;
        Ok(Box::new(ResumableUpload {
            session: Arc::new(session),
            last: None,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// The JSON resource of an object's metadata for the attributes of a put.
fn metadata_json(attributes: &Attributes) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    let mut custom = serde_json::Map::new();
    for (key, value) in attributes {
        let field = match key {
            Attribute::ContentType => "contentType",
            Attribute::CacheControl => "cacheControl",
            Attribute::ContentDisposition => "contentDisposition",
            Attribute::ContentEncoding => "contentEncoding",
            Attribute::ContentLanguage => "contentLanguage",
            Attribute::StorageClass => "storageClass",
            Attribute::Metadata(name) => {
                custom.insert(name.to_string(), value.as_ref().into());
                continue;
            }
            other => {
                return Err(object_store::Error::NotSupported {
                    source: format!("attribute {other:?} on a GCS JSON API upload").into(),
                });
            }
        };
        out.insert(field.into(), value.as_ref().into());
    }
    if !custom.is_empty() {
        out.insert("metadata".into(), custom.into());
    }
    Ok(out)
}

/// Sends the JSON API's upload requests.
#[derive(Debug)]
struct Uploader {
    http: reqwest::Client,
    /// Scheme and host (and any path prefix) of the API, no trailing `/`.
    base: String,
    bucket: String,
    credentials: GcpCredentialProvider,
    retry: RetryConfig,
}

/// Why one request failed.
#[derive(Debug)]
enum Failure {
    /// No response (connect, timeout, reset).
    Transport(reqwest::Error),
    /// A response that is not the protocol's answer.
    Status { status: StatusCode, body: String },
    /// A response that breaks the protocol (e.g. a chunk not persisted).
    Protocol { message: String, retryable: bool },
    /// The credential provider failed; its error says why.
    Credentials(object_store::Error),
}

impl Failure {
    /// Worth another attempt, as object_store retries: transport errors,
    /// timeouts, 408, 429 and 5xx.
    fn retryable(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Failure::Protocol { retryable, .. } => *retryable,
            Failure::Credentials(_) => false,
        }
    }

    fn protocol(message: impl Into<String>) -> Self {
        Failure::Protocol {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What went wrong with an upload request, with the object, the HTTP status
/// and an excerpt of the server's answer; its source is the transport error
/// as `object_store` classifies it (connect, timeout, ...).
#[derive(Debug, thiserror::Error)]
#[error("{action} gs://{bucket}/{path} through the JSON API{retried}: {detail}")]
pub struct UploadError {
    action: &'static str,
    bucket: String,
    path: String,
    /// ` (after N retries)` or nothing.
    retried: String,
    detail: String,
    #[source]
    source: Option<HttpError>,
}

/// The server's answer to a chunk or a status query.
#[derive(Debug, PartialEq)]
enum Reply {
    /// `308`: the upload goes on; this many bytes are persisted.
    Incomplete(u64),
    /// The upload is complete: the object resource's size and generation.
    Done(Stored),
}

#[derive(Debug, PartialEq)]
struct Stored {
    size: Option<u64>,
    generation: Option<String>,
}

impl Stored {
    fn parse(body: &[u8]) -> Result<Self, Failure> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            Failure::protocol(format!(
                "the object resource is not JSON ({e}): {}",
                excerpt(body)
            ))
        })?;
        // The JSON API writes int64 fields as strings.
        let text = |field: &str| match v.get(field) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Ok(Stored {
            size: text("size").and_then(|s| s.parse().ok()),
            generation: text("generation"),
        })
    }

    /// The put's result, after checking that the server stored `expected`
    /// bytes.
    fn result(self, expected: u64) -> Result<PutResult, Failure> {
        if let Some(size) = self.size
            && size != expected
        {
            return Err(Failure::protocol(format!(
                "the server stored {size} bytes, {expected} were sent"
            )));
        }
        // The JSON API's etag is not the XML API's ETag that object_store's
        // reads compare against; the generation is the same in both.
        Ok(PutResult {
            e_tag: None,
            version: self.generation,
            extensions: Default::default(),
        })
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `Content-Range` of `len` bytes from `offset`; `total` on the last chunk.
fn content_range(offset: u64, len: usize, total: Option<u64>) -> String {
    let total = total.map_or_else(|| "*".to_string(), |t| t.to_string());
    if len == 0 {
        format!("bytes */{total}")
    } else {
        format!("bytes {offset}-{}/{total}", offset + len as u64 - 1)
    }
}

/// Bytes persisted according to a `308`'s `Range: bytes=0-n` (none when the
/// header is absent).
fn persisted(range: Option<&str>) -> Result<u64, Failure> {
    let Some(range) = range else { return Ok(0) };
    let last = range
        .trim()
        .strip_prefix("bytes=0-")
        .or_else(|| range.trim().strip_prefix("bytes 0-"))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| Failure::protocol(format!("unreadable Range header {range:?}")))?;
    Ok(last + 1)
}

/// How many of `held` bytes to send before the end of an upload: a multiple
/// of [`QUANTUM`] of at least [`MIN_CHUNK`] and at most [`MAX_CHUNK`],
/// keeping at least one byte back so the last request carries the total.
fn sendable(held: usize) -> usize {
    let aligned = (held.saturating_sub(1) / QUANTUM * QUANTUM).min(MAX_CHUNK);
    if aligned >= MIN_CHUNK { aligned } else { 0 }
}

impl Uploader {
    fn upload_url(&self, upload_type: &str, path: &Path, mode: &PutMode) -> Result<String> {
        let condition = match mode {
            PutMode::Overwrite => String::new(),
            PutMode::Create => "&ifGenerationMatch=0".into(),
            PutMode::Update(v) => match &v.version {
                Some(generation) => format!(
                    "&ifGenerationMatch={}",
                    utf8_percent_encode(generation, COMPONENT)
                ),
                None => {
                    return Err(object_store::Error::Generic {
                        store: STORE,
                        source:
                            "a conditional update on GCS needs the object's generation (version)"
                                .into(),
                    });
                }
            },
        };
        Ok(format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={upload_type}&name={}{condition}",
            self.base,
            utf8_percent_encode(&self.bucket, COMPONENT),
            utf8_percent_encode(path.as_ref(), COMPONENT),
        ))
    }

    /// Authorize a request to the API (not to a session URI, which is its
    /// own authorization).
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(Failure::Credentials)?;
        Ok(if credential.bearer.is_empty() {
            request
        } else {
            request.bearer_auth(&credential.bearer)
        })
    }

    fn may_retry(&self, failure: &Failure, retries: usize, began: Instant) -> bool {
        failure.retryable()
            && retries < self.retry.max_retries
            && began.elapsed() < self.retry.retry_timeout
    }

    /// Sleep before retry number `retries` (1, 2, ...): exponential backoff
    /// as configured for object_store.
    async fn back_off(&self, retries: usize) {
        let b = &self.retry.backoff;
        let factor = b
            .base
            .max(1.0)
            .powi(retries.saturating_sub(1).min(30) as i32);
        let wait = b.init_backoff.mul_f64(factor).min(b.max_backoff);
        tokio::time::sleep(wait).await;
    }

    fn error(
        &self,
        action: &'static str,
        path: &Path,
        mode: &PutMode,
        retries: usize,
        failure: Failure,
    ) -> object_store::Error {
        let (detail, source, status) = match failure {
            Failure::Credentials(e) => return e,
            Failure::Transport(e) => {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else if e.is_timeout() {
                    HttpErrorKind::Timeout
                } else if e.is_body() || e.is_decode() {
                    HttpErrorKind::Decode
                } else {
                    HttpErrorKind::Request
                };
                let detail = format!("{kind:?} error: {e}");
                (detail, Some(HttpError::new(kind, e)), None)
            }
            Failure::Status { status, body } => {
                (format!("HTTP {status}: {body}"), None, Some(status))
            }
            Failure::Protocol { message, .. } => (message, None, None),
        };
        let error = UploadError {
            action,
            bucket: self.bucket.clone(),
            path: path.to_string(),
            retried: if retries > 0 {
                format!(" (after {retries} retries)")
            } else {
                String::new()
            },
            detail,
            source,
        };
        let path = path.to_string();
        let source = Box::new(error);
        match status {
            Some(StatusCode::UNAUTHORIZED) => object_store::Error::Unauthenticated { path, source },
            Some(StatusCode::FORBIDDEN) => object_store::Error::PermissionDenied { path, source },
            Some(StatusCode::NOT_FOUND) => object_store::Error::NotFound { path, source },
            Some(StatusCode::PRECONDITION_FAILED) if matches!(mode, PutMode::Create) => {
                object_store::Error::AlreadyExists { path, source }
            }
            Some(StatusCode::PRECONDITION_FAILED) => {
                object_store::Error::Precondition { path, source }
            }
            _ => object_store::Error::Generic {
                store: STORE,
                source,
            },
        }
    }

    /// Send a request built by `build` until it succeeds (2xx) or fails for
    /// good; returns the response body.
    async fn send_retrying(
        &self,
        action: &'static str,
        path: &Path,
        mode: &PutMode,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Bytes)> {
        let began = Instant::now();
        let mut retries = 0;
        loop {
            let failure = match self.send_once(self.authorize(build()).await).await {
                Ok((status, headers, body)) if status.is_success() => return Ok((headers, body)),
                Ok((status, _, body)) => Failure::Status {
                    status,
                    body: excerpt(&body),
                },
                Err(f) => f,
            };
            if !self.may_retry(&failure, retries, began) {
                return Err(self.error(action, path, mode, retries, failure));
            }
            retries += 1;
            self.back_off(retries).await;
        }
    }

    async fn send_once(
        &self,
        request: Result<reqwest::RequestBuilder, Failure>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), Failure> {
        let response = request?.send().await.map_err(Failure::Transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(Failure::Transport)?;
        Ok((status, headers, body))
    }

    /// One request: the whole object.
    async fn put_media(
        &self,
        path: &Path,
        payload: PutPayload,
        mode: &PutMode,
        content_type: Option<&str>,
    ) -> Result<PutResult> {
        let url = self.upload_url("media", path, mode)?;
        let len = payload.content_length() as u64;
        let body = Bytes::from(payload);
        let content_type = content_type.unwrap_or("application/octet-stream");
        let (_, response) = self
            .send_retrying("upload", path, mode, || {
                self.http
                    .post(&url)
                    .header(CONTENT_TYPE, content_type)
                    .header(CONTENT_LENGTH, len)
                    .body(body.clone())
            })
            .await?;
        tracing::debug!(object = %path, bytes = len, "GCS media upload complete");
        Stored::parse(&response)
            .and_then(|s| s.result(len))
            .map_err(|f| self.error("upload", path, mode, 0, f))
    }

    /// `PUT` to a session: `body` from `offset`, `total` on the last chunk
    /// (an empty body asks where the upload is).
    async fn put_range(
        &self,
        session: &str,
        offset: u64,
        body: Bytes,
        total: Option<u64>,
    ) -> Result<Reply, Failure> {
        let request = self
            .http
            .put(session)
            .header(CONTENT_RANGE, content_range(offset, body.len(), total))
            .header(CONTENT_LENGTH, body.len())
            .body(body);
        let (status, headers, response) = self.send_once(Ok(request)).await?;
        match status.as_u16() {
            308 => {
                persisted(headers.get(RANGE).and_then(|v| v.to_str().ok())).map(Reply::Incomplete)
            }
            200 | 201 => Stored::parse(&response).map(Reply::Done),
            _ => Err(Failure::Status {
                status,
                body: excerpt(&response),
            }),
        }
    }

    /// Send `data`, bytes `start..` of the object, to a session, resuming
    /// from what the server persisted when it keeps less or a request
    /// fails. `total` marks the last chunk; the server's object resource is
    /// returned when it completed the upload.
    async fn upload_range(
        &self,
        session: &str,
        path: &Path,
        start: u64,
        data: Bytes,
        total: Option<u64>,
    ) -> Result<Option<Stored>> {
        let end = start + data.len() as u64;
        let mode = PutMode::Overwrite;
        let lost = |persisted: u64| {
            Failure::protocol(format!(
                "the upload session holds {persisted} bytes but {start} were confirmed before"
            ))
        };
        let began = Instant::now();
        let mut retries = 0;
        let mut offset = start;
        loop {
            let body = data.slice((offset - start) as usize..);
            tracing::debug!(
                object = %path,
                range = %content_range(offset, body.len(), total),
                retries,
                "GCS upload chunk"
            );
            let failure = match self.put_range(session, offset, body, total).await {
                Ok(Reply::Done(stored)) => return Ok(Some(stored)),
                Ok(Reply::Incomplete(n)) if n < start => lost(n),
                Ok(Reply::Incomplete(n)) if total.is_none() && n >= end => return Ok(None),
                Ok(Reply::Incomplete(n)) if n > offset => {
                    // The server kept part of the chunk: send the rest.
                    offset = n;
                    continue;
                }
                Ok(Reply::Incomplete(n)) => Failure::Protocol {
                    message: format!("the server kept {n} bytes of the {end} sent"),
                    retryable: true,
                },
                Err(f) => f,
            };
            if !self.may_retry(&failure, retries, began) {
                return Err(self.error("upload", path, &mode, retries, failure));
            }
            retries += 1;
            self.back_off(retries).await;
            // Where is the upload? (GCS answers a status query with what it
            // persisted; fake-gcs-server would finalize instead.)
            match self.put_range(session, 0, Bytes::new(), total).await {
                Ok(Reply::Done(stored)) => return Ok(Some(stored)),
                Ok(Reply::Incomplete(n)) if n < start => {
                    return Err(self.error("upload", path, &mode, retries, lost(n)));
                }
                Ok(Reply::Incomplete(n)) if total.is_none() && n >= end => return Ok(None),
                Ok(Reply::Incomplete(n)) => offset = n.min(end),
                // Send again from where we were; the answer says where it is.
                Err(_) => {}
            }
        }
    }
}

/// A resumable upload session.
struct Session {
    uploader: Arc<Uploader>,
    /// The session URI: whoever holds it can upload, so it is never shown.
    uri: String,
    path: Path,
    state: Mutex<SessionState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct SessionState {
    /// Bytes the server confirmed.
    sent: u64,
    /// Bytes not sent yet (less than a chunk, or the tail kept for the
    /// last request).
    held: BytesMut,
}

impl Session {
    async fn start(
        uploader: &Arc<Uploader>,
        path: &Path,
        mode: &PutMode,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        let url = uploader.upload_url("resumable", path, mode)?;
        let body = serde_json::Value::Object(metadata).to_string();
        let (headers, _) = uploader
            .send_retrying("start the upload of", path, mode, || {
                uploader
                    .http
                    .post(&url)
                    .header(CONTENT_TYPE, "application/json; charset=UTF-8")
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone())
            })
            .await?;
        let uri = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                uploader.error(
                    "start the upload of",
                    path,
                    mode,
                    0,
                    Failure::protocol("the answer has no Location (session URI)"),
                )
            })?
            .to_string();
        Ok(Self {
            uploader: uploader.clone(),
            uri,
            path: path.clone(),
            state: Mutex::new(SessionState::default()),
        })
    }

    /// Take `payload`; send what makes whole chunks.
    async fn append(&self, payload: PutPayload) -> Result<()> {
        let mut state = self.state.lock().await;
        for part in payload.iter() {
            state.held.extend_from_slice(part);
        }
        loop {
            let n = sendable(state.held.len());
            if n == 0 {
                return Ok(());
            }
            let chunk = state.held.split_to(n).freeze();
            let start = state.sent;
            let done = self
                .uploader
                .upload_range(&self.uri, &self.path, start, chunk, None)
                .await?;
            if done.is_some() {
                return Err(self.uploader.error(
                    "upload",
                    &self.path,
                    &PutMode::Overwrite,
                    0,
                    Failure::protocol("the server completed the upload before its last chunk"),
                ));
            }
            state.sent = start + n as u64;
        }
    }

    /// Send the rest with the total size; the server completes the object.
    async fn finish(&self) -> Result<PutResult> {
        let mut state = self.state.lock().await;
        let start = state.sent;
        let tail = state.held.split().freeze();
        let total = start + tail.len() as u64;
        let fail = |f| {
            self.uploader.error(
                "complete the upload of",
                &self.path,
                &PutMode::Overwrite,
                0,
                f,
            )
        };
        match self
            .uploader
            .upload_range(&self.uri, &self.path, start, tail, Some(total))
            .await?
        {
            Some(stored) => {
                state.sent = total;
                tracing::debug!(object = %self.path, bytes = total, "GCS resumable upload complete");
                stored.result(total).map_err(fail)
            }
            None => Err(fail(Failure::protocol(
                "the server did not complete the upload after its last byte",
            ))),
        }
    }

    /// Cancel the session (GCS answers `499`); the bytes sent are dropped.
    async fn cancel(&self) -> Result<()> {
        let response = self
            .uploader
            .http
            .delete(&self.uri)
            .header(CONTENT_LENGTH, 0)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 499 => Ok(()),
            // A session that is gone or finished cannot be cancelled.
            Ok(r) if r.status().is_client_error() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                Err(self.uploader.error(
                    "cancel the upload of",
                    &self.path,
                    &PutMode::Overwrite,
                    0,
                    Failure::Status {
                        status,
                        body: excerpt(&body),
                    },
                ))
            }
            Err(e) => Err(self.uploader.error(
                "cancel the upload of",
                &self.path,
                &PutMode::Overwrite,
                0,
                Failure::Transport(e),
            )),
        }
    }
}

/// `put_multipart` on GCS: parts go to the session in the order they were
/// given (each part's request waits for the one before it), whatever order
/// the caller polls them in.
#[derive(Debug)]
struct ResumableUpload {
    session: Arc<Session>,
    /// Settles when the latest part was sent (`true`) or failed.
    last: Option<oneshot::Receiver<bool>>,
}

impl ResumableUpload {
    fn earlier_part_failed(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE,
            source: format!(
                "upload of gs://{}/{}: an earlier part failed",
                self.session.uploader.bucket, self.session.path
            )
            .into(),
        }
    }
}

#[async_trait]
impl MultipartUpload for ResumableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (done, settled) = oneshot::channel();
        let before = self.last.replace(settled);
        let session = self.session.clone();
        let failed = self.earlier_part_failed();
        Box::pin(async move {
            if let Some(before) = before
                && before.await != Ok(true)
            {
                let _ = done.send(false);
                return Err(failed);
            }
            let result = session.append(data).await;
            let _ = done.send(result.is_ok());
            result
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        if let Some(last) = self.last.take()
            && last.await != Ok(true)
        {
            return Err(self.earlier_part_failed());
        }
        self.session.finish().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.last = None;
        self.session.cancel().await
    }
}

#[cfg(test)]
mod tests {
    //! Against a small server that speaks the JSON upload protocol as
    //! strictly as GCS documents it (fake-gcs-server does not check offsets
    //! or chunk sizes): offsets must follow what was persisted, chunks
    //! before the last are multiples of 256 KiB, and it can keep only part
    //! of a chunk or fail a request, as GCS may.
    use super::*;
    use axum::http::{HeaderMap, StatusCode as Code, Uri};
    use object_store::buffered::BufWriter;
    use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
    use object_store::{ObjectStoreExt, StaticCredentialProvider};
    use std::collections::{HashMap, VecDeque};
    use tokio::io::AsyncWriteExt;

    const BUCKET: &str = "bkt";

    /// What the server does with the next chunk (`PUT` to a session).
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        /// Persist only this many bytes and answer 308.
        KeepOnly(usize),
        /// Answer 503 without persisting anything.
        FailBefore,
        /// Persist the chunk, then answer 503 (the answer is lost).
        FailAfter,
    }

    #[derive(Default)]
    struct Fake {
        objects: HashMap<String, Vec<u8>>,
        sessions: HashMap<String, (String, Vec<u8>)>,
        /// Query strings of the `POST`s.
        posts: Vec<String>,
        /// `Authorization` of the `POST`s.
        auth: Vec<Option<String>>,
        /// `Content-Range` of every `PUT`.
        ranges: Vec<String>,
        faults: VecDeque<Fault>,
        /// Answer the next `POST`s with these statuses.
        refuse: VecDeque<u16>,
        cancelled: usize,
    }

    type Shared = Arc<std::sync::Mutex<Fake>>;

    fn query(uri: &Uri, key: &str) -> Option<String> {
        uri.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    fn object_json(name: &str, size: usize) -> String {
        serde_json::json!({"name": name, "size": size.to_string(), "generation": "42"}).to_string()
    }

    type Answer = (Code, HeaderMap, String);

    fn answer(code: u16, headers: &[(&'static str, String)], body: String) -> Answer {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().expect("header"));
        }
        (Code::from_u16(code).expect("status"), map, body)
    }

    async fn post(
        axum::extract::State(fake): axum::extract::State<Shared>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Answer {
        let mut f = fake.lock().expect("fake");
        f.posts.push(uri.query().unwrap_or_default().to_string());
        f.auth.push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default().to_string()),
        );
        if let Some(code) = f.refuse.pop_front() {
            return answer(code, &[], format!("{{\"error\":{{\"code\":{code}}}}}"));
        }
        let Some(name) = query(&uri, "name") else {
            return answer(400, &[], "no name".into());
        };
        match query(&uri, "uploadType").as_deref() {
            Some("media") => {
                let size = body.len();
                f.objects.insert(name.clone(), body.to_vec());
                answer(200, &[], object_json(&name, size))
            }
            Some("resumable") => {
                let id = format!("s{}", f.sessions.len() + 1);
                f.sessions.insert(id.clone(), (name, Vec::new()));
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default();
                let location = format!(
                    "http://{host}/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&upload_id={id}"
                );
                answer(200, &[("location", location)], String::new())
            }
            other => answer(400, &[], format!("uploadType {other:?}")),
        }
    }

    async fn put(
        axum::extract::State(fake): axum::extract::State<Shared>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Answer {
        let mut guard = fake.lock().expect("fake");
        let f = &mut *guard;
        let range = headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        f.ranges.push(range.clone());
        let Some(id) = query(&uri, "upload_id") else {
            return answer(400, &[], "no upload_id".into());
        };
        let Some((name, held)) = f.sessions.get_mut(&id) else {
            return answer(404, &[], "no such session".into());
        };
        let status = |held: &Vec<u8>| {
            let range =
                (!held.is_empty()).then(|| ("range", format!("bytes=0-{}", held.len() - 1)));
            answer(308, &range.into_iter().collect::<Vec<_>>(), String::new())
        };
        let Some((span, total)) = range.strip_prefix("bytes ").and_then(|r| r.split_once('/'))
        else {
            return answer(400, &[], format!("bad Content-Range {range:?}"));
        };
        let total: Option<usize> = if total == "*" {
            None
        } else {
            match total.parse() {
                Ok(t) => Some(t),
                Err(_) => return answer(400, &[], "bad total".into()),
            }
        };
        let name = name.clone();
        if span == "*" {
            if !body.is_empty() {
                return answer(400, &[], "a status query has a body".into());
            }
            return match total {
                Some(t) if t == held.len() => {
                    let object = std::mem::take(held);
                    f.sessions.remove(&id);
                    f.objects.insert(name.clone(), object);
                    answer(200, &[], object_json(&name, t))
                }
                Some(_) => answer(400, &[], "the total is not what was sent".into()),
                None => status(held),
            };
        }
        let Some((first, last)) = span
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        else {
            return answer(400, &[], "bad range".into());
        };
        if first != held.len() {
            return answer(
                400,
                &[],
                format!("chunk starts at {first}, {} persisted", held.len()),
            );
        }
        if last + 1 - first != body.len() {
            return answer(400, &[], "the body is not the range".into());
        }
        match total {
            None if !body.len().is_multiple_of(QUANTUM) => {
                return answer(400, &[], "not a multiple of 256 KiB".into());
            }
            Some(t) if t != last + 1 => {
                return answer(400, &[], "the last chunk ends early".into());
            }
            _ => {}
        }
        match f.faults.pop_front() {
            Some(Fault::FailBefore) => return answer(503, &[], "try again".into()),
            Some(Fault::KeepOnly(n)) => {
                held.extend_from_slice(&body[..n]);
                return status(held);
            }
            Some(Fault::FailAfter) => {
                held.extend_from_slice(&body);
                return answer(503, &[], "try again".into());
            }
            None => held.extend_from_slice(&body),
        }
        match total {
            Some(t) => {
                let object = std::mem::take(held);
                f.sessions.remove(&id);
                f.objects.insert(name.clone(), object);
                answer(201, &[], object_json(&name, t))
            }
            None => status(held),
        }
    }

    async fn delete(axum::extract::State(fake): axum::extract::State<Shared>, uri: Uri) -> Answer {
        let mut f = fake.lock().expect("fake");
        if let Some(id) = query(&uri, "upload_id") {
            f.sessions.remove(&id);
        }
        f.cancelled += 1;
        answer(499, &[], String::new())
    }

    async fn serve(fake: Fake) -> (String, Shared) {
        let shared: Shared = Arc::new(std::sync::Mutex::new(fake));
        let app = axum::Router::new()
            .route(
                "/upload/storage/v1/b/bkt/o",
                axum::routing::post(post).put(put).delete(delete),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), shared)
    }

    fn fast_retry(max_retries: usize) -> RetryConfig {
        RetryConfig {
            max_retries,
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
                base: 2.0,
            },
            ..Default::default()
        }
    }

    fn store(base: &str, bearer: &str, retry: RetryConfig) -> GcsJsonUploads {
        crate::tls::ensure_crypto_provider();
        let inner = GoogleCloudStorageBuilder::new()
            .with_bucket_name(BUCKET)
            .with_base_url(base)
            .with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
                bearer: bearer.into(),
            })))
            .build()
            .expect("inner");
        GcsJsonUploads::new(inner, base, BUCKET, retry).expect("store")
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// The backup's own writer (BufWriter, as artifact::upload uses it) over
    /// a strict server that keeps only part of a chunk once, fails before
    /// and after persisting: the object holds exactly the bytes written.
    #[tokio::test]
    async fn streamed_upload_resumes_from_what_the_server_persisted() {
        let (base, fake) = serve(Fake {
            faults: VecDeque::from([
                Fault::KeepOnly(QUANTUM),
                Fault::FailBefore,
                Fault::FailAfter,
            ]),
            ..Default::default()
        })
        .await;
        let store: Arc<dyn ObjectStore> = Arc::new(store(&base, "", fast_retry(3)));
        let path = Path::from("team/ns/c/b1/dump.rdb.zst");
        let bytes = data(5 * 1024 * 1024 + 12_345);
        let mut writer = BufWriter::with_capacity(store.clone(), path.clone(), 1024 * 1024 + 7);
        for piece in bytes.chunks(100_003) {
            writer.write_all(piece).await.expect("write");
        }
        writer.shutdown().await.expect("complete");
        let f = fake.lock().expect("fake");
        assert_eq!(f.objects.get(path.as_ref()), Some(&bytes));
        assert!(f.faults.is_empty(), "every fault was met");
        assert!(f.sessions.is_empty());
        // One session, no token sent (none configured), several chunks,
        // the last with the total.
        assert_eq!(f.posts.len(), 1, "{:?}", f.posts);
        assert!(f.posts[0].contains("uploadType=resumable"));
        assert!(f.posts[0].contains("name=team%2Fns%2Fc%2Fb1%2Fdump.rdb.zst"));
        assert_eq!(f.auth, vec![None]);
        let chunks: Vec<_> = f
            .ranges
            .iter()
            .filter(|r| !r.starts_with("bytes */"))
            .collect();
        assert!(chunks.len() >= 5, "{:?}", f.ranges);
        assert!(
            f.ranges
                .last()
                .expect("ranges")
                .ends_with(&format!("/{}", bytes.len())),
            "{:?}",
            f.ranges
        );
        drop(f);
        // What the wrapper reads back is its inner client's business; the
        // size check of the object resource ran in complete().
    }

    /// A small object is one media request carrying the bearer token; the
    /// name is percent-encoded and arrives intact; Create is conditional.
    #[tokio::test]
    async fn small_put_is_one_media_request_with_the_token() {
        let (base, fake) = serve(Fake::default()).await;
        let store = store(&base, "tok", fast_retry(0));
        let path = Path::from("a b/ü+x?&=/m.json");
        let put = store
            .put(&path, PutPayload::from_static(b"{\"k\":1}"))
            .await
            .expect("put");
        assert_eq!(put.version.as_deref(), Some("42"));
        store
            .put_opts(
                &path,
                PutPayload::from_static(b"{}"),
                PutMode::Create.into(),
            )
            .await
            .expect("create");
        let f = fake.lock().expect("fake");
        assert_eq!(f.objects.get(path.as_ref()), Some(&b"{}".to_vec()));
        assert_eq!(f.auth, vec![Some("Bearer tok".into()); 2]);
        assert!(
            f.posts[0].starts_with("uploadType=media&name="),
            "{}",
            f.posts[0]
        );
        assert!(!f.posts[0].contains("ifGenerationMatch"));
        assert!(
            f.posts[1].ends_with("&ifGenerationMatch=0"),
            "{}",
            f.posts[1]
        );
        assert!(f.ranges.is_empty());
    }

    /// An object larger than one media request goes through a session.
    #[tokio::test]
    async fn large_put_goes_through_a_session() {
        let (base, fake) = serve(Fake::default()).await;
        let store = store(&base, "", fast_retry(0));
        let path = Path::from("big");
        let bytes = data(MEDIA_MAX + QUANTUM + 3);
        store
            .put(&path, PutPayload::from(bytes.clone()))
            .await
            .expect("put");
        let f = fake.lock().expect("fake");
        assert_eq!(f.objects.get("big"), Some(&bytes));
        assert!(f.posts[0].starts_with("uploadType=resumable"));
        assert_eq!(f.ranges.len(), 2, "{:?}", f.ranges);
    }

    /// Refusals keep their meaning: 401 and 403 are credential errors, 404
    /// is not found, a 5xx that persists fails after the retries with the
    /// status and the server's words; nothing listening is a connect error.
    #[tokio::test]
    async fn failures_say_what_happened() {
        let (base, fake) = serve(Fake {
            refuse: VecDeque::from([401, 403, 404, 503, 503, 503]),
            ..Default::default()
        })
        .await;
        let store = store(&base, "tok", fast_retry(2));
        let path = Path::from("x");
        let put = || store.put(&path, PutPayload::from_static(b"1"));
        let e = put().await.unwrap_err();
        assert!(
            matches!(e, object_store::Error::Unauthenticated { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("HTTP 401"), "{e}");
        let e = put().await.unwrap_err();
        assert!(
            matches!(e, object_store::Error::PermissionDenied { .. }),
            "{e}"
        );
        let e = put().await.unwrap_err();
        assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
        let e = put().await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("HTTP 503") && text.contains("after 2 retries"),
            "{text}"
        );
        assert!(text.contains("gs://bkt/x"), "{text}");
        assert!(!text.contains("tok"), "{text}");
        assert!(fake.lock().expect("fake").refuse.is_empty());

        // Nothing listens on port 1 of loopback.
        let unreachable = self::store("http://127.0.0.1:1", "", fast_retry(1));
        let e = unreachable
            .put_multipart(&path)
            .await
            .expect_err("no server");
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut kind = None;
        while let Some(err) = cause {
            if let Some(http) = err.downcast_ref::<HttpError>() {
                kind = Some(http.kind());
            }
            cause = err.source();
        }
        assert_eq!(kind, Some(HttpErrorKind::Connect), "{e}");
    }

    /// Parts are sent in the order they were given, even when the caller
    /// polls the later one first; abort cancels the session.
    #[tokio::test]
    async fn parts_keep_their_order_and_abort_cancels() {
        let (base, fake) = serve(Fake::default()).await;
        let store = store(&base, "", fast_retry(0));
        let path = Path::from("ordered");
        let one = data(2 * 1024 * 1024);
        let two: Vec<u8> = data(1024 * 1024 + 5).iter().map(|b| b ^ 0x5a).collect();
        let mut upload = store.put_multipart(&path).await.expect("start");
        let first = upload.put_part(PutPayload::from(one.clone()));
        let second = upload.put_part(PutPayload::from(two.clone()));
        let second = tokio::spawn(second);
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.await.expect("first");
        second.await.expect("join").expect("second");
        upload.complete().await.expect("complete");
        assert_eq!(
            fake.lock().expect("fake").objects.get("ordered"),
            Some(&[one, two].concat())
        );

        let mut upload = store.put_multipart(&path).await.expect("start");
        upload
            .put_part(PutPayload::from(data(3 * QUANTUM)))
            .await
            .expect("part");
        upload.abort().await.expect("abort");
        let f = fake.lock().expect("fake");
        assert_eq!(f.cancelled, 1);
        assert!(f.sessions.is_empty());
    }

    #[test]
    fn chunks_are_whole_quanta_and_keep_the_tail() {
        assert_eq!(sendable(0), 0);
        assert_eq!(sendable(MIN_CHUNK), 0, "the last byte stays for the total");
        assert_eq!(sendable(MIN_CHUNK + 1), MIN_CHUNK);
        assert_eq!(sendable(8 * 1024 * 1024), 8 * 1024 * 1024 - QUANTUM);
        assert_eq!(sendable(100 * 1024 * 1024), MAX_CHUNK);
        assert_eq!(content_range(0, QUANTUM, None), "bytes 0-262143/*");
        assert_eq!(
            content_range(262144, 10, Some(262154)),
            "bytes 262144-262153/262154"
        );
        assert_eq!(content_range(5, 0, None), "bytes */*");
        assert_eq!(content_range(5, 0, Some(5)), "bytes */5");
        assert_eq!(persisted(None).ok(), Some(0));
        assert_eq!(persisted(Some("bytes=0-262143")).ok(), Some(262144));
        assert!(persisted(Some("bytes=5-9")).is_err());
    }
}
