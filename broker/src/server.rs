//! Listeners and the request pipeline — read this file top to bottom to follow a request.
//!
//! ```text
//! TCP accept (at most `http.max_connections`; idle connections closed after `http.idle_timeout`)
//!   → hyper (HTTP/1.1 or h2c prior knowledge, detected per connection; header, buffer,
//!     stream-concurrency and window limits from `[http]`)
//!   → method / content type (JSON or CBOR) / X-Amz-Target checks
//!   → body, bounded in size and time, each chunk charged to the memory budget as it
//!     arrives (`budget.rs`), so stalled or trickling clients hold almost nothing
//!   → authentication (`auth::Authenticator`: SigV4 against the credentials file, or
//!     anonymous when switched on); authorization once the input names its resource
//!   → api::dispatch → handler(&Broker, Input) → shard → storage
//!   → response: JSON or CBOR (the request's format) body, an event stream, or a Kinesis error, x-amzn-RequestId, Date (added by hyper)
//!   → metrics: count and latency per operation and result
//! ```
//!
//! The admin listener serves `/metrics`, `/healthz`, `/readyz` and, with `--test-clock`,
//! `POST /test/clock/advance`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::error::ApiError;
use crate::api::{self, Format, Operation, Reply};
use crate::auth::{Authenticator, RequestHead};
use crate::broker::Broker;
use crate::budget::{Budget, Reservation};
use crate::config::HttpConfig;

/// A response body: complete, or an event stream fed by a subscription task.
pub type Body = http_body_util::Either<FullBody, ChannelBody>;

/// A complete response body. It keeps its request's share of the memory budget until it
/// has been handed to the connection, so an answer waiting for a slow reader still counts.
#[derive(Debug)]
pub struct FullBody {
    data: Option<Bytes>,
    _held: Option<Reservation>,
}

impl FullBody {
    fn new(data: Bytes, held: Option<Reservation>) -> FullBody {
        FullBody {
            data: (!data.is_empty()).then_some(data),
            _held: held,
        }
    }
}

impl hyper::body::Body for FullBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = self.data.take().map(|d| Ok(Frame::data(d)));
        self._held = None;
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// A streaming body whose frames arrive on a channel; it ends when the sender is dropped.
#[derive(Debug)]
pub struct ChannelBody {
    frames: tokio::sync::mpsc::Receiver<Bytes>,
    /// Counts the stream as a request in flight on its connection while it lasts, so an
    /// open subscription never makes its connection look idle.
    in_flight: Option<InFlight>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A request body takes this many times its size from the budget: the body itself and
/// what decoding makes of it (blobs, strings) live side by side until the handler is done.
const DECODE_FACTOR: u64 = 2;

/// A GetRecords call reserves this many times its largest answer: the records read, their
/// encoded response, and the encoder's working copy.
const ANSWER_FACTOR: u64 = 3;

/// Largest request body accepted (a 10 MiB record, base64-encoded, with room for keys).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The in-flight memory budget (`max_inflight_bytes`).
    pub budget: Arc<Budget>,
    /// The authentication step.
    pub auth: Arc<dyn Authenticator>,
    /// The STS endpoint (temporary credentials), when authentication is on.
    pub sts: Option<Arc<crate::auth::sts::Sts>>,
    /// Whether the broker is ready to serve (for `/readyz`).
    pub ready: AtomicBool,
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn respond(
    status: StatusCode,
    content_type: Option<&str>,
    body: Vec<u8>,
    rid: &str,
) -> Response<Body> {
    with_body(
        status,
        content_type,
        Body::Left(FullBody::new(Bytes::from(body), None)),
        rid,
    )
}

fn with_body(
    status: StatusCode,
    content_type: Option<&str>,
    body: Body,
    rid: &str,
) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(ct) = content_type {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(ct).expect("static content type"),
        );
    }
    h.insert(
        "x-amzn-RequestId",
        HeaderValue::from_str(rid).expect("uuid is ascii"),
    );
    r
}

fn error_response(err: &ApiError, format: Format, account: &str, rid: &str) -> Response<Body> {
    let r = err.render(account);
    let mut body = serde_json::Map::new();
    body.insert("__type".into(), r.kind.into());
    if let Some(m) = r.message {
        body.insert(
            if r.capital { "Message" } else { "message" }.into(),
            m.into(),
        );
    }
    let bytes = format.encode(&body);
    let mut resp = respond(r.status, Some(format.content_type()), bytes, rid);
    resp.headers_mut()
        .insert("x-amzn-ErrorType", HeaderValue::from_static(r.kind));
    resp
}

fn result_label(err: &ApiError, status: StatusCode) -> &'static str {
    if err.is_throttle() {
        "throttled"
    } else if status.is_server_error() {
        "server_error"
    } else {
        "client_error"
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
enum BodyError {
    /// Larger than [`MAX_BODY_BYTES`].
    TooLarge,
    /// Given up by the server: `body_idle`, `body_deadline` or `busy`.
    Abandoned(&'static str),
    /// The client broke the body off (reset, bad chunking).
    Broken,
}

/// Reads a request body, charging each chunk to `reservation` as it arrives. A body that
/// stops arriving for `body_idle_timeout`, or is not complete within `body_timeout` of the
/// headers (waiting for the budget included), is abandoned.
async fn read_body(
    mut body: Incoming,
    reservation: &Reservation,
    http: &HttpConfig,
) -> Result<Bytes, BodyError> {
    let deadline = tokio::time::Instant::now() + http.body_timeout;
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total = 0usize;
    loop {
        let idle_at = (tokio::time::Instant::now() + http.body_idle_timeout).min(deadline);
        let frame = match tokio::time::timeout_at(idle_at, body.frame()).await {
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(BodyError::Abandoned("body_deadline"))
            }
            Err(_) => return Err(BodyError::Abandoned("body_idle")),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        let charge = reservation.grow(DECODE_FACTOR * data.len() as u64);
        if tokio::time::timeout_at(deadline, charge).await.is_err() {
            return Err(BodyError::Abandoned("busy"));
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            held => {
                // Gathering a body of several chunks touches at most twice what arrived
                // (while the buffer doubles), which the decode factor covers.
                if let Some(f) = held {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// The answer to a request the server gave up on: 408 when the client stopped sending,
/// 503 (which SDKs retry) when the memory budget stayed spent. The connection is closed:
/// the rest of the body is not read.
fn abandoned(
    reason: &'static str,
    format: Format,
    account: &str,
    rid: &str,
    version: http::Version,
) -> Response<Body> {
    let mut r = if reason == "busy" {
        error_response(&ApiError::service_unavailable(), format, account, rid)
    } else {
        respond(StatusCode::REQUEST_TIMEOUT, None, Vec::new(), rid)
    };
    if version < http::Version::HTTP_2 {
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Serves one API request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let rid = request_id();
    let account = app.broker.config.account_id.clone();
    if req.method() != Method::POST {
        let body = b"<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n".to_vec();
        return Ok(respond(StatusCode::FORBIDDEN, None, body, &rid));
    }
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type == "application/x-www-form-urlencoded" {
        return Ok(sts_request(&app, req, &rid).await);
    }
    let op = Operation::from_target(&target);
    let Some(format) = Format::from_content_type(&content_type) else {
        // Not an AWS JSON or CBOR request: answer as AWS does for unknown protocols.
        if target.contains('.') {
            return Ok(respond(
                StatusCode::NOT_FOUND,
                None,
                b"<UnknownOperationException/>\n".to_vec(),
                &rid,
            ));
        }
        let body = b"<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n".to_vec();
        return Ok(respond(StatusCode::FORBIDDEN, None, body, &rid));
    };
    let Some(op) = op else {
        return Ok(error_response(
            &ApiError::unknown_operation(),
            format,
            &account,
            &rid,
        ));
    };
    // The memory budget: the request declares the most it may need (its body, decoded,
    // and a GetRecords answer) but holds only what has arrived, so a client that stalls or
    // trickles its body holds (almost) nothing and cannot starve the others.
    let length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n.min(MAX_BODY_BYTES as u64));
    let declared = length.unwrap_or(MAX_BODY_BYTES as u64);
    let answer = if op == Operation::GetRecords {
        ANSWER_FACTOR * app.broker.config.limits.largest_get_records_bytes()
    } else {
        0
    };
    let reservation = app.budget.open(DECODE_FACTOR * declared + answer);
    let (parts, body) = req.into_parts();
    let http_config = &app.broker.config.http;
    let body = match read_body(body, &reservation, http_config).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Ok(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                Vec::new(),
                &rid,
            ))
        }
        Err(BodyError::Abandoned(reason)) => {
            app.broker
                .metrics
                .requests_abandoned
                .get_or_create(&crate::metrics::AbandonLabels { reason })
                .inc();
            tracing::debug!(reason, operation = op.name(), "request abandoned");
            return Ok(abandoned(reason, format, &account, &rid, parts.version));
        }
        Err(BodyError::Broken) => {
            return Ok(error_response(
                &ApiError::serialization(),
                format,
                &account,
                &rid,
            ));
        }
    };
    if answer > 0 {
        reservation.grow(answer).await;
    }
    let started = Instant::now();
    let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let head = RequestHead {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        authority,
        headers: &parts.headers,
    };
    let result = match app.auth.authenticate(&head, &body) {
        Ok(principal) => api::dispatch(&app.broker, &principal, op, format, &body).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let resp = match result {
        Ok(Reply::Body(bytes)) => {
            app.broker
                .metrics
                .observe_request(op.name(), "success", elapsed);
            with_body(
                StatusCode::OK,
                Some(format.content_type()),
                Body::Left(FullBody::new(Bytes::from(bytes), Some(reservation))),
                &rid,
            )
        }
        Ok(Reply::Stream(frames)) => {
            app.broker
                .metrics
                .observe_request(op.name(), "success", elapsed);
            with_body(
                StatusCode::OK,
                Some("application/vnd.amazon.eventstream"),
                Body::Right(ChannelBody {
                    frames,
                    in_flight: None,
                }),
                &rid,
            )
        }
        Err(e) => {
            let resp = error_response(&e, format, &account, &rid);
            app.broker
                .metrics
                .observe_request(op.name(), result_label(&e, resp.status()), elapsed);
            resp
        }
    };
    Ok(resp)
}

/// Serves an STS (AWS Query) request on the API port.
async fn sts_request(app: &App, req: Request<Incoming>, rid: &str) -> Response<Body> {
    let xml =
        |a: crate::auth::sts::Answer| respond(a.status, Some("text/xml"), a.body.into_bytes(), rid);
    let Some(sts) = &app.sts else {
        return xml(crate::auth::sts::Answer {
            status: StatusCode::BAD_REQUEST,
            body: format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>InvalidAction</Code>\n    <Message>STS is off on this broker: authentication is off (auth.anonymous)</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n"
            ),
        });
    };
    let reservation = app.budget.open(DECODE_FACTOR * 64 * 1024);
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &reservation, &app.broker.config.http).await {
        Ok(b) if b.len() <= 64 * 1024 => b,
        Ok(_) | Err(BodyError::TooLarge) => {
            return respond(StatusCode::PAYLOAD_TOO_LARGE, None, Vec::new(), rid)
        }
        Err(_) => return respond(StatusCode::REQUEST_TIMEOUT, None, Vec::new(), rid),
    };
    let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let head = RequestHead {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        authority,
        headers: &parts.headers,
    };
    xml(sts.handle(&head, &body, rid))
}

/// Serves one admin request.
pub async fn handle_admin(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let rid = request_id();
    let text = |status, body: &str| {
        respond(
            status,
            Some("text/plain; charset=utf-8"),
            body.as_bytes().to_vec(),
            &rid,
        )
    };
    Ok(match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/metrics") => {
            let m = &app.broker.metrics;
            m.inflight_bytes.set(app.budget.held() as i64);
            m.inflight_requests
                .set(app.budget.open_reservations() as i64);
            for stream in app.broker.streams() {
                for shard in stream.shards.read().await.all.values() {
                    shard
                        .metrics
                        .storage_bytes
                        .set(shard.log.disk_bytes() as i64);
                }
            }
            let mut r = text(StatusCode::OK, &app.broker.metrics.encode());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => {
            if app.ready.load(Ordering::Acquire) && !app.broker.cancel.is_cancelled() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (Method::POST, "/test/clock/advance") if app.broker.clock.is_adjustable() => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            match serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["seconds"].as_f64())
            {
                Some(s) if s >= 0.0 => {
                    app.broker.clock.advance((s * 1000.0) as i64);
                    text(StatusCode::OK, "advanced\n")
                }
                _ => text(StatusCode::BAD_REQUEST, "expected {\"seconds\": N}\n"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

/// The connection builder for the API listeners: HTTP/1.1 and h2c (or h2 over TLS), with
/// the limits of `[http]`.
fn connection_builder(http: &HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.idle_timeout)
        .max_buf_size(http.h1_max_buf_size)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(http.h2_max_concurrent_streams)
        .initial_stream_window_size(http.h2_stream_window)
        .initial_connection_window_size(http.h2_connection_window)
        .max_header_list_size(http.h2_max_header_list_size)
        .keep_alive_interval(http.h2_keepalive_interval)
        .keep_alive_timeout(http.h2_keepalive_interval);
    builder
}

/// Accepts connections on `listener` until `stop` is cancelled, serving each with `svc`;
/// then waits for in-flight requests up to the grace period.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<App>,
    stop: CancellationToken,
    svc: F,
) where
    F: Fn(Arc<App>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let http = app.broker.config.http.clone();
    let builder = connection_builder(&http);
    let slots = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
    let connections = TaskTracker::new();
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            app.broker.metrics.connections_rejected.inc();
            if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    limit = http.max_connections,
                    "connection limit reached; closing new connections"
                );
                last_full_warning = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            builder: builder.clone(),
            stop: stop.clone(),
            idle_timeout: http.idle_timeout,
        };
        let svc = svc.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            let metrics = conn.app.broker.metrics.clone();
            metrics.connections_open.inc();
            match tls {
                None => conn.run(stream, svc).await,
                Some(acceptor) => {
                    // The handshake runs in the connection's task so a slow client cannot
                    // stall accept.
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(s)) => conn.run(s, svc).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            metrics.connections_open.dec();
        });
    }
    drop(listener);
    connections.close();
    let grace = app.broker.config.shutdown_grace;
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the grace period"
        );
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    stop: CancellationToken,
    idle_timeout: Duration,
}

impl Connection {
    /// Serves the connection until it ends: the client closes it, it is idle (no request
    /// in flight, no bytes either way) for `idle_timeout`, or shutdown begins (in-flight
    /// requests finish first: HTTP/1.1 closes after the current response, HTTP/2 sends
    /// GOAWAY).
    async fn run<I, F, Fut>(self, io: I, svc: F)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(Arc<App>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: io,
            activity: activity.clone(),
        });
        let app = self.app.clone();
        let seen = activity.clone();
        let service = service_fn(move |req| {
            let guard = seen.begin();
            let fut = svc(app.clone(), req);
            async move {
                let mut r = fut.await;
                if let Ok(resp) = &mut r {
                    if let Body::Right(stream) = resp.body_mut() {
                        stream.in_flight = Some(guard);
                        return r;
                    }
                }
                drop(guard);
                r
            }
        });
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = false;
        let check =
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut tick = tokio::time::interval(check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tick.tick() => {
                    if activity.in_flight() == 0 && activity.idle_for() >= self.idle_timeout {
                        if closing {
                            // Asked to close an idle period ago and still open: drop it.
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        activity.touch();
                    }
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are being handled.
#[derive(Debug)]
struct Activity {
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// Milliseconds since the process's first call (a cheap, monotonic clock for idleness).
fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Activity {
    fn new() -> Activity {
        Activity {
            last_ms: AtomicU64::new(monotonic_ms()),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(monotonic_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request being handled on a connection.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A connection's transport, noting every read and write that moves bytes.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
