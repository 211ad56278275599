//! `riffle stream …`: administration through the Kinesis control plane.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{
    ScalingType, Shard, StreamDescriptionSummary, StreamMode, StreamModeDetails, StreamStatus,
};
use riffle_core::{HashKey, HashKeyRange};
use serde_json::{json, Value};

use crate::args::{CreateArgs, StreamCommand};
use crate::context::Context;
use crate::error::{from_sdk, CliError, PARTIAL};

type Result<T> = std::result::Result<T, CliError>;

/// Runs one `stream` subcommand.
pub(crate) async fn run(ctx: &Context, cmd: StreamCommand) -> Result<()> {
    match cmd {
        StreamCommand::Create(a) => create(ctx, a).await,
        StreamCommand::List => list(ctx).await,
        StreamCommand::Describe { stream } => describe(ctx, &stream).await,
        StreamCommand::Delete {
            stream,
            force,
            no_wait,
        } => delete(ctx, &stream, force, no_wait).await,
        StreamCommand::Reshard {
            stream,
            shards,
            timeout,
        } => reshard(ctx, &stream, shards, timeout).await,
        StreamCommand::Split { stream, shard, at } => split(ctx, &stream, &shard, at).await,
        StreamCommand::Merge {
            stream,
            shard,
            adjacent,
        } => merge(ctx, &stream, &shard, &adjacent).await,
        StreamCommand::Retention { stream, hours } => retention(ctx, &stream, hours).await,
        StreamCommand::Tag {
            stream,
            add,
            remove,
        } => tag(ctx, &stream, add, remove).await,
    }
}

/// `KEY=VALUE` into its parts.
fn key_value(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| CliError::new(2, format!("tag {s:?} is not KEY=VALUE")))?;
    Ok((k.to_owned(), v.to_owned()))
}

async fn summary(ctx: &Context, stream: &str) -> Result<StreamDescriptionSummary> {
    let out = ctx
        .kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| from_sdk("DescribeStreamSummary", &ctx.endpoint, e))?;
    out.stream_description_summary
        .ok_or_else(|| CliError::failed("DescribeStreamSummary answered without a summary"))
}

/// Polls until the stream is ACTIVE (or gone, with `gone`), printing status changes.
async fn wait_for(ctx: &Context, stream: &str, gone: bool, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut last: Option<String> = None;
    loop {
        let status = match ctx
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
        {
            Ok(o) => o
                .stream_description_summary
                .map(|s| s.stream_status.as_str().to_owned()),
            Err(e) => {
                let err = from_sdk("DescribeStreamSummary", &ctx.endpoint, e);
                if gone && err.code == crate::error::NOT_FOUND {
                    None
                } else {
                    return Err(err);
                }
            }
        };
        let shown = status.clone().unwrap_or_else(|| "DELETED".to_owned());
        if last.as_deref() != Some(&shown) {
            ctx.out.event(
                &format!("{stream}: {shown} ({:.1} s)", started.elapsed().as_secs_f64()),
                &json!({ "stream": stream, "status": shown, "elapsed_s": started.elapsed().as_secs_f64() }),
            );
            last = Some(shown);
        }
        match status.as_deref() {
            None if gone => return Ok(()),
            Some("ACTIVE") if !gone => return Ok(()),
            _ => {}
        }
        if started.elapsed() > limit {
            return Err(CliError::new(
                PARTIAL,
                format!(
                    "{stream} is still {} after {:?}",
                    last.unwrap_or_default(),
                    limit
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create(ctx: &Context, a: CreateArgs) -> Result<()> {
    let mut req = ctx.kinesis.create_stream().stream_name(&a.stream);
    if a.on_demand {
        req = req.stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .expect("stream mode set"),
        );
    } else {
        req = req.shard_count(a.shards as i32);
    }
    for t in &a.tags {
        let (k, v) = key_value(t)?;
        req = req.tags(k, v);
    }
    req.send()
        .await
        .map_err(|e| from_sdk("CreateStream", &ctx.endpoint, e))?;
    if a.no_wait {
        return Ok(());
    }
    wait_for(ctx, &a.stream, false, Duration::from_secs(300)).await?;
    if let Some(h) = a.retention_hours {
        set_retention(ctx, &a.stream, h).await?;
    }
    Ok(())
}

async fn list(ctx: &Context) -> Result<()> {
    let mut rows = Vec::new();
    let mut pages = ctx.kinesis.list_streams().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ListStreams", &ctx.endpoint, e))?;
        for name in page.stream_names() {
            let s = summary(ctx, name).await?;
            rows.push(json!({
                "stream": name,
                "status": s.stream_status.as_str(),
                "mode": s.stream_mode_details.as_ref().map(|m| m.stream_mode.as_str()),
                "open_shards": s.open_shard_count,
                "retention_hours": s.retention_period_hours,
                "consumers": s.consumer_count,
            }));
        }
    }
    ctx.out.rows(
        &[
            ("stream", "STREAM"),
            ("status", "STATUS"),
            ("mode", "MODE"),
            ("open_shards", "SHARDS"),
            ("retention_hours", "RETENTION_H"),
            ("consumers", "CONSUMERS"),
        ],
        &rows,
    );
    Ok(())
}

/// Every shard of the stream, open and closed.
pub(crate) async fn shards(ctx: &Context, stream: &str) -> Result<Vec<Shard>> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => ctx.kinesis.list_shards().next_token(t),
            None => ctx.kinesis.list_shards().stream_name(stream),
        };
        let out = req
            .send()
            .await
            .map_err(|e| from_sdk("ListShards", &ctx.endpoint, e))?;
        all.extend(out.shards.unwrap_or_default());
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(all),
        }
    }
}

/// A shard's hash key range.
pub(crate) fn range_of(s: &Shard) -> Option<HashKeyRange> {
    let r = s.hash_key_range()?;
    HashKeyRange::new(
        r.starting_hash_key().parse().ok()?,
        r.ending_hash_key().parse().ok()?,
    )
}

/// A shard's share of the hash-key space, percent.
fn share(r: &HashKeyRange) -> f64 {
    let width = (r.end.0 - r.start.0) as f64 + 1.0;
    (width / 2f64.powi(128) * 100.0 * 100.0).round() / 100.0
}

fn shard_row(s: &Shard) -> Value {
    let seq = s.sequence_number_range();
    json!({
        "shard": s.shard_id(),
        "parent": s.parent_shard_id(),
        "adjacent_parent": s.adjacent_parent_shard_id(),
        "share_percent": range_of(s).map(|r| share(&r)),
        "state": if seq.and_then(|r| r.ending_sequence_number()).is_some() { "closed" } else { "open" },
        "starting_hash_key": s.hash_key_range().map(|r| r.starting_hash_key()),
        "ending_hash_key": s.hash_key_range().map(|r| r.ending_hash_key()),
        "starting_sequence_number": seq.map(|r| r.starting_sequence_number()),
        "ending_sequence_number": seq.and_then(|r| r.ending_sequence_number()),
    })
}

async fn describe(ctx: &Context, stream: &str) -> Result<()> {
    let s = summary(ctx, stream).await?;
    // Consumers are part of the picture, but a key that may describe the stream need not be
    // allowed to list them: then they are shown as unknown rather than failing the command.
    let consumers: Option<Vec<String>> = match ctx
        .kinesis
        .list_stream_consumers()
        .stream_arn(s.stream_arn())
        .send()
        .await
    {
        Ok(out) => Some(
            out.consumers()
                .iter()
                .map(|c| format!("{} ({})", c.consumer_name(), c.consumer_status().as_str()))
                .collect(),
        ),
        Err(e) => {
            use aws_sdk_kinesis::error::ProvideErrorMetadata;
            if e.code() == Some("AccessDeniedException") {
                None
            } else {
                return Err(from_sdk("ListStreamConsumers", &ctx.endpoint, e));
            }
        }
    };
    let all = shards(ctx, stream).await?;
    let rows: Vec<Value> = all.iter().map(shard_row).collect();
    let info = json!({
        "stream": s.stream_name(),
        "arn": s.stream_arn(),
        "status": s.stream_status.as_str(),
        "mode": s.stream_mode_details.as_ref().map(|m| m.stream_mode.as_str()),
        "retention_hours": s.retention_period_hours,
        "open_shards": s.open_shard_count,
        "encryption": s.encryption_type.as_ref().map(|e| e.as_str()),
        "consumers": consumers,
        "created": s.stream_creation_timestamp.fmt(aws_smithy_types::date_time::Format::DateTime).ok(),
        "shards": rows,
    });
    if ctx.out.is_table() {
        ctx.out.object(
            &[
                ("stream", "Stream"),
                ("arn", "ARN"),
                ("status", "Status"),
                ("mode", "Mode"),
                ("retention_hours", "Retention (h)"),
                ("open_shards", "Open shards"),
                ("encryption", "Encryption"),
                ("consumers", "Consumers"),
                ("created", "Created"),
            ],
            &info,
        );
        println!();
        ctx.out.rows(
            &[
                ("shard", "SHARD"),
                ("parent", "PARENT"),
                ("share_percent", "SHARE_%"),
                ("state", "STATE"),
                ("starting_sequence_number", "FIRST_SEQUENCE"),
                ("ending_sequence_number", "LAST_SEQUENCE"),
            ],
            &rows,
        );
    } else {
        ctx.out.json(&info);
    }
    Ok(())
}

async fn delete(ctx: &Context, stream: &str, force: bool, no_wait: bool) -> Result<()> {
    ctx.kinesis
        .delete_stream()
        .stream_name(stream)
        .enforce_consumer_deletion(force)
        .send()
        .await
        .map_err(|e| from_sdk("DeleteStream", &ctx.endpoint, e))?;
    if no_wait {
        return Ok(());
    }
    wait_for(ctx, stream, true, Duration::from_secs(300)).await
}

/// The next UpdateShardCount target toward `want` from `open` shards: Kinesis allows at
/// most double and at least half (rounded up) in one step.
pub(crate) fn next_step(open: u32, want: u32) -> u32 {
    want.clamp(open.div_ceil(2), open.saturating_mul(2))
}

async fn reshard(ctx: &Context, stream: &str, want: u32, limit: Duration) -> Result<()> {
    if want == 0 {
        return Err(CliError::new(2, "--shards must be at least 1"));
    }
    let mut step = 0;
    loop {
        let s = summary(ctx, stream).await?;
        if s.stream_status != StreamStatus::Active {
            wait_for(ctx, stream, false, limit).await?;
            continue;
        }
        let open = s.open_shard_count.max(0) as u32;
        if open == want {
            ctx.out.event(
                &format!("{stream}: {open} open shards"),
                &json!({ "stream": stream, "open_shards": open, "done": true }),
            );
            return Ok(());
        }
        let target = next_step(open, want);
        step += 1;
        ctx.out.event(
            &format!("{stream}: step {step}: {open} -> {target} shards (UpdateShardCount)"),
            &json!({ "stream": stream, "step": step, "from": open, "to": target }),
        );
        ctx.kinesis
            .update_shard_count()
            .stream_name(stream)
            .target_shard_count(target as i32)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .map_err(|e| from_sdk("UpdateShardCount", &ctx.endpoint, e))?;
        wait_for(ctx, stream, false, limit).await?;
    }
}

async fn split(ctx: &Context, stream: &str, shard: &str, at: Option<String>) -> Result<()> {
    let at = match at {
        Some(k) => k,
        None => {
            let all = shards(ctx, stream).await?;
            let s = all
                .iter()
                .find(|s| s.shard_id() == shard)
                .ok_or_else(|| {
                    CliError::new(
                        crate::error::NOT_FOUND,
                        format!("shard {shard} is not in stream {stream} (see `riffle stream describe {stream}`)"),
                    )
                })?;
            let r = range_of(s).ok_or_else(|| CliError::failed("shard without a hash range"))?;
            // The first key of the upper half.
            HashKey(r.midpoint().0 + 1).to_string()
        }
    };
    ctx.kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key(&at)
        .send()
        .await
        .map_err(|e| from_sdk("SplitShard", &ctx.endpoint, e))?;
    ctx.out.event(
        &format!("{stream}: splitting {shard} at {at}"),
        &json!({ "stream": stream, "split": shard, "at": at }),
    );
    wait_for(ctx, stream, false, Duration::from_secs(300)).await
}

async fn merge(ctx: &Context, stream: &str, shard: &str, adjacent: &str) -> Result<()> {
    ctx.kinesis
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(shard)
        .adjacent_shard_to_merge(adjacent)
        .send()
        .await
        .map_err(|e| from_sdk("MergeShards", &ctx.endpoint, e))?;
    ctx.out.event(
        &format!("{stream}: merging {shard} and {adjacent}"),
        &json!({ "stream": stream, "merge": [shard, adjacent] }),
    );
    wait_for(ctx, stream, false, Duration::from_secs(300)).await
}

async fn set_retention(ctx: &Context, stream: &str, hours: u32) -> Result<()> {
    let current = summary(ctx, stream).await?.retention_period_hours as u32;
    if hours > current {
        ctx.kinesis
            .increase_stream_retention_period()
            .stream_name(stream)
            .retention_period_hours(hours as i32)
            .send()
            .await
            .map_err(|e| from_sdk("IncreaseStreamRetentionPeriod", &ctx.endpoint, e))?;
    } else if hours < current {
        ctx.kinesis
            .decrease_stream_retention_period()
            .stream_name(stream)
            .retention_period_hours(hours as i32)
            .send()
            .await
            .map_err(|e| from_sdk("DecreaseStreamRetentionPeriod", &ctx.endpoint, e))?;
    }
    Ok(())
}

async fn retention(ctx: &Context, stream: &str, hours: u32) -> Result<()> {
    set_retention(ctx, stream, hours).await?;
    ctx.out.event(
        &format!("{stream}: retention {hours} h"),
        &json!({ "stream": stream, "retention_hours": hours }),
    );
    Ok(())
}

async fn tag(ctx: &Context, stream: &str, add: Vec<String>, remove: Vec<String>) -> Result<()> {
    if !add.is_empty() {
        let mut req = ctx.kinesis.add_tags_to_stream().stream_name(stream);
        for t in &add {
            let (k, v) = key_value(t)?;
            req = req.tags(k, v);
        }
        req.send()
            .await
            .map_err(|e| from_sdk("AddTagsToStream", &ctx.endpoint, e))?;
    }
    if !remove.is_empty() {
        ctx.kinesis
            .remove_tags_from_stream()
            .stream_name(stream)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(|e| from_sdk("RemoveTagsFromStream", &ctx.endpoint, e))?;
    }
    let mut rows = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = ctx
            .kinesis
            .list_tags_for_stream()
            .stream_name(stream)
            .set_exclusive_start_tag_key(start.clone())
            .send()
            .await
            .map_err(|e| from_sdk("ListTagsForStream", &ctx.endpoint, e))?;
        for t in out.tags() {
            rows.push(json!({ "key": t.key(), "value": t.value() }));
            start = Some(t.key().to_owned());
        }
        if !out.has_more_tags() {
            break;
        }
    }
    ctx.out.rows(&[("key", "KEY"), ("value", "VALUE")], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stay_within_double_and_half() {
        assert_eq!(next_step(4, 16), 8);
        assert_eq!(next_step(8, 16), 16);
        assert_eq!(next_step(16, 3), 8);
        assert_eq!(next_step(5, 1), 3);
        assert_eq!(next_step(3, 2), 2);
        assert_eq!(next_step(1, 1), 1);
    }

    #[test]
    fn shares_are_percentages() {
        let half = HashKeyRange::even_split(2);
        assert_eq!(share(&half[0]), 50.0);
        assert_eq!(share(&HashKeyRange::FULL), 100.0);
    }
}
