//! JSON request bodies: `api::wire::decode_json` into every operation's input type.
//!
//! Input: first byte picks the operation from `Operation::ALL`, the rest is the body. The
//! mapping below is the one `api::dispatch` uses; the match is exhaustive, so adding an
//! operation without adding it here fails to compile.
//!
//! Checks: decoding never panics; a body that decodes is a JSON object; an error renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_broker::api::error::ApiError;
use riffle_broker::api::ops::{account, records, reshard, streams, tags};
use riffle_broker::api::wire::decode_json;
use riffle_broker::api::Operation;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned + std::fmt::Debug>(body: &[u8]) {
    match decode_json::<T>(body) {
        Ok(input) => {
            // Accepted bodies are JSON objects (AWS rejects anything else). Lossy UTF-8:
            // serde_json does not validate UTF-8 inside members it skips (unknown fields), so
            // decode_json accepts such bytes there; they are not JSON, but harmless.
            let text = String::from_utf8_lossy(body);
            let v: serde_json::Value =
                serde_json::from_str(&text).expect("decode_json accepted invalid JSON");
            assert!(v.is_object(), "decode_json accepted a non-object: {v}");
            let _ = format!("{input:?}");
        }
        Err(e) => {
            assert!(
                matches!(e, ApiError::Wire { .. }),
                "decoding failed with a non-wire error: {e:?}"
            );
            let r = e.render("000000000000");
            assert_eq!(r.kind, "SerializationException");
        }
    }
}

fn decode_as(op: Operation, body: &[u8]) {
    use Operation::*;
    match op {
        CreateStream => decode::<streams::CreateStreamInput>(body),
        DeleteStream => decode::<streams::DeleteStreamInput>(body),
        DescribeStream => decode::<streams::DescribeStreamInput>(body),
        DescribeStreamSummary => decode::<streams::StreamRefInput>(body),
        ListStreams => decode::<streams::ListStreamsInput>(body),
        ListShards => decode::<streams::ListShardsInput>(body),
        IncreaseStreamRetentionPeriod | DecreaseStreamRetentionPeriod => {
            decode::<streams::RetentionInput>(body)
        }
        EnableEnhancedMonitoring | DisableEnhancedMonitoring => {
            decode::<streams::MonitoringInput>(body)
        }
        StartStreamEncryption | StopStreamEncryption => decode::<streams::EncryptionInput>(body),
        UpdateStreamMode => decode::<streams::UpdateStreamModeInput>(body),
        UpdateMaxRecordSize => decode::<streams::UpdateMaxRecordSizeInput>(body),
        UpdateStreamWarmThroughput => decode::<streams::UpdateWarmThroughputInput>(body),
        DescribeLimits | DescribeAccountSettings => decode::<account::NoInput>(body),
        UpdateAccountSettings => decode::<account::UpdateAccountSettingsInput>(body),
        AddTagsToStream => decode::<tags::AddTagsInput>(body),
        RemoveTagsFromStream => decode::<tags::RemoveTagsInput>(body),
        ListTagsForStream => decode::<tags::ListTagsInput>(body),
        TagResource => decode::<tags::TagResourceInput>(body),
        UntagResource => decode::<tags::UntagResourceInput>(body),
        ListTagsForResource => decode::<tags::ListTagsForResourceInput>(body),
        PutRecord => decode::<records::PutRecordInput>(body),
        PutRecords => decode::<records::PutRecordsInput>(body),
        GetShardIterator => decode::<records::GetShardIteratorInput>(body),
        GetRecords => decode::<records::GetRecordsInput>(body),
        SplitShard => decode::<reshard::SplitShardInput>(body),
        MergeShards => decode::<reshard::MergeShardsInput>(body),
        UpdateShardCount => decode::<reshard::UpdateShardCountInput>(body),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let op = Operation::ALL[usize::from(pick) % Operation::ALL.len()];
    // The target header names the operation; it must round-trip through its name.
    let target = format!("{}{}", riffle_broker::api::TARGET_PREFIX, op.name());
    assert_eq!(Operation::from_target(&target), Some(op));
    decode_as(op, body);
});
