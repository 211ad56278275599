//! Tags on streams (AddTagsToStream & co.) and on any resource by ARN (TagResource & co.).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::ops::streams::validate_tags;
use crate::api::validate::{self, Validator};
use crate::api::wire::{List, TagMap};
use crate::api::{check_stream_ref, stream_ref};
use crate::broker::{Broker, Stream, StreamSettings};
use crate::error::Error;

/// Tags allowed on one stream.
const MAX_TAGS: usize = 50;

/// AWS's tag pattern, `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`: Unicode letters, separators
/// (spaces) and numbers, and `_ . : / = + - @`. (`%` is not in it.)
fn valid_tag_chars(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
    })
}

fn check_chars<'a>(mut all: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    if all.any(|s| !valid_tag_chars(s)) {
        return Err(ApiError::invalid_argument(
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . : / = + - @.",
        ));
    }
    Ok(())
}

/// The tag map of the stream, or of its registered consumer `consumer`.
fn tag_map<'a>(
    s: &'a mut StreamSettings,
    consumer: Option<&str>,
) -> Option<&'a mut BTreeMap<String, String>> {
    match consumer {
        None => Some(&mut s.tags),
        Some(name) => s
            .consumers
            .iter_mut()
            .find(|c| c.name == name)
            .map(|c| &mut c.tags),
    }
}

/// ResourceNotFound for a consumer that was deregistered while the request ran.
pub(crate) fn consumer_gone(stream: &Stream, consumer: Option<&str>) -> ApiError {
    Error::ConsumerNotFound {
        consumer: format!("{} of stream {}", consumer.unwrap_or_default(), stream.arn),
    }
    .into()
}

/// Adds tags to a stream, or to one of its consumers, with the same checks and limit.
async fn add_tags(
    broker: &Broker,
    stream: &Stream,
    consumer: Option<&str>,
    tags: BTreeMap<String, String>,
) -> Result<(), ApiError> {
    // Lengths were checked as model constraints (`validate_tags`) before the lookup.
    check_chars(tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))?;
    let _control = broker.control().await;
    {
        let mut s = stream.settings.lock();
        let map = tag_map(&mut s, consumer).ok_or_else(|| consumer_gone(stream, consumer))?;
        let total = map
            .keys()
            .chain(tags.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if total > MAX_TAGS {
            let what = match consumer {
                None => format!("stream {}", stream.name),
                Some(c) => format!("consumer {c} of stream {}", stream.name),
            };
            // AWS answers InvalidArgumentException here, not LimitExceededException.
            return Err(ApiError::invalid_argument(format!(
                "Failed to add tags to {what} under account {} because a given stream cannot have more than {MAX_TAGS} tags associated with it.",
                broker.config.account_id
            )));
        }
        map.extend(tags);
    }
    broker.persist().await?;
    Ok(())
}

/// Removes tags from a stream, or from one of its consumers.
async fn remove_tags(
    broker: &Broker,
    stream: &Stream,
    consumer: Option<&str>,
    keys: &[String],
) -> Result<(), ApiError> {
    let _control = broker.control().await;
    {
        let mut s = stream.settings.lock();
        let map = tag_map(&mut s, consumer).ok_or_else(|| consumer_gone(stream, consumer))?;
        for k in keys {
            map.remove(k);
        }
    }
    broker.persist().await?;
    Ok(())
}

/// AddTagsToStream input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tags: Option<TagMap>,
}

/// AddTagsToStream.
pub async fn add_tags_to_stream(broker: Arc<Broker>, input: AddTagsInput) -> Result<(), ApiError> {
    // Every member's model constraints in one message, before the stream is looked up.
    let (stream_name, stream_arn) = (&input.stream_name, &input.stream_arn);
    let mut v = Validator::new();
    check_stream_ref(&mut v, stream_name.as_deref(), stream_arn.as_deref());
    validate_tags(&mut v, input.tags.as_ref(), true, 200);
    v.finish()?;
    let stream = stream_ref(&broker, stream_name.as_deref(), stream_arn.as_deref())?;
    add_tags(
        &broker,
        &stream,
        None,
        input.tags.unwrap_or_default().into_map(),
    )
    .await
}

/// RemoveTagsFromStream input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoveTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tag_keys: Option<List<String>>,
}

fn validate_keys(v: &mut Validator, path: &str, list: Option<&List<String>>) {
    let keys = list.map(|l| &l[..]);
    let render = || {
        validate::shown(
            '[',
            keys.unwrap_or_default().iter().cloned(),
            list.is_some_and(List::truncated),
            ']',
        )
    };
    v.size(path, list.map(List::total), render, true, 1, 50);
    if keys
        .unwrap_or_default()
        .iter()
        .any(|k| k.is_empty() || k.chars().count() > 128)
    {
        v.fail(
            &format!("'{}'", render()),
            path,
            "Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]",
        );
    }
}

/// RemoveTagsFromStream.
pub async fn remove_tags_from_stream(
    broker: Arc<Broker>,
    input: RemoveTagsInput,
) -> Result<(), ApiError> {
    let mut v = Validator::new();
    validate_keys(&mut v, "tagKeys", input.tag_keys.as_ref());
    let (stream_name, stream_arn) = (&input.stream_name, &input.stream_arn);
    check_stream_ref(&mut v, stream_name.as_deref(), stream_arn.as_deref());
    v.finish()?;
    let stream = stream_ref(&broker, stream_name.as_deref(), stream_arn.as_deref())?;
    check_chars(input.tag_keys.iter().flatten().map(String::as_str))?;
    remove_tags(
        &broker,
        &stream,
        None,
        input.tag_keys.as_deref().unwrap_or_default(),
    )
    .await
}

/// A tag on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

/// ListTagsForStream input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    exclusive_start_tag_key: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    limit: Option<i64>,
}

/// ListTagsForStream output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsOutput {
    tags: Vec<Tag>,
    has_more_tags: bool,
}

/// ListTagsForStream.
pub async fn list_tags_for_stream(
    broker: Arc<Broker>,
    input: ListTagsInput,
) -> Result<ListTagsOutput, ApiError> {
    let mut v = Validator::new();
    v.int("limit", input.limit, false, 1, 50);
    v.string(
        "exclusiveStartTagKey",
        input.exclusive_start_tag_key.as_deref(),
        false,
        None,
        1,
        128,
    );
    let (stream_name, stream_arn) = (&input.stream_name, &input.stream_arn);
    check_stream_ref(&mut v, stream_name.as_deref(), stream_arn.as_deref());
    v.finish()?;
    let stream = stream_ref(&broker, stream_name.as_deref(), stream_arn.as_deref())?;
    let tags = stream.settings.lock().tags.clone();
    let limit = input.limit.unwrap_or(50) as usize;
    let after = input.exclusive_start_tag_key;
    let mut it = tags
        .into_iter()
        .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a));
    let page: Vec<Tag> = it
        .by_ref()
        .take(limit)
        .map(|(key, value)| Tag {
            key,
            value: Some(value),
        })
        .collect();
    Ok(ListTagsOutput {
        tags: page,
        has_more_tags: it.next().is_some(),
    })
}

/// The stream (and consumer name, if any) a resource ARN names.
/// The stream an ARN names, and the consumer's name when it names a registered consumer.
pub(crate) fn resource(
    broker: &Broker,
    arn: &str,
) -> Result<(Arc<Stream>, Option<String>), ApiError> {
    if let Some(c) = riffle_core::ConsumerArn::parse(arn) {
        let stream = stream_ref(broker, None, Some(&c.stream.to_string()))?;
        let known = stream
            .settings
            .lock()
            .consumers
            .iter()
            .any(|x| x.name == c.consumer);
        if !known {
            return Err(Error::ConsumerNotFound {
                consumer: arn.to_owned(),
            }
            .into());
        }
        return Ok((stream, Some(c.consumer)));
    }
    if riffle_core::StreamArn::parse(arn).is_none() {
        return Err(ApiError::invalid_argument(format!(
            "Invalid ResourceARN: {arn}"
        )));
    }
    Ok((stream_ref(broker, None, Some(arn))?, None))
}

/// TagResource input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceInput {
    tags: Option<TagMap>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
}

/// TagResource.
pub async fn tag_resource(broker: Arc<Broker>, input: TagResourceInput) -> Result<(), ApiError> {
    let mut v = Validator::new();
    validate_tags(&mut v, input.tags.as_ref(), true, 50);
    v.string(
        "resourceARN",
        input.resource_arn.as_deref(),
        true,
        None,
        1,
        2048,
    );
    v.finish()?;
    let (stream, consumer) = resource(&broker, input.resource_arn.as_deref().unwrap_or_default())?;
    add_tags(
        &broker,
        &stream,
        consumer.as_deref(),
        input.tags.unwrap_or_default().into_map(),
    )
    .await
}

/// UntagResource input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceInput {
    tag_keys: Option<List<String>>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
}

/// UntagResource.
pub async fn untag_resource(
    broker: Arc<Broker>,
    input: UntagResourceInput,
) -> Result<(), ApiError> {
    let mut v = Validator::new();
    validate_keys(&mut v, "tagKeys", input.tag_keys.as_ref());
    v.string(
        "resourceARN",
        input.resource_arn.as_deref(),
        true,
        None,
        1,
        2048,
    );
    v.finish()?;
    let (stream, consumer) = resource(&broker, input.resource_arn.as_deref().unwrap_or_default())?;
    let keys = input.tag_keys.unwrap_or_default();
    remove_tags(&broker, &stream, consumer.as_deref(), &keys).await
}

/// ListTagsForResource input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
}

/// ListTagsForResource output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceOutput {
    tags: Vec<Tag>,
}

/// ListTagsForResource.
pub async fn list_tags_for_resource(
    broker: Arc<Broker>,
    input: ListTagsForResourceInput,
) -> Result<ListTagsForResourceOutput, ApiError> {
    let mut v = Validator::new();
    v.string(
        "resourceARN",
        input.resource_arn.as_deref(),
        true,
        None,
        1,
        2048,
    );
    v.finish()?;
    let (stream, consumer) = resource(&broker, input.resource_arn.as_deref().unwrap_or_default())?;
    let tags = {
        let s = stream.settings.lock();
        match consumer {
            None => s.tags.clone(),
            Some(n) => s
                .consumers
                .iter()
                .find(|c| c.name == n)
                .map(|c| c.tags.clone())
                .unwrap_or_default(),
        }
    };
    Ok(ListTagsForResourceOutput {
        tags: tags
            .into_iter()
            .map(|(key, value)| Tag {
                key,
                value: Some(value),
            })
            .collect(),
    })
}

crate::api::stream_target!(AddTagsInput, RemoveTagsInput, ListTagsInput);

macro_rules! resource_target {
    ($($t:ty),*) => {
        $(impl crate::api::Targeted for $t {
            fn target(&self) -> crate::api::Target<'_> {
                crate::api::Target::Arn(self.resource_arn.as_deref())
            }
        })*
    };
}
resource_target!(
    TagResourceInput,
    UntagResourceInput,
    ListTagsForResourceInput
);
