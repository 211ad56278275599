//! Stream and consumer names, and the ARNs that embed them.

use std::fmt;

/// Whether `name` is a valid stream or consumer name: 1–128 of `[a-zA-Z0-9_.-]`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A validated stream name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// A stream name, if `name` is valid.
    pub fn new(name: &str) -> Option<StreamName> {
        is_valid_name(name).then(|| StreamName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parts of a stream ARN: `arn:<partition>:kinesis:<region>:<account>:stream/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamArn {
    /// The AWS region, e.g. `us-east-1`.
    pub region: String,
    /// The 12-digit account id.
    pub account: String,
    /// The stream's name.
    pub stream: String,
}

impl StreamArn {
    /// Parses a stream ARN. Consumer ARNs (`…/consumer/…`) are not stream ARNs.
    pub fn parse(arn: &str) -> Option<StreamArn> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some("kinesis"),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        let stream = resource.strip_prefix("stream/")?;
        (partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && is_valid_name(stream))
        .then(|| StreamArn {
            region: region.to_owned(),
            account: account.to_owned(),
            stream: stream.to_owned(),
        })
    }
}

impl fmt::Display for StreamArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:aws:kinesis:{}:{}:stream/{}",
            self.region, self.account, self.stream
        )
    }
}

/// The parts of a consumer ARN:
/// `arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<name>:<created epoch secs>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerArn {
    /// The stream the consumer reads.
    pub stream: StreamArn,
    /// The consumer's name.
    pub consumer: String,
    /// The consumer's creation time, epoch seconds.
    pub created: u64,
}

impl ConsumerArn {
    /// Parses a consumer ARN.
    pub fn parse(arn: &str) -> Option<ConsumerArn> {
        let (stream_part, rest) = arn.split_once("/consumer/")?;
        let (name, created) = rest.rsplit_once(':')?;
        let stream = StreamArn::parse(stream_part)?;
        (is_valid_name(name) && !created.is_empty()).then_some(())?;
        Some(ConsumerArn {
            stream,
            consumer: name.to_owned(),
            created: created.parse().ok()?,
        })
    }
}

impl fmt::Display for ConsumerArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/consumer/{}:{}",
            self.stream, self.consumer, self.created
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_arn_round_trips() {
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/my.stream_1";
        let parsed = StreamArn::parse(arn).unwrap();
        assert_eq!(parsed.stream, "my.stream_1");
        assert_eq!(parsed.to_string(), arn);
        assert!(StreamArn::parse("arn:aws:kinesis:us-east-1:0000:stream/x").is_none());
        assert!(StreamArn::parse("arn:aws:s3:us-east-1:000000000000:stream/x").is_none());
    }

    #[test]
    fn consumer_arn_round_trips() {
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1700000000";
        let parsed = ConsumerArn::parse(arn).unwrap();
        assert_eq!(parsed.consumer, "c");
        assert_eq!(parsed.created, 1_700_000_000);
        assert_eq!(parsed.to_string(), arn);
    }

    #[test]
    fn names_follow_the_pattern() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(&"a".repeat(129)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
    }
}
