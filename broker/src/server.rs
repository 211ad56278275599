//! Listeners and the request pipeline — read this file top to bottom to follow a request.
//!
//! ```text
//! TCP accept → hyper (HTTP/1.1 or h2c prior knowledge, detected per connection)
//!   → method / content type (JSON or CBOR) / X-Amz-Target checks
//!   → body, bounded in size
//!   → authentication (the `Authenticator` seam; accept-all until security lands)
//!   → api::dispatch → handler(&Broker, Input) → shard → storage
//!   → response: JSON or CBOR (the request's format) body, an event stream, or a Kinesis error, x-amzn-RequestId, Date (added by hyper)
//!   → metrics: count and latency per operation and result
//! ```
//!
//! The admin listener serves `/metrics`, `/healthz`, `/readyz` and, with `--test-clock`,
//! `POST /test/clock/advance`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::{self, Format, Operation, Reply};
use crate::broker::Broker;

/// A response body: complete, or an event stream fed by a subscription task.
pub type Body = http_body_util::Either<Full<Bytes>, ChannelBody>;

/// A streaming body whose frames arrive on a channel; it ends when the sender is dropped.
#[derive(Debug)]
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|frame| frame.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Largest request body accepted (a 10 MiB record, base64-encoded, with room for keys).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Who made a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The access key id the request was signed with, if any.
    pub access_key: Option<String>,
}

/// Decides whether a request may proceed. The security work replaces [`AcceptAll`] with a
/// SigV4 verifier and policy check; nothing else in the pipeline changes.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Authenticates a request to `op` with these headers and body.
    fn authenticate(
        &self,
        op: Operation,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError>;
}

/// The default: any request, signed with any credentials or none, is accepted.
#[derive(Debug, Default)]
pub struct AcceptAll;

impl Authenticator for AcceptAll {
    fn authenticate(
        &self,
        _: Operation,
        headers: &HeaderMap,
        _: &[u8],
    ) -> Result<Principal, ApiError> {
        let access_key = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .map(str::to_owned);
        Ok(Principal { access_key })
    }
}

/// Everything a request needs.
#[derive(Debug)]
pub struct App {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The in-flight memory budget, in KiB permits (`max_inflight_bytes`).
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// The authentication step.
    pub auth: Box<dyn Authenticator>,
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
        Body::Left(Full::new(Bytes::from(body))),
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
    // Reserve memory for the body (and for a GetRecords answer) before reading anything:
    // under a burst, requests wait here instead of piling up in memory.
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(MAX_BODY_BYTES, |n| n.min(MAX_BODY_BYTES));
    let answer = if op == Operation::GetRecords {
        2 * app.broker.config.limits.largest_get_records_bytes() as usize
    } else {
        0
    };
    let kib = ((declared + answer) / 1024 + 1) as u32;
    let _budget = match app.inflight.clone().acquire_many_owned(kib).await {
        Ok(p) => p,
        Err(_) => {
            return Ok(error_response(
                &ApiError::Domain(crate::error::Error::Storage(std::io::Error::other(
                    "shutting down",
                ))),
                format,
                &account,
                &rid,
            ))
        }
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Ok(respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    Vec::new(),
                    &rid,
                ));
            }
            return Ok(error_response(
                &ApiError::serialization(),
                format,
                &account,
                &rid,
            ));
        }
    };
    let started = Instant::now();
    let result = match app.auth.authenticate(op, &parts.headers, &body) {
        Ok(_principal) => api::dispatch(&app.broker, op, format, &body).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let resp = match result {
        Ok(Reply::Body(bytes)) => {
            app.broker
                .metrics
                .observe_request(op.name(), "success", elapsed);
            respond(StatusCode::OK, Some(format.content_type()), bytes, &rid)
        }
        Ok(Reply::Stream(frames)) => {
            app.broker
                .metrics
                .observe_request(op.name(), "success", elapsed);
            with_body(
                StatusCode::OK,
                Some("application/vnd.amazon.eventstream"),
                Body::Right(ChannelBody(frames)),
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
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = svc.clone();
        let service = service_fn(move |req| svc(app.clone(), req));
        let Some(acceptor) = tls.clone() else {
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            continue;
        };
        // The handshake runs in the connection's task so a slow client cannot stall accept.
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = app.broker.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the grace period"
        );
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
