//! Per-shard load from a broker's Prometheus `/metrics`: scrape, parse the `riffle_*`
//! per-shard series of one stream, and turn counters sampled over time into rates over
//! the autoscaler's window.
//!
//! Series used (docs/metrics.md): `riffle_incoming_bytes_total`,
//! `riffle_incoming_records_total`, `riffle_write_throttled_records_total`,
//! `riffle_outgoing_bytes_total`, `riffle_read_throttled_requests_total` (counters) and
//! `riffle_iterator_age_milliseconds` (gauge), each labelled `stream` and `shard`.
//!
//! [`LoadWindow`] is pure: it is fed timestamped scrapes and answers a [`Load`] only when
//! every open shard has a sample at least one window old, so a load is never computed
//! from a partial window (after start, after a reshard, after a counter reset).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use riffle_core::HashKeyRange;

use crate::autoscale::{Load, ShardLoad};

/// The counters and gauge of one shard at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShardCounters {
    /// `riffle_incoming_bytes_total`.
    pub incoming_bytes: f64,
    /// `riffle_incoming_records_total`.
    pub incoming_records: f64,
    /// `riffle_write_throttled_records_total`.
    pub write_throttled: f64,
    /// `riffle_outgoing_bytes_total`.
    pub outgoing_bytes: f64,
    /// `riffle_read_throttled_requests_total`.
    pub read_throttled: f64,
    /// `riffle_iterator_age_milliseconds`.
    pub iterator_age_ms: f64,
}

/// One scrape of one stream: shard id → counters.
pub type Scrape = BTreeMap<String, ShardCounters>;

/// Parses Prometheus/OpenMetrics text, keeping the per-shard series of `stream`.
pub fn parse(text: &str, stream: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((name, labels, value)) = split_sample(line) else {
            continue;
        };
        let field: fn(&mut ShardCounters) -> &mut f64 = match name {
            "riffle_incoming_bytes_total" => |c| &mut c.incoming_bytes,
            "riffle_incoming_records_total" => |c| &mut c.incoming_records,
            "riffle_write_throttled_records_total" => |c| &mut c.write_throttled,
            "riffle_outgoing_bytes_total" => |c| &mut c.outgoing_bytes,
            "riffle_read_throttled_requests_total" => |c| &mut c.read_throttled,
            "riffle_iterator_age_milliseconds" => |c| &mut c.iterator_age_ms,
            _ => continue,
        };
        let labels = parse_labels(labels);
        if labels.get("stream").map(String::as_str) != Some(stream) {
            continue;
        }
        let Some(shard) = labels.get("shard") else {
            continue;
        };
        *field(out.entry(shard.clone()).or_default()) = value;
    }
    out
}

/// `name{labels} value [timestamp]` → (name, labels, value).
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (name, rest) = match line.find('{') {
        Some(i) => {
            let end = line.rfind('}')?;
            (&line[..i], (&line[i + 1..end], &line[end + 1..]))
        }
        None => {
            let i = line.find(' ')?;
            (&line[..i], ("", &line[i..]))
        }
    };
    let value = rest.1.split_whitespace().next()?.parse().ok()?;
    Some((name, rest.0, value))
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
}

/// Timestamped scrapes of one stream, enough to answer rates over `window`.
#[derive(Debug, Clone, Default)]
pub struct LoadWindow {
    samples: VecDeque<(Timestamp, Scrape)>,
}

impl LoadWindow {
    /// Adds a scrape taken at `at` and forgets samples no longer needed for `window`.
    pub fn push(&mut self, at: Timestamp, scrape: Scrape, window: Duration) {
        self.samples.push_back((at, scrape));
        let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
        // Keep the newest sample that is at least one window old, and everything after it.
        while self.samples.len() > 1 && self.samples[1].0 <= at - window {
            self.samples.pop_front();
        }
    }

    /// Forgets everything (the stream was resharded, or its endpoint changed).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The load of `open` shards (id and range, sorted by range) over `window`, or `None`
    /// if some open shard has no sample a full window old, or a counter went backwards.
    pub fn load(&self, open: &[(String, HashKeyRange)], window: Duration) -> Option<Load> {
        let (newest_at, newest) = self.samples.back()?;
        let win = SignedDuration::try_from(window).ok()?;
        let (base_at, base) = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= *newest_at - win)?;
        let secs = newest_at.duration_since(*base_at).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let mut shards = Vec::with_capacity(open.len());
        for (id, range) in open {
            let (b, n) = (base.get(id)?, newest.get(id)?);
            let rate = |f: fn(&ShardCounters) -> f64| {
                let d = f(n) - f(b);
                (d >= 0.0).then_some(d / secs)
            };
            shards.push(ShardLoad {
                shard_id: id.clone(),
                range: *range,
                write_bytes: rate(|c| c.incoming_bytes)?,
                write_records: rate(|c| c.incoming_records)?,
                write_throttled: rate(|c| c.write_throttled)?,
                read_bytes: rate(|c| c.outgoing_bytes)?,
                read_throttled: rate(|c| c.read_throttled)?,
                iterator_age_ms: n.iterator_age_ms.max(0.0) as u64,
            });
        }
        Some(Load {
            window: Duration::from_secs_f64(secs),
            shards,
        })
    }
}

/// Errors of [`scrape`].
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL is not one the client can use.
    #[error("bad metrics URL {url}")]
    Url {
        /// The URL.
        url: String,
    },
    /// The request failed or timed out.
    #[error("GET {url}: {message}")]
    Request {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A status other than 200.
    #[error("GET {url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
}

/// A plain-HTTP client for `/metrics`.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
>;

/// A client for [`scrape`].
pub fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// `GET url` (5 s limit), the body as text.
pub async fn scrape(client: &HttpClient, url: &str) -> Result<String, ScrapeError> {
    use http_body_util::BodyExt;
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ScrapeError::Url { url: url.into() })?;
    let req_err = |message: String| ScrapeError::Request {
        url: url.into(),
        message,
    };
    let fut = async {
        let resp = client.get(uri).await.map_err(|e| req_err(e.to_string()))?;
        if resp.status() != http::StatusCode::OK {
            return Err(ScrapeError::Status {
                url: url.into(),
                status: resp.status().as_u16(),
            });
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| req_err(e.to_string()))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| req_err("timed out after 5 s".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP riffle_incoming_bytes_total Bytes.
# TYPE riffle_incoming_bytes_total counter
riffle_incoming_bytes_total{stream="orders",shard="shardId-000000000000"} 1000
riffle_incoming_bytes_total{stream="orders",shard="shardId-000000000001"} 50
riffle_incoming_bytes_total{stream="other",shard="shardId-000000000000"} 7
riffle_incoming_records_total{stream="orders",shard="shardId-000000000000"} 10
riffle_write_throttled_records_total{stream="orders",shard="shardId-000000000000"} 2
riffle_iterator_age_milliseconds{stream="orders",shard="shardId-000000000001"} 1500
riffle_requests_total{operation="PutRecords",result="success"} 3
# EOF
"#;

    #[test]
    fn parses_only_the_streams_shard_series() {
        let s = parse(TEXT, "orders");
        assert_eq!(s.len(), 2);
        let s0 = s["shardId-000000000000"];
        assert_eq!(
            (s0.incoming_bytes, s0.incoming_records, s0.write_throttled),
            (1000.0, 10.0, 2.0)
        );
        assert_eq!(s["shardId-000000000001"].iterator_age_ms, 1500.0);
        assert_eq!(
            parse(TEXT, "other")["shardId-000000000000"].incoming_bytes,
            7.0
        );
        let odd = parse_labels(r#"a="x\"y",stream="s""#);
        assert_eq!(odd["a"], "x\"y");
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn scrape_of(bytes: f64) -> Scrape {
        Scrape::from([(
            "a".to_string(),
            ShardCounters {
                incoming_bytes: bytes,
                ..ShardCounters::default()
            },
        )])
    }

    #[test]
    fn rates_need_a_full_window_and_every_open_shard() {
        let w = Duration::from_secs(60);
        let open = vec![("a".to_string(), HashKeyRange::FULL)];
        let mut lw = LoadWindow::default();
        lw.push(t(0), scrape_of(0.0), w);
        lw.push(t(30), scrape_of(3000.0), w);
        assert_eq!(lw.load(&open, w), None, "half a window");
        lw.push(t(60), scrape_of(6000.0), w);
        let l = lw.load(&open, w).unwrap();
        assert_eq!((l.window, l.shards[0].write_bytes), (w, 100.0));
        lw.push(t(90), scrape_of(12000.0), w);
        let l = lw.load(&open, w).unwrap();
        assert_eq!(l.shards[0].write_bytes, 150.0, "rate over [30, 90]");
        // A shard born after the base sample: no full window.
        let two = vec![open[0].clone(), ("b".to_string(), HashKeyRange::FULL)];
        assert_eq!(lw.load(&two, w), None);
        // A counter reset (broker restarted): no rate until a new window fills.
        lw.push(t(120), scrape_of(10.0), w);
        assert_eq!(lw.load(&open, w), None);
    }
}
