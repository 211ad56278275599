//! Failures as one clear line and an exit code scripts can trust.

use std::fmt;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// Exit code: the operation failed.
pub(crate) const FAILED: u8 = 1;
/// Exit code: bad usage (an unknown flag, a value out of range).
pub(crate) const USAGE: u8 = 2;
/// Exit code: the stream (or shard, or consumer) does not exist.
pub(crate) const NOT_FOUND: u8 = 3;
/// Exit code: the endpoint could not be reached.
pub(crate) const UNREACHABLE: u8 = 4;
/// Exit code: part of the work failed (records not delivered) or did not settle in time.
pub(crate) const PARTIAL: u8 = 5;

/// A failure of a command.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The exit code.
    pub(crate) code: u8,
    /// The line printed (after `riffle: `).
    pub(crate) message: String,
}

impl CliError {
    /// A failure with an explicit code.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// A failed operation.
    pub(crate) fn failed(message: impl Into<String>) -> CliError {
        CliError::new(FAILED, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// What to do about a Kinesis error type, if anything useful can be said.
fn hint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ResourceNotFoundException" => "check the name with `riffle stream list`",
        "ResourceInUseException" => "wait until the stream is ACTIVE (`riffle stream describe`)",
        "LimitExceededException" => "a Kinesis limit was reached; wait or ask for a higher limit",
        "ProvisionedThroughputExceededException" => {
            "the shard is over its rate; slow down or add shards (`riffle stream reshard`)"
        }
        "ValidationException" | "InvalidArgumentException" => "check the values passed",
        "UnrecognizedClientException" | "InvalidSignatureException" => {
            "check the credentials (AWS_ACCESS_KEY_ID / --profile)"
        }
        "AccessDeniedException" => "the credentials are not allowed to do this",
        "ExpiredTokenException" => "the session credentials expired; refresh them",
        _ => return None,
    })
}

/// Turns an SDK error into a failure for `endpoint`: the Kinesis error type, its message
/// and a hint, or why the endpoint could not be reached.
pub(crate) fn from_sdk<E, R>(what: &str, endpoint: &str, e: SdkError<E, R>) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match &e {
        // Not a network failure: the request could not be built or signed (most often, no
        // usable credentials).
        SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() => CliError::failed(format!(
            "{what}: the request could not be signed or sent: {} (check the credentials: \
             AWS_ACCESS_KEY_ID / AWS_PROFILE / --profile)",
            source_text(&e)
        )),
        SdkError::DispatchFailure(d) => {
            let why = if d.is_timeout() {
                "timed out".to_owned()
            } else {
                source_text(&e)
            };
            CliError::new(
                UNREACHABLE,
                format!(
                    "cannot reach {endpoint}: {why} (is the broker running? start one with \
                     `cargo run --release -p riffle-broker -- --allow-anonymous`, or pass --endpoint)"
                ),
            )
        }
        SdkError::TimeoutError(_) => CliError::new(
            UNREACHABLE,
            format!("{what}: no answer from {endpoint} in time"),
        ),
        SdkError::ServiceError(s) => {
            let err = s.err();
            let kind = err.code().unwrap_or("UnknownError");
            let msg = err.message().unwrap_or_default();
            let code = if kind == "ResourceNotFoundException" {
                NOT_FOUND
            } else {
                FAILED
            };
            let mut line = format!("{what}: {kind}: {msg}");
            if let Some(h) = hint(kind) {
                line.push_str(&format!(" ({h})"));
            }
            CliError::new(code, line)
        }
        _ => CliError::failed(format!("{what}: {}", source_text(&e))),
    }
}

/// The innermost cause's text, where the useful words are (e.g. "Connection refused").
fn source_text(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}
