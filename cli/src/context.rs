//! Where the commands go: endpoint, region and credentials, resolved once.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::Credentials;

use crate::args::{Global, OutputFormat};
use crate::output::Printer;

/// The endpoint used when neither a flag nor the environment names one.
pub(crate) const LOCAL_ENDPOINT: &str = "http://127.0.0.1:4567";

/// What every command works with.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The Kinesis client.
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    /// The endpoint URL.
    pub(crate) endpoint: String,
    /// How results are printed.
    pub(crate) out: Printer,
    /// The resolved AWS configuration (credentials, region), for clients of other services.
    pub(crate) sdk: aws_config::SdkConfig,
}

/// The endpoint: the flag, then `AWS_ENDPOINT_URL_KINESIS`, then `AWS_ENDPOINT_URL`, then a
/// local broker.
pub(crate) fn endpoint(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_KINESIS").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| LOCAL_ENDPOINT.to_owned())
}

/// Whether `endpoint` is on this machine (placeholder credentials are fine there).
fn is_local(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

impl Context {
    /// Resolves the global options into a client.
    pub(crate) async fn new(g: &Global) -> Context {
        let endpoint = endpoint(g.endpoint.as_deref());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(p) = &g.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &g.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let mut sdk = loader.load().await;
        if sdk.region().is_none() {
            sdk = sdk.into_builder().region(Region::new("us-east-1")).build();
        }
        if is_local(&endpoint) && no_credentials_configured(g.profile.is_some()) {
            sdk = sdk
                .into_builder()
                .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
                    Credentials::new("riffle", "riffle", None, None, "riffle-cli-local"),
                ))
                .build();
        }
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let format = g.output.unwrap_or_else(OutputFormat::auto);
        Context {
            kinesis,
            endpoint,
            out: Printer::new(format),
            sdk,
        }
    }

    /// A DynamoDB client with the same credentials and region, at
    /// `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`, else AWS's own endpoint (never
    /// the Kinesis endpoint).
    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
            .ok()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|e| !e.is_empty());
        let mut config = aws_sdk_dynamodb::config::Builder::from(&self.sdk);
        config.set_endpoint_url(endpoint);
        let config = config.build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

/// Whether no source of credentials is configured: no keys, web identity or container
/// credentials in the environment, no profile named, and no AWS config or credentials file.
/// Then a local endpoint gets placeholder credentials. (Asking the provider chain instead
/// would reach its last source, the EC2 instance metadata service, which on a laptop times
/// out and on some networks answers 403 — neither means "configured".) A source that is
/// configured but fails, say a web identity exchange that is refused, is not "none": its
/// error must reach the user, not be papered over with placeholder keys.
fn no_credentials_configured(profile_flag: bool) -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if profile_flag
        || [
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_PROFILE",
        ]
        .iter()
        .any(|k| set(k))
    {
        return false;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
            .is_some_and(|p| p.is_file())
    };
    !file("AWS_CONFIG_FILE", "config") && !file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints() {
        assert!(is_local("http://127.0.0.1:4567"));
        assert!(is_local("https://localhost:4568/"));
        assert!(!is_local("https://kinesis.us-east-1.amazonaws.com"));
    }
}
