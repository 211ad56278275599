//! `startup`: fill the broker's data directory to a size, stop the broker, start it again
//! with the given command, and time until it answers ListStreams.
//!
//! The fill is scaled down to what the filesystem allows (keeping `--min-free-gb` free) and
//! the size actually on disk is reported. The restarted broker is stopped (SIGTERM) before
//! the run ends, so the run leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::scale::rss_bytes;
use super::secs;
use crate::kinesis::PutLoad;
use crate::kinesis::{create_stream, drive_put_records, get_records, shard_ids, shard_iterator};
use crate::report::{round3, CpuClock, Recorder, Report, Status};
use crate::{Common, Ctx};

/// Options of `startup`.
#[derive(Debug, Clone, Args)]
pub struct StartupArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Process id of the running broker (stopped with SIGTERM after the fill).
    #[arg(long)]
    pub broker_pid: u32,
    /// The broker's data directory (measured, and where free space is checked).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Bytes of record data to write before the restart (scaled down to the free space).
    #[arg(long, default_value_t = 10.0)]
    pub fill_gb: f64,
    /// Free space to leave on the data directory's filesystem, GB.
    #[arg(long, default_value_t = 5.0)]
    pub min_free_gb: f64,
    /// Longest the fill may take, seconds.
    #[arg(long, default_value_t = 600.0)]
    pub fill_secs: f64,
    /// PutRecords calls in flight while filling.
    #[arg(long, default_value_t = 8)]
    pub fill_concurrency: usize,
    /// Bytes of data per record while filling.
    #[arg(long, default_value_t = 10_240)]
    pub record_size: usize,
    /// Shards of the stream that is filled.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Longest to wait for the restarted broker to answer, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub startup_timeout_secs: f64,
    /// The command that starts the broker again (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

impl StartupArgs {
    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "fill_gb": self.fill_gb,
            "min_free_gb": self.min_free_gb,
            "record_size": self.record_size,
            "shards": self.shards,
            "fill_concurrency": self.fill_concurrency,
        })
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir)?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; only its parent's wait is missing.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends SIGTERM and waits up to `grace` for the process to exit (then SIGKILL).
async fn stop(pid: u32, grace: Duration) -> Duration {
    let t = Instant::now();
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    while alive(pid) && t.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if alive(pid) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    t.elapsed()
}

/// Runs `startup`.
pub async fn run(ctx: &Ctx, a: &StartupArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(alive(a.broker_pid), "no process {}", a.broker_pid);
    let mut r = Report::new("startup", &a.common.target_name, a.common.http2, a.params());
    let free = free_bytes(&a.data_dir)?;
    let requested = (a.fill_gb * 1e9) as u64;
    let allowed = ((free as f64 - a.min_free_gb * 1e9) * 0.9).max(0.0) as u64;
    let target = requested.min(allowed);
    r.extra("requested_bytes", requested);
    r.extra("free_bytes_before", free);
    r.extra("scaled_down", target < requested);

    // Fill.
    let stream = ctx.stream_name("startup");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let rec = Recorder::default();
    let load = PutLoad {
        stream: stream.clone(),
        record_size: a.record_size,
        batch: (5_000_000 / a.record_size.max(1)).clamp(1, 500),
        concurrency: a.fill_concurrency.max(1),
        max_records: target / a.record_size.max(1) as u64,
        deadline: Instant::now() + secs(a.fill_secs),
        track_shards: false,
    };
    let cpu = CpuClock::start();
    let started = Instant::now();
    let totals = drive_put_records(&ctx.k, &load, &rec).await;
    let fill_elapsed = started.elapsed();
    r.loadgen_cpu = cpu.json();
    r.set_volume(
        totals.records.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed),
        fill_elapsed,
    );
    r.take(&rec);
    let rss_before = rss_bytes(a.broker_pid).unwrap_or(0);

    // Stop the running broker, measure the data directory, start again.
    let shutdown = stop(a.broker_pid, Duration::from_secs(120)).await;
    let data_bytes = dir_bytes(&a.data_dir);
    r.extra("filled_stream", stream.clone());
    r.extra("shutdown_s", round3(shutdown.as_secs_f64()));
    r.extra(
        "rss_before_restart_mb",
        round3(rss_before as f64 / 1048576.0),
    );
    r.extra("data_dir_bytes", data_bytes);
    r.extra("data_dir_gb", round3(data_bytes as f64 / 1e9));
    let (program, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no broker command after --"))?;
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let child_pid = child.id().unwrap_or(0);
    let timeout = secs(a.startup_timeout_secs);
    let mut ready = None;
    while spawned.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            r.status = Status::Failed;
            r.reason = Some(format!("restarted broker exited with {status}"));
            return Ok(r);
        }
        if ctx
            .k
            .call::<IgnoredAny>("ListStreams", &json!({}))
            .await
            .is_ok()
        {
            ready = Some(spawned.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match ready {
        Some(d) => r.extra("startup_s", round3(d.as_secs_f64())),
        None => {
            r.status = Status::Failed;
            r.reason = Some(format!("broker did not answer within {timeout:?}"));
        }
    }
    if ready.is_some() {
        r.extra(
            "rss_after_start_mb",
            round3(rss_bytes(child_pid).unwrap_or(0) as f64 / 1048576.0),
        );
        // Check the data is really there: the first records of the first shard.
        let verified = async {
            let shard = shard_ids(&ctx.k, &stream).await?.into_iter().next();
            let Some(shard) = shard else { return Ok(0) };
            let it = shard_iterator(&ctx.k, &stream, &shard, "TRIM_HORIZON").await?;
            let out = get_records::<IgnoredAny>(&ctx.k, &it, 10).await?;
            Ok::<usize, crate::client::CallError>(out.records.len())
        }
        .await;
        r.extra(
            "verified_records_after_restart",
            match verified {
                Ok(n) => json!(n),
                Err(e) => json!(e.to_string()),
            },
        );
    }
    let restarted_shutdown = stop(child_pid, Duration::from_secs(120)).await;
    let _ = child.wait().await;
    r.extra(
        "restarted_shutdown_s",
        round3(restarted_shutdown.as_secs_f64()),
    );
    Ok(r)
}
