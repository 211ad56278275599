//! The Kinesis API: operation names, request decoding, dispatch and response encoding.
//!
//! A request names its operation in `X-Amz-Target: Kinesis_20131202.<Operation>`. The body is
//! decoded into the operation's input type, the handler runs against the [`Broker`], and the
//! output is encoded in the request's format. Handlers are plain `async fn(&Arc<Broker>,
//! Input) -> Result<Output, ApiError>`, testable without HTTP.
//!
//! Operations are grouped by the resource they act on (one file per group rather than per
//! operation: most are a dozen lines and share their lookups).

pub mod cbor;
pub mod error;
pub mod ops;
pub mod rates;
pub mod validate;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{authorize, Principal};
use crate::broker::{Broker, Stream};
use crate::error::Error;
use error::ApiError;
use validate::Validator;

/// The target prefix of every Kinesis operation.
pub const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// The body format of a request, and so of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-amz-json-1.1`.
    Json,
    /// `application/x-amz-cbor-1.1`.
    Cbor,
}

impl Format {
    /// The format a `Content-Type` names, if it is one the API speaks.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        match ct {
            "application/x-amz-json-1.1" => Some(Format::Json),
            "application/x-amz-cbor-1.1" => Some(Format::Cbor),
            _ => None,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/x-amz-json-1.1",
            Format::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    fn decode<I: DeserializeOwned>(self, body: &[u8]) -> Result<I, ApiError> {
        match self {
            Format::Json => wire::decode_json(body),
            Format::Cbor => cbor::decode(body),
        }
    }

    /// Encodes an output or error value.
    pub fn encode<O: Serialize>(self, output: &O) -> Vec<u8> {
        match self {
            Format::Json => serde_json::to_vec(output).expect("outputs serialize"),
            Format::Cbor => cbor::encode(&serde_json::to_value(output).expect("outputs serialize")),
        }
    }
}

/// The resource an operation acts on, as its input names it (for authorization).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A stream, by name or ARN.
    Stream {
        /// `StreamName`.
        name: Option<&'a str>,
        /// `StreamARN`.
        arn: Option<&'a str>,
    },
    /// A registered consumer, by ARN or by stream ARN and name.
    Consumer {
        /// `ConsumerARN`.
        arn: Option<&'a str>,
        /// `StreamARN`.
        stream_arn: Option<&'a str>,
        /// `ConsumerName`.
        name: Option<&'a str>,
    },
    /// Any resource by ARN (`ResourceARN`).
    Arn(Option<&'a str>),
    /// The stream a shard iterator (GetRecords) or pagination token (ListShards) names.
    Token {
        /// The stream, when the input names it.
        stream: Option<&'a str>,
        /// The iterator or token.
        token: Option<&'a str>,
        /// Whether it is a shard iterator (else a ListShards token).
        iterator: bool,
    },
    /// The account (ListStreams, DescribeLimits, account settings).
    Account,
}

/// Inputs say which resource they act on.
pub trait Targeted {
    /// The resource.
    fn target(&self) -> Target<'_>;
}

/// Implements [`Targeted`] for inputs with `stream_name` and `stream_arn` members.
macro_rules! stream_target {
    ($($t:ty),* $(,)?) => {
        $(impl crate::api::Targeted for $t {
            fn target(&self) -> crate::api::Target<'_> {
                crate::api::Target::Stream {
                    name: self.stream_name.as_deref(),
                    arn: self.stream_arn.as_deref(),
                }
            }
        })*
    };
}
pub(crate) use stream_target;

/// The ARN a policy is evaluated against for `target`; `None` when the input names no
/// resource that exists in any form (a forged iterator, a missing stream name): the handler
/// then refuses the request itself, on no resource.
pub fn resource_arn(broker: &Broker, target: Target<'_>) -> Option<String> {
    Some(match target {
        Target::Stream { arn: Some(a), .. } => a.to_owned(),
        // An ARN naming no stream or consumer is refused by the handler (InvalidArgument)
        // before anything is read, so the caller learns the ARN is malformed, not "denied".
        Target::Arn(Some(a))
            if riffle_core::StreamArn::parse(a).is_none()
                && riffle_core::ConsumerArn::parse(a).is_none() =>
        {
            return None
        }
        Target::Arn(Some(a)) => a.to_owned(),
        Target::Stream { name: Some(n), .. } => broker.stream_arn(n),
        Target::Consumer { arn: Some(a), .. } => a.to_owned(),
        Target::Consumer {
            stream_arn: Some(s),
            name,
            ..
        } => format!("{s}/consumer/{}:*", name.unwrap_or("*")),
        Target::Token {
            stream: Some(s), ..
        } => s.to_owned(),
        Target::Token {
            token: Some(t),
            iterator,
            ..
        } => {
            let stream = if iterator {
                broker.iterators.decode(t).map(|it| it.stream)
            } else {
                ops::streams::token_stream(broker, t)
            };
            broker.stream_arn(&stream?)
        }
        Target::Account => format!(
            "arn:aws:kinesis:{}:{}:*",
            broker.config.region, broker.config.account_id
        ),
        _ => return None,
    })
}

/// What an operation answers with.
#[derive(Debug)]
pub enum Reply {
    /// A complete JSON body (empty for operations without output).
    Body(Vec<u8>),
    /// An event stream: each item is one encoded event-stream frame.
    Stream(tokio::sync::mpsc::Receiver<bytes::Bytes>),
}

macro_rules! operations {
    ($($name:ident => $runner:ident $handler:path),* $(,)?) => {
        /// Every operation the broker serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $name,
            )*
        }

        impl Operation {
            /// The operation named by an `X-Amz-Target` header value.
            pub fn from_target(target: &str) -> Option<Operation> {
                match target.strip_prefix(TARGET_PREFIX)? {
                    $(stringify!($name) => Some(Operation::$name),)*
                    _ => None,
                }
            }

            /// The operation's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$name => stringify!($name),)*
                }
            }

            /// Every operation.
            pub const ALL: &'static [Operation] = &[$(Operation::$name),*];
        }

        /// Decodes `body`, checks that `principal` may run the operation on the resource it
        /// names, runs it and encodes its output in the request's format.
        pub async fn dispatch(broker: &Arc<Broker>, principal: &Principal, op: Operation, format: Format, body: &[u8]) -> Result<Reply, ApiError> {
            match op {
                $(Operation::$name => $runner(broker, principal, op, format, body, $handler).await,)*
            }
        }
    };
}

operations! {
    CreateStream => run ops::streams::create_stream,
    DeleteStream => run ops::streams::delete_stream,
    DescribeStream => run ops::streams::describe_stream,
    DescribeStreamSummary => run ops::streams::describe_stream_summary,
    ListStreams => run ops::streams::list_streams,
    ListShards => run ops::streams::list_shards,
    IncreaseStreamRetentionPeriod => run ops::streams::increase_retention,
    DecreaseStreamRetentionPeriod => run ops::streams::decrease_retention,
    EnableEnhancedMonitoring => run ops::streams::enable_monitoring,
    DisableEnhancedMonitoring => run ops::streams::disable_monitoring,
    StartStreamEncryption => run ops::streams::start_encryption,
    StopStreamEncryption => run ops::streams::stop_encryption,
    UpdateStreamMode => run ops::streams::update_stream_mode,
    UpdateMaxRecordSize => run ops::streams::update_max_record_size,
    UpdateStreamWarmThroughput => run ops::streams::update_warm_throughput,
    DescribeLimits => run ops::account::describe_limits,
    DescribeAccountSettings => run ops::account::describe_account_settings,
    UpdateAccountSettings => run ops::account::update_account_settings,
    AddTagsToStream => run ops::tags::add_tags_to_stream,
    RemoveTagsFromStream => run ops::tags::remove_tags_from_stream,
    ListTagsForStream => run ops::tags::list_tags_for_stream,
    TagResource => run ops::tags::tag_resource,
    UntagResource => run ops::tags::untag_resource,
    ListTagsForResource => run ops::tags::list_tags_for_resource,
    PutRecord => run ops::records::put_record,
    PutRecords => run ops::records::put_records,
    GetShardIterator => run ops::records::get_shard_iterator,
    GetRecords => run ops::records::get_records,
    SplitShard => run ops::reshard::split_shard,
    MergeShards => run ops::reshard::merge_shards,
    UpdateShardCount => run ops::reshard::update_shard_count,
    RegisterStreamConsumer => run ops::consumers::register,
    DescribeStreamConsumer => run ops::consumers::describe,
    ListStreamConsumers => run ops::consumers::list,
    DeregisterStreamConsumer => run ops::consumers::deregister,
    SubscribeToShard => run_stream ops::subscribe::subscribe,
    PutResourcePolicy => run ops::policies::put,
    GetResourcePolicy => run ops::policies::get,
    DeleteResourcePolicy => run ops::policies::delete,
}

/// Decodes an operation's input and checks that `principal` may run it.
fn decode_authorized<I: DeserializeOwned + Targeted>(
    broker: &Broker,
    principal: &Principal,
    op: Operation,
    format: Format,
    body: &[u8],
) -> Result<I, ApiError> {
    let cap = broker.config.limits.decode_item_cap();
    let input: I = wire::with_item_cap(cap, || format.decode(body))?;
    if principal.policies.is_some() {
        if let Some(resource) = resource_arn(broker, input.target()) {
            let policy = broker.resource_policy(&resource);
            authorize(principal, op.name(), &resource, policy.as_deref())?;
        }
    }
    if broker.rates.limit(op).is_some() {
        let stream = target_stream(broker, input.target());
        if !broker.rates.admit(op, stream.as_deref()) {
            let account = &broker.config.account_id;
            return Err(Error::LimitExceeded(rates::message(stream.as_deref(), account)).into());
        }
    }
    Ok(input)
}

/// The name of the stream `target` names, if any: what a per-stream rate is counted on
/// and what its LimitExceededException message names.
fn target_stream(broker: &Broker, target: Target<'_>) -> Option<String> {
    let from_arn = |a: &str| {
        riffle_core::StreamArn::parse(a)
            .map(|s| s.stream)
            .or_else(|| riffle_core::ConsumerArn::parse(a).map(|c| c.stream.stream))
    };
    match target {
        Target::Stream { name: Some(n), .. } => Some(n.to_owned()),
        Target::Stream { arn: Some(a), .. } | Target::Arn(Some(a)) => from_arn(a),
        Target::Consumer { arn: Some(a), .. } => from_arn(a),
        Target::Consumer {
            stream_arn: Some(a),
            ..
        } => from_arn(a),
        Target::Token {
            stream: Some(s), ..
        } => Some(s.to_owned()),
        Target::Token {
            token: Some(t),
            iterator: false,
            ..
        } => ops::streams::token_stream(broker, t),
        _ => None,
    }
}

async fn run<I, O, F, Fut>(
    broker: &Arc<Broker>,
    principal: &Principal,
    op: Operation,
    format: Format,
    body: &[u8],
    handler: F,
) -> Result<Reply, ApiError>
where
    I: DeserializeOwned + Targeted,
    O: Serialize,
    F: FnOnce(Arc<Broker>, I) -> Fut,
    Fut: Future<Output = Result<O, ApiError>>,
{
    let input: I = decode_authorized(broker, principal, op, format, body)?;
    let output = handler(broker.clone(), input).await?;
    // Operations without output answer with an empty body, as AWS does.
    let bytes = match format {
        Format::Json => {
            let b = serde_json::to_vec(&output)
                .map_err(|e| Error::Storage(std::io::Error::other(e)))?;
            if b == b"null" {
                Vec::new()
            } else {
                b
            }
        }
        Format::Cbor => {
            let v = serde_json::to_value(&output)
                .map_err(|e| Error::Storage(std::io::Error::other(e)))?;
            if v.is_null() {
                Vec::new()
            } else {
                cbor::encode(&v)
            }
        }
    };
    Ok(Reply::Body(bytes))
}

async fn run_stream<I, F, Fut>(
    broker: &Arc<Broker>,
    principal: &Principal,
    op: Operation,
    format: Format,
    body: &[u8],
    handler: F,
) -> Result<Reply, ApiError>
where
    I: DeserializeOwned + Targeted,
    F: FnOnce(Arc<Broker>, I) -> Fut,
    Fut: Future<Output = Result<tokio::sync::mpsc::Receiver<bytes::Bytes>, ApiError>>,
{
    // Event payloads are JSON whatever the request format, as AWS sends them.
    let input: I = decode_authorized(broker, principal, op, format, body)?;
    Ok(Reply::Stream(handler(broker.clone(), input).await?))
}

/// Finds the stream a request names by `StreamName` or `StreamARN`, validating both in
/// the order AWS does (after the operation's own members).
pub fn check_stream_ref(v: &mut Validator, name: Option<&str>, arn: Option<&str>) {
    if arn.is_none() {
        v.name("streamName", name, true);
    } else {
        v.name("streamName", name, false);
        v.stream_arn("streamARN", arn, false);
    }
}

/// The stream named by `StreamName` or `StreamARN` (already validated).
pub fn stream_ref(
    broker: &Broker,
    name: Option<&str>,
    arn: Option<&str>,
) -> Result<Arc<Stream>, ApiError> {
    if let Some(arn) = arn {
        let parsed = riffle_core::StreamArn::parse(arn).ok_or_else(|| Error::StreamNotFound {
            stream: arn.to_owned(),
        })?;
        if parsed.account != broker.config.account_id || parsed.region != broker.config.region {
            return Err(Error::StreamNotFound {
                stream: parsed.stream,
            }
            .into());
        }
        if let Some(n) = name {
            if n != parsed.stream {
                return Err(ApiError::invalid_argument(format!(
                    "StreamName {n} does not match the stream in StreamARN {arn}."
                )));
            }
        }
        return Ok(broker.stream(&parsed.stream)?);
    }
    Ok(broker.stream(name.unwrap_or_default())?)
}
