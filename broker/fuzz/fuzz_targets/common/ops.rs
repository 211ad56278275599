//! Which input type each operation decodes its body into: the mapping `api::dispatch` uses.
//! The match is exhaustive, so an operation added to the broker without being added here
//! fails the fuzz build (and so CI) instead of going unfuzzed.

use riffle_broker::api::ops::{
    account, consumers, policies, records, reshard, streams, subscribe, tags,
};
use riffle_broker::api::Operation;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Something done with an operation's input type.
pub trait WithInput {
    fn run<T: DeserializeOwned + Debug>(&mut self);
}

/// The operation picked by one byte of fuzz input.
pub fn pick(byte: u8) -> Operation {
    Operation::ALL[usize::from(byte) % Operation::ALL.len()]
}

pub fn with_input(op: Operation, f: &mut impl WithInput) {
    use Operation::*;
    match op {
        CreateStream => f.run::<streams::CreateStreamInput>(),
        DeleteStream => f.run::<streams::DeleteStreamInput>(),
        DescribeStream => f.run::<streams::DescribeStreamInput>(),
        DescribeStreamSummary => f.run::<streams::StreamRefInput>(),
        ListStreams => f.run::<streams::ListStreamsInput>(),
        ListShards => f.run::<streams::ListShardsInput>(),
        IncreaseStreamRetentionPeriod | DecreaseStreamRetentionPeriod => {
            f.run::<streams::RetentionInput>()
        }
        EnableEnhancedMonitoring | DisableEnhancedMonitoring => f.run::<streams::MonitoringInput>(),
        StartStreamEncryption | StopStreamEncryption => f.run::<streams::EncryptionInput>(),
        UpdateStreamMode => f.run::<streams::UpdateStreamModeInput>(),
        UpdateMaxRecordSize => f.run::<streams::UpdateMaxRecordSizeInput>(),
        UpdateStreamWarmThroughput => f.run::<streams::UpdateWarmThroughputInput>(),
        DescribeLimits | DescribeAccountSettings => f.run::<account::NoInput>(),
        UpdateAccountSettings => f.run::<account::UpdateAccountSettingsInput>(),
        AddTagsToStream => f.run::<tags::AddTagsInput>(),
        RemoveTagsFromStream => f.run::<tags::RemoveTagsInput>(),
        ListTagsForStream => f.run::<tags::ListTagsInput>(),
        TagResource => f.run::<tags::TagResourceInput>(),
        UntagResource => f.run::<tags::UntagResourceInput>(),
        ListTagsForResource => f.run::<tags::ListTagsForResourceInput>(),
        PutRecord => f.run::<records::PutRecordInput>(),
        PutRecords => f.run::<records::PutRecordsInput>(),
        GetShardIterator => f.run::<records::GetShardIteratorInput>(),
        GetRecords => f.run::<records::GetRecordsInput>(),
        SplitShard => f.run::<reshard::SplitShardInput>(),
        MergeShards => f.run::<reshard::MergeShardsInput>(),
        UpdateShardCount => f.run::<reshard::UpdateShardCountInput>(),
        RegisterStreamConsumer => f.run::<consumers::RegisterInput>(),
        DescribeStreamConsumer | DeregisterStreamConsumer => f.run::<consumers::ConsumerRefInput>(),
        ListStreamConsumers => f.run::<consumers::ListInput>(),
        SubscribeToShard => f.run::<subscribe::SubscribeInput>(),
        PutResourcePolicy => f.run::<policies::PutInput>(),
        GetResourcePolicy | DeleteResourcePolicy => f.run::<policies::ResourceInput>(),
    }
}

/// The target header names the operation; it must round-trip through its name.
pub fn check_target(op: Operation) {
    let target = format!("{}{}", riffle_broker::api::TARGET_PREFIX, op.name());
    assert_eq!(Operation::from_target(&target), Some(op));
}
