//! A minimal Kinesis JSON client: one hyper connection pool, SigV4-signed `POST /` requests,
//! errors sorted into the names the report counts them by.
//!
//! Deliberately not the AWS SDK: the load generator must cost far less CPU per request than
//! the endpoint it measures, so bodies are prebuilt JSON and responses are parsed only as far
//! as a workload needs.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The JSON protocol's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The operation prefix of `X-Amz-Target`.
const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// How to reach and sign for an endpoint.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `http://host:port` of the endpoint.
    pub endpoint: String,
    /// Cleartext HTTP/2 with prior knowledge instead of HTTP/1.1.
    pub http2: bool,
    /// Region used in the signature's credential scope.
    pub region: String,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Why a call failed, in the words the report counts.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The endpoint answered with an error: the AWS `__type` (or `http_<status>` when the
    /// body names none) and the message.
    Api {
        /// HTTP status.
        status: u16,
        /// `__type` without its namespace, or `http_<status>`.
        kind: String,
        /// The message, if any.
        message: String,
    },
    /// The request never got an answer (connection refused or reset, protocol error).
    Transport(String),
    /// No answer within the timeout.
    Timeout,
    /// The answer was not the JSON the operation promises.
    Decode(String),
}

impl CallError {
    /// The name this error is counted under.
    pub fn kind(&self) -> String {
        match self {
            CallError::Api { kind, .. } => kind.clone(),
            CallError::Transport(_) => "transport".into(),
            CallError::Timeout => "timeout".into(),
            CallError::Decode(_) => "decode".into(),
        }
    }

    /// Whether this is throttling (Kinesis's per-shard limits or a service-level limit).
    pub fn is_throttle(&self) -> bool {
        matches!(self, CallError::Api { kind, .. }
            if kind == "ProvisionedThroughputExceededException"
                || kind == "LimitExceededException"
                || kind == "ThrottlingException")
    }

    /// Whether the endpoint does not implement the operation at all.
    pub fn is_unsupported(&self) -> bool {
        match self {
            CallError::Api {
                status,
                kind,
                message,
            } => {
                kind.contains("UnknownOperation")
                    || kind.contains("NotImplemented")
                    || *status == 501
                    || message.to_ascii_lowercase().contains("not yet implemented")
                    || message.to_ascii_lowercase().contains("not implemented")
            }
            _ => false,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Api {
                status,
                kind,
                message,
            } => write!(f, "{kind} (HTTP {status}): {message}"),
            CallError::Transport(e) => write!(f, "transport error: {e}"),
            CallError::Timeout => f.write_str("timed out"),
            CallError::Decode(e) => write!(f, "undecodable answer: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A Kinesis client over one connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Kinesis {
    http: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    identity: Identity,
    opts: ClientOptions,
}

impl fmt::Debug for Kinesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kinesis")
            .field("endpoint", &self.opts.endpoint)
            .field("http2", &self.opts.http2)
            .finish()
    }
}

impl Kinesis {
    /// A client for `opts.endpoint`.
    pub fn new(opts: ClientOptions) -> anyhow::Result<Kinesis> {
        let uri: Uri = format!("{}/", opts.endpoint.trim_end_matches('/')).parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// endpoints are supported (got {})",
            opts.endpoint
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new())
            .http2_only(opts.http2)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        let identity = Credentials::new(
            "AKIDRIFFLEBENCH",
            "riffle-bench-dummy-secret",
            None,
            None,
            "riffle-bench",
        )
        .into();
        Ok(Kinesis {
            http,
            uri,
            identity,
            opts,
        })
    }

    /// Sends one signed request for `op` with a JSON `body`; returns the answer's body.
    pub async fn call_raw(&self, op: &str, body: Bytes) -> Result<Bytes, CallError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("x-amz-target", format!("{TARGET_PREFIX}{op}"))
            .body(Full::new(body.clone()))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        self.sign(&mut req, &body)?;
        let send = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| CallError::Transport(error_chain(&e)))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Transport(error_chain(&e)))?
                .to_bytes();
            if status.is_success() {
                Ok(bytes)
            } else {
                Err(api_error(status.as_u16(), &bytes))
            }
        };
        match tokio::time::timeout(self.opts.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Sends `op` with a JSON `body` and returns the answer's body unread (an event stream).
    /// Only the response head is bounded by the request timeout.
    pub async fn call_stream(
        &self,
        op: &str,
        body: &Value,
    ) -> Result<hyper::body::Incoming, CallError> {
        let body =
            Bytes::from(serde_json::to_vec(body).map_err(|e| CallError::Decode(e.to_string()))?);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("x-amz-target", format!("{TARGET_PREFIX}{op}"))
            .body(Full::new(body.clone()))
            .map_err(|e| CallError::Transport(e.to_string()))?;
        self.sign(&mut req, &body)?;
        let resp = tokio::time::timeout(self.opts.timeout, self.http.request(req))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?
            .to_bytes();
        Err(api_error(status.as_u16(), &bytes))
    }

    /// Sends `op` with `body` serialized from JSON and decodes the answer as `T`.
    pub async fn call<T: DeserializeOwned>(&self, op: &str, body: &Value) -> Result<T, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Decode(e.to_string()))?;
        let resp = self.call_raw(op, Bytes::from(bytes)).await?;
        decode(&resp)
    }

    fn sign(&self, req: &mut Request<Full<Bytes>>, body: &[u8]) -> Result<(), CallError> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.opts.region)
            .name("kinesis")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::Transport(format!("signing: {e}")))?
            .into();
        let uri = req.uri().to_string();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| CallError::Transport(format!("signing: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| CallError::Transport(format!("signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

/// Decodes a JSON answer; an empty body decodes as `null`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        CallError::Decode(format!("{e}: {head}"))
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn api_error(status: u16, body: &[u8]) -> CallError {
    #[derive(Deserialize)]
    struct ErrBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let parsed: Option<ErrBody> = serde_json::from_slice(body).ok();
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let (kind, message) = match parsed {
        Some(ErrBody {
            kind: Some(k),
            message,
        }) => (
            k.rsplit('#').next().unwrap_or(&k).to_owned(),
            message.unwrap_or_default(),
        ),
        Some(ErrBody { message, .. }) => (format!("http_{status}"), message.unwrap_or(text)),
        None => {
            // Some servers answer unknown operations with XML or plain text.
            let kind = if text.contains("UnknownOperation") {
                "UnknownOperationException".to_owned()
            } else {
                format!("http_{status}")
            };
            (kind, text)
        }
    };
    CallError::Api {
        status,
        kind,
        message,
    }
}

/// Builds the JSON for a `StreamName`-addressed request.
pub fn stream_body(stream: &str, extra: Value) -> Value {
    let mut v = json!({ "StreamName": stream });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v
}
