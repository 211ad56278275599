//! Resource-based policies on streams and consumers (PutResourcePolicy, GetResourcePolicy,
//! DeleteResourcePolicy). A policy is stored with its resource and evaluated, together with
//! the caller's identity policies, on every request for that resource
//! ([`crate::auth::authorize`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::ops::tags::{consumer_gone, resource};
use crate::api::validate::Validator;
use crate::broker::{Broker, ResourcePolicy, StreamSettings};
use crate::error::Error;

/// The largest policy document accepted, in bytes (IAM's limit for resource-based policies
/// of most services; Kinesis documents none).
const MAX_POLICY_BYTES: usize = 20 * 1024;

/// The policy slot of the stream, or of its registered consumer `consumer`.
fn slot<'a>(
    s: &'a mut StreamSettings,
    consumer: Option<&str>,
) -> Option<&'a mut Option<ResourcePolicy>> {
    match consumer {
        None => Some(&mut s.resource_policy),
        Some(name) => s
            .consumers
            .iter_mut()
            .find(|c| c.name == name)
            .map(|c| &mut c.resource_policy),
    }
}

fn check_arn(v: &mut Validator, arn: Option<&str>) {
    v.string("resourceARN", arn, true, None, 1, 2048);
}

/// PutResourcePolicy input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    policy: Option<String>,
}

/// PutResourcePolicy: attaches (or replaces) the policy of a stream or consumer.
pub async fn put(broker: Arc<Broker>, input: PutInput) -> Result<(), ApiError> {
    let mut v = Validator::new();
    check_arn(&mut v, input.resource_arn.as_deref());
    v.required("policy", input.policy.as_ref());
    v.finish()?;
    let arn = input.resource_arn.unwrap_or_default();
    let text = input.policy.unwrap_or_default();
    let (stream, consumer) = resource(&broker, &arn)?;
    if text.len() > MAX_POLICY_BYTES {
        return Err(ApiError::invalid_argument(format!(
            "The resource policy is {} bytes long; at most {MAX_POLICY_BYTES} are allowed.",
            text.len()
        )));
    }
    let policy = ResourcePolicy::compile(&text)
        .map_err(|e| ApiError::invalid_argument(format!("Invalid resource policy: {e}.")))?;
    let _control = broker.control().await;
    {
        let mut s = stream.settings.lock();
        let slot = slot(&mut s, consumer.as_deref())
            .ok_or_else(|| consumer_gone(&stream, consumer.as_deref()))?;
        *slot = Some(policy);
    }
    broker.persist().await?;
    tracing::info!(resource = %arn, "resource policy attached");
    Ok(())
}

/// GetResourcePolicy and DeleteResourcePolicy input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
}

/// GetResourcePolicy output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetOutput {
    policy: String,
}

/// GetResourcePolicy: the policy as it was put, or `{}` when there is none.
pub async fn get(broker: Arc<Broker>, input: ResourceInput) -> Result<GetOutput, ApiError> {
    let mut v = Validator::new();
    check_arn(&mut v, input.resource_arn.as_deref());
    v.finish()?;
    let (stream, consumer) = resource(&broker, input.resource_arn.as_deref().unwrap_or_default())?;
    let mut s = stream.settings.lock();
    let slot = slot(&mut s, consumer.as_deref())
        .ok_or_else(|| consumer_gone(&stream, consumer.as_deref()))?;
    Ok(GetOutput {
        policy: slot
            .as_ref()
            .map_or_else(|| "{}".to_owned(), |p| p.text.clone()),
    })
}

/// DeleteResourcePolicy: removes the policy; ResourceNotFoundException when there is none.
pub async fn delete(broker: Arc<Broker>, input: ResourceInput) -> Result<(), ApiError> {
    let mut v = Validator::new();
    check_arn(&mut v, input.resource_arn.as_deref());
    v.finish()?;
    let arn = input.resource_arn.unwrap_or_default();
    let (stream, consumer) = resource(&broker, &arn)?;
    let _control = broker.control().await;
    {
        let mut s = stream.settings.lock();
        let slot = slot(&mut s, consumer.as_deref())
            .ok_or_else(|| consumer_gone(&stream, consumer.as_deref()))?;
        if slot.take().is_none() {
            return Err(Error::ResourcePolicyNotFound { arn }.into());
        }
    }
    broker.persist().await?;
    tracing::info!(resource = %arn, "resource policy deleted");
    Ok(())
}

macro_rules! resource_target {
    ($($t:ty),*) => {
        $(impl crate::api::Targeted for $t {
            fn target(&self) -> crate::api::Target<'_> {
                crate::api::Target::Arn(self.resource_arn.as_deref())
            }
        })*
    };
}
resource_target!(PutInput, ResourceInput);
