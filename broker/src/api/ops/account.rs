//! Account-wide operations: DescribeLimits, Describe/UpdateAccountSettings.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::validate::Validator;
use crate::api::wire::epoch_seconds;
use crate::broker::{Broker, StreamMode};

/// An input with no members.
#[derive(Debug, Deserialize)]
pub struct NoInput {}

/// DescribeLimits output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLimitsOutput {
    shard_limit: u32,
    open_shard_count: u32,
    on_demand_stream_count: u32,
    on_demand_stream_count_limit: u32,
}

/// DescribeLimits.
pub async fn describe_limits(
    broker: Arc<Broker>,
    _: NoInput,
) -> Result<DescribeLimitsOutput, ApiError> {
    let on_demand = broker
        .streams()
        .iter()
        .filter(|s| s.settings.lock().mode == StreamMode::OnDemand)
        .count() as u32;
    Ok(DescribeLimitsOutput {
        shard_limit: broker.config.streams.shard_limit,
        open_shard_count: broker.open_shard_count().await,
        on_demand_stream_count: on_demand,
        on_demand_stream_count_limit: broker.config.streams.on_demand_stream_limit,
    })
}

/// The billing commitment as DescribeAccountSettings reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommitmentOut {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    earliest_allowed_end_at: Option<f64>,
}

/// Describe/UpdateAccountSettings output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountSettingsOutput {
    minimum_throughput_billing_commitment: CommitmentOut,
}

fn settings_out(broker: &Broker) -> AccountSettingsOutput {
    let a = broker.account.lock();
    AccountSettingsOutput {
        minimum_throughput_billing_commitment: CommitmentOut {
            status: if a.commitment_enabled {
                "ENABLED"
            } else {
                "DISABLED"
            },
            started_at: a.commitment_started_ms.map(epoch_seconds),
            ended_at: a.commitment_ended_ms.map(epoch_seconds),
            earliest_allowed_end_at: a
                .commitment_started_ms
                .map(|s| epoch_seconds(s + 24 * 3_600_000)),
        },
    }
}

/// DescribeAccountSettings.
pub async fn describe_account_settings(
    broker: Arc<Broker>,
    _: NoInput,
) -> Result<AccountSettingsOutput, ApiError> {
    Ok(settings_out(&broker))
}

/// The requested commitment.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommitmentIn {
    status: Option<String>,
}

/// UpdateAccountSettings input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAccountSettingsInput {
    minimum_throughput_billing_commitment: Option<CommitmentIn>,
}

/// UpdateAccountSettings.
pub async fn update_account_settings(
    broker: Arc<Broker>,
    input: UpdateAccountSettingsInput,
) -> Result<AccountSettingsOutput, ApiError> {
    let mut v = Validator::new();
    v.required(
        "minimumThroughputBillingCommitment",
        input.minimum_throughput_billing_commitment.as_ref(),
    );
    if let Some(c) = &input.minimum_throughput_billing_commitment {
        v.one_of(
            "minimumThroughputBillingCommitment.status",
            c.status.as_deref(),
            true,
            &["ENABLED", "DISABLED"],
        );
    }
    v.finish()?;
    let enable = input
        .minimum_throughput_billing_commitment
        .and_then(|c| c.status)
        .as_deref()
        == Some("ENABLED");
    let _control = broker.control().await;
    {
        let now = broker.clock.now_ms();
        let mut a = broker.account.lock();
        if enable && !a.commitment_enabled {
            a.commitment_started_ms = Some(now);
            a.commitment_ended_ms = None;
        } else if !enable && a.commitment_enabled {
            a.commitment_ended_ms = Some(now);
        }
        a.commitment_enabled = enable;
    }
    broker.persist().await?;
    Ok(settings_out(&broker))
}

impl crate::api::Targeted for NoInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Account
    }
}

impl crate::api::Targeted for UpdateAccountSettingsInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Account
    }
}
