//! The one place where failures become Kinesis error responses: `__type`, HTTP status and
//! message text, as AWS sends them.

use http::StatusCode;

use crate::error::Error;

/// A failed request, as the client will see it.
#[derive(Debug)]
pub enum ApiError {
    /// A domain error from the broker's inner layers.
    Domain(Error),
    /// An error decided at the wire level (decoding, validation, unknown operation).
    Wire {
        /// The `__type`.
        kind: &'static str,
        /// The message, if any.
        message: Option<String>,
        /// Whether the message key is `Message` (type-conversion errors) or `message`.
        capital: bool,
        /// The HTTP status.
        status: StatusCode,
    },
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Domain(e)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Domain(Error::Storage(e))
    }
}

/// A rendered error response.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    /// HTTP status.
    pub status: StatusCode,
    /// `__type`.
    pub kind: &'static str,
    /// Message text, if any.
    pub message: Option<String>,
    /// Use the `Message` key instead of `message`.
    pub capital: bool,
}

impl ApiError {
    fn wire(kind: &'static str, message: Option<String>) -> ApiError {
        ApiError::Wire {
            kind,
            message,
            capital: false,
            status: StatusCode::BAD_REQUEST,
        }
    }

    /// The body could not be parsed at all: no message, as AWS does.
    pub fn serialization() -> ApiError {
        ApiError::wire("SerializationException", None)
    }

    /// A field had the wrong type.
    pub fn serialization_msg(message: String) -> ApiError {
        ApiError::Wire {
            kind: "SerializationException",
            message: Some(message),
            capital: true,
            status: StatusCode::BAD_REQUEST,
        }
    }

    /// The broker could not take the request in time (its memory budget stayed spent):
    /// 503, which every SDK retries with backoff.
    pub fn service_unavailable() -> ApiError {
        ApiError::Wire {
            kind: "ServiceUnavailableException",
            message: Some("The broker is busy; retry the request.".to_owned()),
            capital: false,
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The target names no operation.
    pub fn unknown_operation() -> ApiError {
        ApiError::wire("UnknownOperationException", None)
    }

    /// A ValidationException with its full message.
    pub fn validation(message: String) -> ApiError {
        ApiError::wire("ValidationException", Some(message))
    }

    /// An InvalidArgumentException.
    pub fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::Domain(Error::InvalidArgument(message.into()))
    }

    /// Whether the request was throttled.
    pub fn is_throttle(&self) -> bool {
        matches!(
            self,
            ApiError::Domain(Error::Throttled { .. } | Error::LimitExceeded(_))
        )
    }

    /// Renders the error for the account `account`.
    pub fn render(&self, account: &str) -> Rendered {
        let (kind, message, capital, status) = match self {
            ApiError::Wire {
                kind,
                message,
                capital,
                status,
            } => (*kind, message.clone(), *capital, *status),
            ApiError::Domain(e) => {
                let (kind, message, status) = domain(e, account);
                (kind, message, false, status)
            }
        };
        Rendered {
            status,
            kind,
            message,
            capital,
        }
    }
}

fn domain(e: &Error, account: &str) -> (&'static str, Option<String>, StatusCode) {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        Error::StreamNotFound { stream } => (
            "ResourceNotFoundException",
            Some(format!(
                "Stream {stream} under account {account} not found."
            )),
            bad,
        ),
        Error::ShardDoesNotExist { stream, shard } => (
            "ResourceNotFoundException",
            Some(format!(
                "Shard {shard} in stream {stream} under account {account} does not exist"
            )),
            bad,
        ),
        Error::ShardNotFound { stream, shard } => (
            "ResourceNotFoundException",
            Some(format!(
                "Could not find shard {shard} in stream {stream} under account {account}."
            )),
            bad,
        ),
        Error::ConsumerNotFound { consumer } => (
            "ResourceNotFoundException",
            Some(format!(
                "Consumer {consumer} under account {account} not found."
            )),
            bad,
        ),
        // moto's text; no AWS capture of it was found.
        Error::ResourcePolicyNotFound { arn } => (
            "ResourceNotFoundException",
            Some(format!("No resource policy found for resource ARN {arn}.")),
            bad,
        ),
        Error::StreamExists { stream } => (
            "ResourceInUseException",
            Some(format!(
                "Stream {stream} under account {account} already exists."
            )),
            bad,
        ),
        Error::StreamNotActive { stream, status } => (
            "ResourceInUseException",
            Some(format!(
                "Stream {stream} under account {account} not ACTIVE, instead in state {status}"
            )),
            bad,
        ),
        Error::ResourceInUse(m) => ("ResourceInUseException", Some(m.clone()), bad),
        Error::LimitExceeded(m) => ("LimitExceededException", Some(m.clone()), bad),
        Error::InvalidArgument(m) => ("InvalidArgumentException", Some(m.clone()), bad),
        Error::Validation(m) => ("ValidationException", Some(m.clone()), bad),
        Error::Throttled { stream, shard } => (
            "ProvisionedThroughputExceededException",
            Some(throttle_message(stream, shard, account)),
            bad,
        ),
        Error::ExpiredIterator { issued_ms, now_ms } => (
            "ExpiredIteratorException",
            Some(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} \
                 which is further in the future than the tolerated delay of 300000 milliseconds.",
                java_date(*issued_ms),
                java_date(*now_ms)
            )),
            bad,
        ),
        Error::ExpiredNextToken(m) => ("ExpiredNextTokenException", Some(m.clone()), bad),
        Error::Seal(e) => seal_error(e),
        Error::Storage(io)
            if io
                .get_ref()
                .is_some_and(|e| e.is::<crate::storage::SealError>()) =>
        {
            let e = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<crate::storage::SealError>())
                .expect("checked above");
            seal_error(e)
        }
        Error::Storage(io) => {
            tracing::error!(error = %io, "storage failure while serving a request");
            ("InternalFailure", None, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Encryption-at-rest failures as the KMS exceptions Kinesis clients know: a key the
/// broker does not have is `KMSNotFoundException`, a key that does not open the records
/// sealed under its id is `KMSAccessDeniedException`. HTTP 400, as for every KMS error.
fn seal_error(e: &crate::storage::SealError) -> (&'static str, Option<String>, StatusCode) {
    use crate::storage::SealError;
    let bad = StatusCode::BAD_REQUEST;
    match e {
        SealError::MissingKey { key_id } => (
            "KMSNotFoundException",
            Some(format!(
                "Key {key_id} is not found: the broker's key ring (encryption.key_file, \
                 encryption.keys) has no key of this id."
            )),
            bad,
        ),
        SealError::WrongKey { key_id } => (
            "KMSAccessDeniedException",
            Some(format!(
                "Records encrypted under key {key_id} cannot be decrypted with the key the \
                 broker has under that id: it is not the key they were encrypted with."
            )),
            bad,
        ),
    }
}

/// The message of a per-shard throttle, also used per record in PutRecords.
pub fn throttle_message(stream: &str, shard: &str, account: &str) -> String {
    format!("Rate exceeded for shard {shard} in stream {stream} under account {account}.")
}

/// A time as Java's `Date.toString()` prints it in UTC: `Thu Jan 22 01:22:02 UTC 2015`.
fn java_date(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    // httpdate gives "Thu, 22 Jan 2015 01:22:02 GMT".
    let s = httpdate::fmt_http_date(t);
    let parts: Vec<&str> = s.split([' ', ',']).filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [wd, day, mon, year, time, _] => format!("{wd} {mon} {day} {time} UTC {year}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_format() {
        assert_eq!(java_date(1_421_889_722_000), "Thu Jan 22 01:22:02 UTC 2015");
    }

    #[test]
    fn not_found_text() {
        let r = ApiError::from(Error::StreamNotFound { stream: "s".into() }).render("000000000000");
        assert_eq!(r.kind, "ResourceNotFoundException");
        assert_eq!(
            r.message.unwrap(),
            "Stream s under account 000000000000 not found."
        );
    }
}
