//! Broker configuration: a TOML file, overridden by environment variables and flags.
//!
//! Every field has a default, so an empty file (or none) runs a standalone broker on
//! `127.0.0.1:4567` with its data in `./riffle-data`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole broker configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the Kinesis API listener (HTTP/1.1 and h2c on one port).
    pub listen: SocketAddr,
    /// Address of the admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: SocketAddr,
    /// Where streams, shard logs and metadata live.
    pub data_dir: PathBuf,
    /// The region written into ARNs.
    pub region: String,
    /// The 12-digit account id written into ARNs and error messages.
    pub account_id: String,
    /// Request and response bytes the broker holds in memory at once, across all requests.
    /// Requests beyond it wait (back-pressure) instead of growing memory.
    pub max_inflight_bytes: u64,
    /// Grace period for in-flight requests on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Connection limits and timeouts of the API listeners.
    pub http: HttpConfig,
    /// Authentication and authorization.
    pub auth: crate::auth::AuthConfig,
    /// Stream lifecycle and control-plane limits.
    pub streams: StreamsConfig,
    /// Shard log storage.
    pub storage: StorageConfig,
    /// Per-shard throughput limits.
    pub limits: LimitsConfig,
    /// Calls per second of the control-plane operations (per account or per stream).
    pub control_plane: ControlPlaneLimits,
    /// An optional TLS listener for the Kinesis API.
    pub tls: Option<TlsConfig>,
    /// Keys for encryption at rest (StartStreamEncryption).
    pub encryption: crate::encryption::EncryptionConfig,
}

/// Connection limits and timeouts: what a slow, stalled or hostile client can hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Connections served at once per listener; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A connection with no request in flight is closed after this long (HTTP/2: GOAWAY);
    /// an HTTP/1.1 request's headers must arrive within it too.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long is abandoned (408), and what it
    /// held is released.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// A request body must have arrived within this long of its headers, waiting for the
    /// memory budget included.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// HTTP/1.1 read buffer, bytes: the most a connection buffers beyond what its request
    /// holds of the memory budget (headers must fit in it).
    pub h1_max_buf_size: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 flow-control window of one stream, bytes.
    pub h2_stream_window: u32,
    /// HTTP/2 flow-control window of one connection, bytes: the most a connection buffers
    /// beyond what its requests hold of the memory budget.
    pub h2_connection_window: u32,
    /// Largest header block of one HTTP/2 request, bytes.
    pub h2_max_header_list_size: u32,
    /// HTTP/2 keep-alive ping interval (a peer that stops answering is disconnected).
    #[serde(with = "humantime_serde")]
    pub h2_keepalive_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            h1_max_buf_size: 64 * 1024,
            h2_max_concurrent_streams: 100,
            h2_stream_window: 256 * 1024,
            h2_connection_window: 1024 * 1024,
            h2_max_header_list_size: 64 * 1024,
            h2_keepalive_interval: Duration::from_secs(30),
        }
    }
}

/// The TLS listener: same API, HTTP/1.1 and HTTP/2 chosen by ALPN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key.
    pub key_file: PathBuf,
    /// How often the certificate and key files are reread; a changed, valid pair is used
    /// for new connections without a restart.
    #[serde(with = "humantime_serde", default = "default_tls_reload")]
    pub reload_interval: Duration,
    /// PEM file of CAs: when set, clients must present a certificate chained to one of them
    /// (mutual TLS), in addition to signing their requests.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_tls_reload() -> Duration {
    Duration::from_secs(10)
}

/// Stream lifecycle and control-plane limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// How long a stream stays CREATING, UPDATING or DELETING.
    #[serde(with = "humantime_serde")]
    pub status_delay: Duration,
    /// Open shards allowed across all streams of the account.
    pub shard_limit: u32,
    /// Shards allowed in one stream (UpdateShardCount target and on-demand growth).
    pub max_shards_per_stream: u32,
    /// UpdateShardCount calls allowed per stream in any rolling 24 hours.
    pub reshards_per_24h: u32,
    /// Registered (enhanced fan-out) consumers allowed per stream.
    pub max_consumers_per_stream: u32,
    /// Shards an ON_DEMAND stream starts with.
    pub on_demand_shards: u32,
    /// Streams allowed in ON_DEMAND mode at once.
    pub on_demand_stream_limit: u32,
    /// How long one SubscribeToShard call streams before the client must resubscribe.
    #[serde(with = "humantime_serde")]
    pub subscription_lifetime: Duration,
    /// An idle subscription still sends an (empty) event this often.
    #[serde(with = "humantime_serde")]
    pub subscription_heartbeat: Duration,
}

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before a write is acknowledged (the default: an acknowledged record survives a crash).
    Always,
    /// Every interval; writes are acknowledged once written to the OS.
    Interval(Duration),
    /// Never explicitly; the OS decides.
    Never,
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => match other.strip_prefix("interval:") {
                Some(d) => humantime::parse_duration(d)
                    .map(FsyncPolicy::Interval)
                    .map_err(serde::de::Error::custom),
                None => Err(serde::de::Error::custom(
                    "expected \"always\", \"never\" or \"interval:<duration>\"",
                )),
            },
        }
    }
}

/// Shard log storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// When appended records are fsynced.
    pub fsync: FsyncPolicy,
    /// A segment file is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// One sparse index entry per this many bytes of log.
    pub index_interval_bytes: u64,
    /// Appends queued per shard before producers wait (back-pressure).
    pub write_queue: usize,
    /// Largest batch the shard writer assembles from queued appends.
    pub max_batch_bytes: usize,
    /// How often expired segments are deleted.
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
}

/// A rate limit that may be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit.
    Off,
    /// At most this many units per second.
    PerSecond(u64),
}

impl Limit {
    /// The rate, if limited.
    pub fn rate(self) -> Option<u64> {
        match self {
            Limit::Off => None,
            Limit::PerSecond(n) => Some(n),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Limit::PerSecond(n)),
            Raw::S(s) if s == "off" => Ok(Limit::Off),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected a number or \"off\", got {s:?}"
            ))),
        }
    }
}

/// Per-shard throughput limits and per-request size limits, as Kinesis sets them by default.
/// For the size limits the number is a count or a size (not per second), and "off" means
/// the largest value the wire and the log can carry ([`ceilings`]).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ShardLimits {
    /// Bytes (data + partition key) written per second.
    pub write_bytes_per_second: Limit,
    /// Records written per second.
    pub write_records_per_second: Limit,
    /// Bytes read by GetRecords per second.
    pub read_bytes_per_second: Limit,
    /// GetRecords calls per second (at most this many in any one second).
    pub get_records_per_second: Limit,
    /// GetShardIterator calls per second (Kinesis: 5 per open shard; at most this many in
    /// any one second).
    pub get_shard_iterator_per_second: Limit,
    /// Bytes pushed per second to each registered (enhanced fan-out) consumer.
    pub subscriber_bytes_per_second: Limit,
    /// Records in one PutRecords request (Kinesis: 500).
    pub put_records_max_records: Limit,
    /// Bytes (data and partition keys) in one PutRecords request (Kinesis: 5 MiB).
    pub put_records_max_bytes: Limit,
    /// Records one GetRecords call returns (Kinesis: 10,000; the largest `Limit` accepted).
    pub get_records_max_records: Limit,
    /// Bytes of data one GetRecords call returns (Kinesis: 10 MiB).
    pub get_records_max_bytes: Limit,
    /// Characters in a partition key (Kinesis: 256).
    pub partition_key_max_chars: Limit,
    /// Largest record of a new stream (Kinesis: 1 MiB); UpdateMaxRecordSize changes it per
    /// stream, up to 10 MiB.
    pub record_max_bytes: Limit,
}

/// What "off" means for a size limit: the largest value the wire and the log can carry.
pub mod ceilings {
    /// Records in one PutRecords request.
    pub const PUT_RECORDS_RECORDS: u64 = 100_000;
    /// Bytes in one PutRecords request (the request body limit).
    pub const PUT_RECORDS_BYTES: u64 = 16 * 1024 * 1024;
    /// Records in one GetRecords answer.
    pub const GET_RECORDS_RECORDS: u64 = 1_000_000;
    /// Bytes in one GetRecords answer.
    pub const GET_RECORDS_BYTES: u64 = 32 * 1024 * 1024;
    /// Characters in a partition key (the log stores keys of up to 65,535 bytes).
    pub const PARTITION_KEY_CHARS: u64 = 16_383;
    /// Bytes in one record (Kinesis's largest, UpdateMaxRecordSize's 10 MiB).
    pub const RECORD_BYTES: u64 = 10 * 1024 * 1024;
}

impl Limit {
    /// The value of a size limit, "off" meaning `ceiling`, never above it.
    pub fn or_ceiling(self, ceiling: u64) -> u64 {
        self.rate().unwrap_or(ceiling).min(ceiling)
    }
}

impl ShardLimits {
    /// Every limit switched off.
    pub const OFF: ShardLimits = ShardLimits {
        write_bytes_per_second: Limit::Off,
        write_records_per_second: Limit::Off,
        read_bytes_per_second: Limit::Off,
        get_records_per_second: Limit::Off,
        get_shard_iterator_per_second: Limit::Off,
        subscriber_bytes_per_second: Limit::Off,
        put_records_max_records: Limit::Off,
        put_records_max_bytes: Limit::Off,
        get_records_max_records: Limit::Off,
        get_records_max_bytes: Limit::Off,
        partition_key_max_chars: Limit::Off,
        record_max_bytes: Limit::Off,
    };
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            write_bytes_per_second: Limit::PerSecond(1024 * 1024),
            write_records_per_second: Limit::PerSecond(1000),
            read_bytes_per_second: Limit::PerSecond(2 * 1024 * 1024),
            get_records_per_second: Limit::PerSecond(5),
            get_shard_iterator_per_second: Limit::PerSecond(5),
            subscriber_bytes_per_second: Limit::PerSecond(2 * 1024 * 1024),
            put_records_max_records: Limit::PerSecond(500),
            put_records_max_bytes: Limit::PerSecond(5 * 1024 * 1024),
            get_records_max_records: Limit::PerSecond(10_000),
            get_records_max_bytes: Limit::PerSecond(10 * 1024 * 1024),
            partition_key_max_chars: Limit::PerSecond(256),
            record_max_bytes: Limit::PerSecond(1024 * 1024),
        }
    }
}

/// Calls per second of the control-plane operations, as Kinesis limits them by default.
/// Each is "at most this many calls in any one second" (like GetRecords' five), counted
/// per account or per stream as the field says; a call beyond it gets
/// `LimitExceededException` ("Rate exceeded for stream … under account …."). Each field
/// takes a number or "off"; `enabled = false` switches them all off. Operations not listed
/// here (data-plane calls, retention, monitoring, encryption, account settings, resource
/// policies) have no call-rate limit of their own.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneLimits {
    /// Whether the rates below apply at all.
    pub enabled: bool,
    /// CreateStream, per account (Kinesis: 5).
    pub create_stream: Limit,
    /// DeleteStream, per account (Kinesis: 5).
    pub delete_stream: Limit,
    /// DescribeStream, per account (Kinesis: 10).
    pub describe_stream: Limit,
    /// DescribeStreamSummary, per account (Kinesis: 20).
    pub describe_stream_summary: Limit,
    /// ListStreams, per account (Kinesis: 5).
    pub list_streams: Limit,
    /// ListShards, per stream (Kinesis: 1000).
    pub list_shards: Limit,
    /// SplitShard, per account (Kinesis: 5).
    pub split_shard: Limit,
    /// MergeShards, per account (Kinesis: 5).
    pub merge_shards: Limit,
    /// UpdateShardCount, per account (Kinesis: 10).
    pub update_shard_count: Limit,
    /// AddTagsToStream, per account (Kinesis: 5).
    pub add_tags_to_stream: Limit,
    /// RemoveTagsFromStream, per account (Kinesis: 5).
    pub remove_tags_from_stream: Limit,
    /// ListTagsForStream, per account (Kinesis: 5).
    pub list_tags_for_stream: Limit,
    /// RegisterStreamConsumer, per account (Kinesis: 5).
    pub register_stream_consumer: Limit,
    /// DescribeStreamConsumer, per stream (Kinesis: 20).
    pub describe_stream_consumer: Limit,
    /// DeregisterStreamConsumer, per stream (Kinesis: 5).
    pub deregister_stream_consumer: Limit,
    /// ListStreamConsumers, per stream (Kinesis: 5).
    pub list_stream_consumers: Limit,
    /// DescribeLimits, per account (Kinesis: 1).
    pub describe_limits: Limit,
}

impl Default for ControlPlaneLimits {
    fn default() -> Self {
        let n = Limit::PerSecond;
        ControlPlaneLimits {
            enabled: true,
            create_stream: n(5),
            delete_stream: n(5),
            describe_stream: n(10),
            describe_stream_summary: n(20),
            list_streams: n(5),
            list_shards: n(1000),
            split_shard: n(5),
            merge_shards: n(5),
            update_shard_count: n(10),
            add_tags_to_stream: n(5),
            remove_tags_from_stream: n(5),
            list_tags_for_stream: n(5),
            register_stream_consumer: n(5),
            describe_stream_consumer: n(20),
            deregister_stream_consumer: n(5),
            list_stream_consumers: n(5),
            describe_limits: n(1),
        }
    }
}

/// Per-shard limits: a broker-wide default and overrides per stream name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The default for every shard.
    #[serde(flatten)]
    pub default: ShardLimits,
    /// Overrides for the shards of one stream, by stream name.
    #[serde(default)]
    pub streams: BTreeMap<String, ShardLimits>,
}

impl LimitsConfig {
    /// The limits that apply to the shards of `stream`.
    pub fn for_stream(&self, stream: &str) -> ShardLimits {
        self.streams.get(stream).copied().unwrap_or(self.default)
    }

    /// The largest value of a size limit over the broker default and every stream override.
    fn largest(&self, pick: fn(&ShardLimits) -> Limit, ceiling: u64) -> u64 {
        std::iter::once(&self.default)
            .chain(self.streams.values())
            .map(|l| pick(l).or_ceiling(ceiling))
            .max()
            .unwrap_or(ceiling)
    }

    /// The largest GetRecords answer any stream may give, bytes (the request budget
    /// reserves this much for every GetRecords call).
    pub fn largest_get_records_bytes(&self) -> u64 {
        self.largest(|l| l.get_records_max_bytes, ceilings::GET_RECORDS_BYTES)
    }

    /// The largest PutRecords record count any stream accepts.
    pub fn largest_put_records_records(&self) -> u64 {
        self.largest(|l| l.put_records_max_records, ceilings::PUT_RECORDS_RECORDS)
    }

    /// How many items a list or map member keeps while a request is decoded: one more
    /// than any such member may validly hold (PutRecords' records, 200 tags), so the limit
    /// is still seen as exceeded while a body listing millions of items costs no memory.
    pub fn decode_item_cap(&self) -> usize {
        self.largest_put_records_records().max(200) as usize + 1
    }

    /// The largest GetRecords `Limit` any stream accepts (validated before the iterator
    /// says which stream a call reads).
    pub fn largest_get_records_records(&self) -> u64 {
        self.largest(|l| l.get_records_max_records, ceilings::GET_RECORDS_RECORDS)
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 4567)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9567)),
            data_dir: PathBuf::from("riffle-data"),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            max_inflight_bytes: 256 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            http: HttpConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            streams: StreamsConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            control_plane: ControlPlaneLimits::default(),
            tls: None,
            encryption: crate::encryption::EncryptionConfig::default(),
        }
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            status_delay: Duration::from_millis(500),
            shard_limit: 500,
            max_shards_per_stream: 10_000,
            reshards_per_24h: 10,
            max_consumers_per_stream: 20,
            on_demand_shards: 4,
            on_demand_stream_limit: 50,
            subscription_lifetime: Duration::from_secs(300),
            subscription_heartbeat: Duration::from_secs(5),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: 128 * 1024 * 1024,
            index_interval_bytes: 32 * 1024,
            write_queue: 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            retention_check_interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Checks values that parse but cannot run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return invalid("account_id", "must be 12 digits");
        }
        if self.region.is_empty() || self.region.contains(':') {
            return invalid("region", "must be a region name such as us-east-1");
        }
        if self.max_inflight_bytes < 64 * 1024 * 1024 {
            return invalid(
                "max_inflight_bytes",
                "must be at least 67108864 (a few of the largest requests)",
            );
        }
        let need = 2 * 16 * 1024 * 1024 + 3 * self.limits.largest_get_records_bytes();
        if self.max_inflight_bytes < need {
            return invalid(
                "max_inflight_bytes",
                "must hold the largest request twice (body and decoded) plus three times the largest GetRecords answer",
            );
        }
        if !self.auth.anonymous && self.auth.credentials_file.is_none() {
            return invalid(
                "auth",
                "requests must be authenticated: set auth.credentials_file, or allow anonymous \
                 access for local development with auth.anonymous = true (--allow-anonymous)",
            );
        }
        if self.auth.anonymous && self.auth.credentials_file.is_some() {
            return invalid(
                "auth",
                "auth.anonymous = true accepts every request unchecked; remove it or auth.credentials_file",
            );
        }
        let h = &self.http;
        if h.max_connections == 0 {
            return invalid("http.max_connections", "must be positive");
        }
        if h.idle_timeout.is_zero() || h.body_idle_timeout.is_zero() || h.body_timeout.is_zero() {
            return invalid("http", "timeouts must be positive");
        }
        if h.h1_max_buf_size < 8192 {
            return invalid("http.h1_max_buf_size", "must be at least 8192");
        }
        if h.h2_max_concurrent_streams == 0 {
            return invalid("http.h2_max_concurrent_streams", "must be positive");
        }
        if h.h2_stream_window < 65_535 || h.h2_connection_window < 65_535 {
            return invalid("http", "HTTP/2 windows must be at least 65535 bytes");
        }
        if self.storage.segment_bytes < 64 * 1024 {
            return invalid("storage.segment_bytes", "must be at least 65536");
        }
        if self.storage.index_interval_bytes == 0 {
            return invalid("storage.index_interval_bytes", "must be positive");
        }
        if self.storage.write_queue == 0 {
            return invalid("storage.write_queue", "must be positive");
        }
        if self.storage.max_batch_bytes < 11 * 1024 * 1024 {
            return invalid(
                "storage.max_batch_bytes",
                "must hold the largest PutRecords request (at least 11534336)",
            );
        }
        // A batch may overshoot the target by one request; it must still fit the segment
        // format's largest frame body.
        if self.storage.max_batch_bytes > 40 * 1024 * 1024 {
            return invalid(
                "storage.max_batch_bytes",
                "must be at most 41943040 (a batch must fit in one 64 MiB frame)",
            );
        }
        if self.streams.on_demand_shards == 0 || self.streams.max_shards_per_stream == 0 {
            return invalid("streams", "shard counts must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section() {
        let c: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:0"
            account_id = "123456789012"
            [auth]
            anonymous = true
            [streams]
            status_delay = "50ms"
            shard_limit = 10
            [storage]
            fsync = "interval:10ms"
            [limits]
            write_records_per_second = "off"
            [limits.streams.bench]
            write_bytes_per_second = "off"
            get_records_per_second = 100
            put_records_max_records = 1000
            partition_key_max_chars = "off"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.streams.status_delay, Duration::from_millis(50));
        assert_eq!(
            c.storage.fsync,
            FsyncPolicy::Interval(Duration::from_millis(10))
        );
        assert_eq!(c.limits.default.write_records_per_second, Limit::Off);
        assert_eq!(
            c.limits.for_stream("bench").get_records_per_second,
            Limit::PerSecond(100)
        );
        assert_eq!(
            c.limits.for_stream("other").write_bytes_per_second,
            Limit::PerSecond(1024 * 1024)
        );
        let bench = c.limits.for_stream("bench");
        assert_eq!(
            bench
                .put_records_max_records
                .or_ceiling(ceilings::PUT_RECORDS_RECORDS),
            1000
        );
        assert_eq!(
            bench
                .partition_key_max_chars
                .or_ceiling(ceilings::PARTITION_KEY_CHARS),
            ceilings::PARTITION_KEY_CHARS
        );
        assert_eq!(
            c.limits.for_stream("other").put_records_max_records,
            Limit::PerSecond(500)
        );
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(toml::from_str::<Config>("nope = 1").is_err());
        assert!(toml::from_str::<Config>("[storage]\nfsync = \"sometimes\"").is_err());
        let c: Config = toml::from_str("account_id = \"12\"").unwrap();
        assert!(c.validate().is_err());
    }
}
