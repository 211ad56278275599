//! The command line: global options and one subcommand per concept.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// riffle — Kinesis streams from the terminal.
///
/// Works against Riffle's broker or Amazon Kinesis itself: anything that speaks the Kinesis
/// API. Without --endpoint it uses AWS_ENDPOINT_URL_KINESIS, then AWS_ENDPOINT_URL, then a
/// local broker at http://127.0.0.1:4567. Credentials, region and profiles come from the
/// standard AWS configuration chain (environment, ~/.aws/config and ~/.aws/credentials,
/// web identity, …); against a local broker with no credentials configured, placeholder
/// credentials are used.
///
/// Output is a table on a terminal and JSON lines when piped (--output to choose).
///
/// Exit codes: 0 success; 1 the operation failed (the error line says why); 2 bad usage;
/// 3 the stream or shard does not exist; 4 the endpoint could not be reached; 5 some
/// records failed (produce) or the stream did not settle in time.
#[derive(Debug, Parser)]
#[command(
    name = "riffle",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub(crate) global: Global,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Kinesis endpoint URL [default: $AWS_ENDPOINT_URL_KINESIS, $AWS_ENDPOINT_URL, or
    /// http://127.0.0.1:4567].
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// AWS region [default: from the AWS configuration chain, else us-east-1].
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// Named profile from ~/.aws/config.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub(crate) profile: Option<String>,
    /// Output format [default: table on a terminal, json (one object per line) when piped].
    #[arg(long, short = 'o', global = true, value_enum)]
    pub(crate) output: Option<OutputFormat>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line, for scripts.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create, inspect, reshard and delete streams.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Put lines from standard input or files into a stream, through the producer library.
    ///
    /// Each line (without its newline) is one record. Records are aggregated in the KPL
    /// format per shard (readable by `riffle consume`, the KCL and aws-kinesis-agg) unless
    /// --no-aggregate, collected into PutRecords, and retried with backoff; when the
    /// producer's buffer is full, reading waits (back-pressure). On a terminal a progress
    /// line is kept on standard error; a summary is printed at the end. Exits 5 if any
    /// record failed (written to --failed FILE when given).
    ///
    /// Examples:
    ///   riffle produce orders < orders.jsonl --key-field customer
    ///   seq 1 100000 | riffle produce numbers --key '{line}' --rate 5000
    Produce(ProduceArgs),
    /// Print a stream's records, de-aggregating KPL records.
    ///
    /// Without --group, every shard is read from --from, parents before children (after
    /// a reshard), and the command exits once it has caught up with every shard (or
    /// after --count records); --follow keeps reading. With --group NAME the command is
    /// a consumer-library worker: several `consume --group NAME` processes share the
    /// shards through leases and checkpoint what they printed, so a restarted group
    /// resumes where it stopped. With --fan-out NAME records are pushed through an
    /// enhanced fan-out consumer of that name (registered if missing) with
    /// SubscribeToShard.
    ///
    /// Examples:
    ///   riffle consume orders --count 10
    ///   riffle consume orders --from latest --follow --format json
    ///   riffle consume orders --group billing --follow
    Consume(ConsumeArgs),
    /// A live per-shard view of a stream from the broker's metrics endpoint.
    ///
    /// Incoming records/s and bytes/s, throttled writes and reads, and iterator age per
    /// shard, refreshed in place on a terminal; one table (two scrapes, one interval
    /// apart) when piped.
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// For example: riffle completions bash > /etc/bash_completion.d/riffle
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for riffle and every subcommand into a directory.
    Man {
        /// Directory for the pages (created if missing).
        #[arg(long, default_value = "man")]
        dir: PathBuf,
    },
}

/// `riffle stream …`.
#[derive(Debug, Subcommand)]
pub(crate) enum StreamCommand {
    /// Create a stream and wait until it is ACTIVE.
    Create(CreateArgs),
    /// List streams with their status, mode and open shards.
    List,
    /// Show a stream: status, mode, retention, consumers and a table of its shards.
    Describe {
        /// The stream.
        stream: String,
    },
    /// Delete a stream and wait until it is gone.
    Delete {
        /// The stream.
        stream: String,
        /// Also deregister its enhanced fan-out consumers (else deletion is refused while
        /// it has any).
        #[arg(long)]
        force: bool,
        /// Return once deletion has started.
        #[arg(long)]
        no_wait: bool,
    },
    /// Change the number of open shards with UpdateShardCount (uniform scaling), one
    /// step at a time within Kinesis's rules (each step at most doubles or halves), waiting
    /// for ACTIVE after each and printing it.
    Reshard {
        /// The stream.
        stream: String,
        /// The number of open shards wanted.
        #[arg(long)]
        shards: u32,
        /// Longest to wait for each step, e.g. 2m.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Split one shard in two (SplitShard) and wait until ACTIVE.
    Split {
        /// The stream.
        stream: String,
        /// The shard to split, e.g. shardId-000000000000.
        shard: String,
        /// The first hash key of the new upper shard [default: the middle of its range].
        #[arg(long, value_name = "HASH_KEY")]
        at: Option<String>,
    },
    /// Merge two adjacent shards (MergeShards) and wait until ACTIVE.
    Merge {
        /// The stream.
        stream: String,
        /// The shard to merge.
        shard: String,
        /// The adjacent shard to merge it with.
        adjacent: String,
    },
    /// Set the retention period (increases or decreases as needed).
    Retention {
        /// The stream.
        stream: String,
        /// Hours to keep records (24 to 8760).
        #[arg(long)]
        hours: u32,
    },
    /// List, add or remove a stream's tags.
    Tag {
        /// The stream.
        stream: String,
        /// Tags to add or change, KEY=VALUE.
        #[arg(long = "add", value_name = "KEY=VALUE")]
        add: Vec<String>,
        /// Tag keys to remove.
        #[arg(long = "remove", value_name = "KEY")]
        remove: Vec<String>,
    },
}

/// `riffle stream create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The stream's name.
    pub(crate) stream: String,
    /// Open shards (provisioned mode).
    #[arg(long, default_value_t = 1, conflicts_with = "on_demand")]
    pub(crate) shards: u32,
    /// On-demand capacity mode instead of a fixed shard count.
    #[arg(long)]
    pub(crate) on_demand: bool,
    /// Retention in hours (24 to 8760) [default: 24].
    #[arg(long)]
    pub(crate) retention_hours: Option<u32>,
    /// Tags, KEY=VALUE (repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub(crate) tags: Vec<String>,
    /// Return once creation has started.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// `riffle top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The stream.
    pub(crate) stream: String,
    /// The broker's metrics URL [default: the endpoint's host on port 9567, /metrics].
    #[arg(long, value_name = "URL")]
    pub(crate) metrics: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) interval: std::time::Duration,
    /// Refresh this many times, then exit [default: until interrupted on a terminal, once
    /// when piped].
    #[arg(long)]
    pub(crate) iterations: Option<u64>,
}

/// `riffle produce`.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The stream.
    pub(crate) stream: String,
    /// Files to read, in order [default: standard input; `-` is standard input too].
    pub(crate) files: Vec<PathBuf>,
    /// The partition key of every record: text with placeholders `{line}` (the line's
    /// number, from 1, across all inputs) and `{random}` (16 random hex digits per
    /// record).
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = "{random}",
        conflicts_with = "key_field"
    )]
    pub(crate) key: String,
    /// Take the partition key from this field of each line, read as a JSON object (a
    /// dotted path reaches into nested objects, e.g. `user.id`). A line without the field
    /// fails (see --failed).
    #[arg(long, value_name = "FIELD")]
    pub(crate) key_field: Option<String>,
    /// Most records per second to put.
    #[arg(long, value_name = "RECORDS_PER_SECOND")]
    pub(crate) rate: Option<f64>,
    /// Put every line as its own Kinesis record instead of KPL aggregates.
    #[arg(long)]
    pub(crate) no_aggregate: bool,
    /// Write the records that could not be put to this file, one JSON object per line
    /// (line, partition_key, data, error, attempts).
    #[arg(long, value_name = "FILE")]
    pub(crate) failed: Option<PathBuf>,
    /// How long after it was read a record may wait in the buffer and be retried before it
    /// fails, e.g. 30s (the KPL's `RecordTtl`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) record_ttl: std::time::Duration,
    /// Progress line on standard error [default: when standard error is a terminal].
    #[arg(long, overrides_with = "no_progress")]
    pub(crate) progress: bool,
    /// No progress line.
    #[arg(long)]
    pub(crate) no_progress: bool,
}

/// How `riffle consume` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RecordFormat {
    /// The data as text, one record per line.
    Text,
    /// One JSON object per record: shard, sequence and sub-sequence numbers, partition
    /// key, arrival time, data (text, or `data_base64` when it is not UTF-8).
    Json,
}

/// `riffle consume`.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The stream.
    pub(crate) stream: String,
    /// Where to start: trim-horizon, latest, a time (RFC 3339 such as
    /// 2026-12-01T17:00:00Z, or seconds since the epoch), or a sequence number (from the
    /// record carrying it, in its shard: all of an aggregate's user records). With --group this applies to shards the group has no
    /// checkpoint for.
    #[arg(long, default_value = "trim-horizon", value_name = "POSITION")]
    pub(crate) from: String,
    /// Read only this shard.
    #[arg(long, value_name = "SHARD_ID", conflicts_with = "group")]
    pub(crate) shard: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub(crate) count: Option<u64>,
    /// Keep reading at the end of the stream, and into new shards, until interrupted.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// How to print records.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: RecordFormat,
    /// Share the shards with every other `consume --group NAME` process through leases,
    /// and checkpoint (the group name is the lease table's application name).
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Where --group keeps leases and checkpoints: `sqlite:PATH` (a file every worker on
    /// this host shares) or `dynamodb` (a table named after the group, with the Java KCL's
    /// schema; its endpoint from the AWS configuration, e.g. AWS_ENDPOINT_URL_DYNAMODB)
    /// [default: sqlite:$XDG_STATE_HOME/riffle/leases.db].
    #[arg(long, value_name = "STORE", requires = "group")]
    pub(crate) lease_store: Option<String>,
    /// Read through the enhanced fan-out consumer NAME with SubscribeToShard (registered
    /// if the stream has none of that name).
    #[arg(long, value_name = "NAME")]
    pub(crate) fan_out: Option<String>,
}
