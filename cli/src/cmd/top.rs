//! `riffle top STREAM`: per-shard load from the broker's Prometheus endpoint.
//!
//! Two scrapes an interval apart give each shard's rates (records and bytes in and out,
//! throttled writes and reads); iterator age is the gauge's latest value. The metric names
//! are the broker's (docs/metrics.md).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::TopArgs;
use crate::context::Context;
use crate::error::{CliError, NOT_FOUND, UNREACHABLE};

type Result<T> = std::result::Result<T, CliError>;

/// Per-shard values of one scrape, by metric.
type Scrape = BTreeMap<String, BTreeMap<&'static str, f64>>;

const COUNTERS: &[(&str, &str)] = &[
    ("riffle_incoming_records_total", "in_records"),
    ("riffle_incoming_bytes_total", "in_bytes"),
    ("riffle_outgoing_records_total", "out_records"),
    ("riffle_write_throttled_records_total", "write_throttled"),
    ("riffle_read_throttled_requests_total", "read_throttled"),
];
const AGE: &str = "riffle_iterator_age_milliseconds";

/// The metrics URL for an API endpoint: same host, port 9567, `/metrics`.
pub(crate) fn default_metrics_url(endpoint: &str) -> String {
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hostport,
    };
    format!("http://{host}:9567/metrics")
}

/// Parses `name{k="v",…} value` lines into per-shard values for `stream`.
pub(crate) fn parse(text: &str, stream: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let key = match COUNTERS.iter().find(|(m, _)| *m == name) {
            Some((_, k)) => *k,
            None if name == AGE => "iterator_age_ms",
            None => continue,
        };
        let label = |want: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == want).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if label("stream").as_deref() != Some(stream) {
            continue;
        }
        if let Some(shard) = label("shard") {
            out.entry(shard).or_default().insert(key, value);
        }
    }
    out
}

/// Rates between two scrapes `secs` apart, one row per shard of the later one.
pub(crate) fn rates(before: &Scrape, after: &Scrape, secs: f64) -> Vec<Value> {
    after
        .iter()
        .map(|(shard, now)| {
            let rate = |k: &str| {
                let was = before.get(shard).and_then(|m| m.get(k)).copied();
                let is = now.get(k).copied().unwrap_or(0.0);
                ((is - was.unwrap_or(is)).max(0.0) / secs * 10.0).round() / 10.0
            };
            json!({
                "shard": shard,
                "in_records_per_s": rate("in_records"),
                "in_kib_per_s": (rate("in_bytes") / 1024.0 * 10.0).round() / 10.0,
                "out_records_per_s": rate("out_records"),
                "write_throttled_per_s": rate("write_throttled"),
                "read_throttled_per_s": rate("read_throttled"),
                "iterator_age_ms": now.get("iterator_age_ms").copied().unwrap_or(0.0),
            })
        })
        .collect()
}

/// GET `url` (plain HTTP) and its body.
async fn get(url: &str) -> std::io::Result<String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the metrics URL must be http://",
        )
    })?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(hostport).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(std::io::Error::other(format!("HTTP status {status}")));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn scrape(url: &str, stream: &str) -> Result<Scrape> {
    let text = get(url).await.map_err(|e| {
        CliError::new(
            UNREACHABLE,
            format!("cannot read the broker's metrics at {url}: {e} (pass --metrics URL)"),
        )
    })?;
    Ok(parse(&text, stream))
}

/// Runs `top`.
pub(crate) async fn run(ctx: &Context, a: TopArgs) -> Result<()> {
    // The stream must exist (a typo would otherwise show an empty table forever).
    ctx.kinesis
        .describe_stream_summary()
        .stream_name(&a.stream)
        .send()
        .await
        .map_err(|e| crate::error::from_sdk("DescribeStreamSummary", &ctx.endpoint, e))?;
    let url = a
        .metrics
        .clone()
        .unwrap_or_else(|| default_metrics_url(&ctx.endpoint));
    let live = std::io::stdout().is_terminal() && ctx.out.is_table();
    let iterations = a.iterations.unwrap_or(if live { u64::MAX } else { 1 });
    let mut before = scrape(&url, &a.stream).await?;
    let mut at = Instant::now();
    for i in 0..iterations {
        tokio::time::sleep(a.interval).await;
        let after = scrape(&url, &a.stream).await?;
        let now = Instant::now();
        let rows = rates(&before, &after, (now - at).as_secs_f64());
        if rows.is_empty() && i == 0 {
            return Err(CliError::new(
                NOT_FOUND,
                format!(
                    "the metrics at {url} have no series for stream {}",
                    a.stream
                ),
            ));
        }
        if live {
            print!("\x1b[2J\x1b[H");
            println!(
                "riffle top {}  ({} every {:?}, Ctrl-C to quit)\n",
                a.stream, url, a.interval
            );
        }
        if ctx.out.is_table() {
            ctx.out.rows(
                &[
                    ("shard", "SHARD"),
                    ("in_records_per_s", "IN_REC/S"),
                    ("in_kib_per_s", "IN_KIB/S"),
                    ("out_records_per_s", "OUT_REC/S"),
                    ("write_throttled_per_s", "W_THROTTLED/S"),
                    ("read_throttled_per_s", "R_THROTTLED/S"),
                    ("iterator_age_ms", "ITER_AGE_MS"),
                ],
                &rows,
            );
        } else {
            for mut r in rows {
                r["stream"] = json!(a.stream);
                ctx.out.json(&r);
            }
        }
        before = after;
        at = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        riffle_incoming_records_total{stream=\"s\",shard=\"shardId-000000000000\"} 100\n\
        riffle_incoming_bytes_total{stream=\"s\",shard=\"shardId-000000000000\"} 10240\n\
        riffle_iterator_age_milliseconds{stream=\"s\",shard=\"shardId-000000000000\"} 7\n\
        riffle_incoming_records_total{stream=\"other\",shard=\"shardId-000000000000\"} 5\n";

    #[test]
    fn parses_the_streams_series_and_computes_rates() {
        let a = parse(TEXT, "s");
        let b = parse(&TEXT.replace("} 100", "} 300"), "s");
        assert_eq!(a.len(), 1);
        let rows = rates(&a, &b, 2.0);
        assert_eq!(rows[0]["in_records_per_s"], 100.0);
        assert_eq!(rows[0]["in_kib_per_s"], 0.0);
        assert_eq!(rows[0]["iterator_age_ms"], 7.0);
    }

    #[test]
    fn metrics_url_follows_the_endpoint_host() {
        assert_eq!(
            default_metrics_url("http://127.0.0.1:4567"),
            "http://127.0.0.1:9567/metrics"
        );
        assert_eq!(
            default_metrics_url("https://broker.example/"),
            "http://broker.example:9567/metrics"
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
