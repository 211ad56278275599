//! Every decision the producer makes, as one pure state machine over an injected clock:
//! which user records share an aggregate, which Kinesis records share a PutRecords request,
//! when each is sent, what a response means for each user record (done, retry, fail), and
//! what to do when the shard map changes. The async driver (`driver.rs`) only feeds it
//! records, responses, shard maps and the time, and executes what it returns.
//!
//! # Flow
//!
//! ```text
//! put ─▶ route by shard map ─▶ lane (one per predicted shard) ─▶ collector (per stream) ─▶ Request
//!          │ no map yet: waiting      open aggregate → ready queue      ≤ 500 records, ≤ 5 MiB
//!          │ no map at all: unmapped lane (no aggregation, no limit)     sent when full, due, or flushing
//!          ▼                                    ▲ token buckets (limiter), ordered-mode gate
//!  Response ─▶ per Kinesis record: done │ retry (backoff heap, or lane front in ordered mode)
//!                                       │ wrong shard (park until the map is refreshed) │ fail
//! ```
//!
//! * A *lane* holds one predicted shard's records: the open aggregate, then closed Kinesis
//!   records waiting for the limiter (`ready`). An aggregate closes when the next record
//!   does not fit (`aggregation_max_size`, `aggregation_max_count`) or at its oldest
//!   record's deadline. A user record too large to share an aggregate is sent alone; an
//!   aggregate of one is sent as the plain record.
//! * A stream's *collector* takes ready records round-robin across lanes while they fit
//!   (`collection_max_count`, `collection_max_size`, counting partition keys plus data as
//!   Kinesis does) and becomes a request when full, when its oldest record's deadline has
//!   come, or while a flush is in progress.
//! * Ordered mode: a lane hands at most one Kinesis record to the collector and then waits
//!   for its response (so at most one record per shard per request and one request per shard
//!   in flight); a failed record goes back to the front of its lane, which waits out the
//!   backoff. When a shard closes, records of the shards that replace it wait until the old
//!   lane's last response is in and its queued records have been moved in front of theirs.
//! * Time enters only as the `now` arguments; randomness (jitter) from a seeded generator.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use riffle_core::aggregate::{AggregateLayout, AGGREGATE_PARTITION_KEY};
use riffle_core::{HashKey, HashKeyRange};
use tokio::time::Instant;

use crate::config::{Config, RateLimit};
use crate::error::PutErrorKind;
use crate::limiter::{Rates, ShardLimiter};
use crate::record::{Pending, Verdict};
use crate::retry::{classify, Backoff, ErrorClass};
use crate::shard_map::{ShardInfo, ShardIx, ShardMap, ShardTable};

/// A stream's index in the pipeline.
pub(crate) type StreamIx = u32;

/// How often records queued behind a limiter, a missing shard map or a refresh are checked
/// for expiry.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// First and last delay before retrying a failed ListShards (the KPL's 1 s × 1.5 up to 30 s).
pub(crate) const MAP_MIN_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const MAP_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The error code of an attempt whose aggregate landed on a shard not owning all its
/// records (the KPL's code).
pub(crate) const WRONG_SHARD: &str = "Wrong Shard";

/// The error code when a response's record count differs from the request's (the KPL's).
pub(crate) const COUNT_MISMATCH: &str = "Record Count Mismatch";

/// Where a stream's records queue: one lane per predicted shard, plus the unmapped lane
/// used while no shard map is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum LaneId {
    Shard(ShardIx),
    Unmapped,
}

/// The settings the pipeline decides with (from [`Config`]).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) aggregation: bool,
    pub(crate) aggregation_max_count: usize,
    pub(crate) aggregation_max_size: usize,
    pub(crate) collection_max_count: usize,
    pub(crate) collection_max_size: usize,
    pub(crate) max_buffered_time: Duration,
    pub(crate) ordered: bool,
    pub(crate) fail_if_throttled: bool,
    pub(crate) retries: bool,
    pub(crate) backoff: Backoff,
    pub(crate) rates: Option<Rates>,
}

impl Settings {
    pub(crate) fn from_config(c: &Config) -> Settings {
        let largest_record = (c.max_user_record_size.max(c.aggregation_max_size) + 1024) as f64;
        Settings {
            aggregation: c.aggregation_enabled,
            aggregation_max_count: usize::try_from(c.aggregation_max_count).unwrap_or(usize::MAX),
            aggregation_max_size: c.aggregation_max_size,
            collection_max_count: c.collection_max_count,
            collection_max_size: c.collection_max_size,
            max_buffered_time: c.record_max_buffered_time,
            ordered: c.ordered,
            fail_if_throttled: c.fail_if_throttled,
            retries: c.retries,
            backoff: Backoff {
                initial: c.retry_initial_backoff,
                max: c.retry_max_backoff,
            },
            rates: match c.rate_limit {
                RateLimit::Off => None,
                RateLimit::Percent(p) => {
                    let f = f64::from(p) / 100.0;
                    let records = f64::from(c.shard_records_per_second);
                    let bytes = c.shard_bytes_per_second as f64;
                    Some(Rates {
                        records_per_second: records * f,
                        bytes_per_second: bytes * f,
                        records_capacity: records.max(1.0),
                        bytes_capacity: bytes.max(largest_record),
                    })
                }
            },
        }
    }
}

/// One Kinesis record: a single user record, or an aggregate of several.
#[derive(Debug)]
pub(crate) struct KRecord {
    pub(crate) users: Vec<Pending>,
    /// The aggregate's layout; `None` for a single user record sent as itself.
    pub(crate) layout: Option<AggregateLayout>,
    /// Size of the record's data as sent.
    pub(crate) data_len: usize,
    pub(crate) lane: LaneId,
    deadline: Instant,
    expires: Instant,
}

impl KRecord {
    fn new(users: Vec<Pending>, layout: Option<AggregateLayout>, lane: LaneId) -> KRecord {
        debug_assert!(!users.is_empty());
        let layout = layout.filter(|_| users.len() > 1);
        let data_len = match &layout {
            Some(l) => l.encoded_len(),
            None => users[0].record.data.len(),
        };
        KRecord {
            deadline: users.iter().map(|u| u.deadline).min().expect("non-empty"),
            expires: users.iter().map(|u| u.expires).min().expect("non-empty"),
            users,
            layout,
            data_len,
            lane,
        }
    }

    /// A Kinesis record of these users, aggregated if more than one (they must fit, which
    /// they do when they are what remains of a record that fitted).
    fn rebuild(users: Vec<Pending>, lane: LaneId) -> KRecord {
        let layout = (users.len() > 1).then(|| {
            let mut l = AggregateLayout::new();
            for u in &users {
                l.push(
                    &u.record.partition_key,
                    u.record.explicit_hash_key.as_deref(),
                    u.record.data.len(),
                );
            }
            l
        });
        KRecord::new(users, layout, lane)
    }

    /// The PutRecords entry's partition key: `"a"` for an aggregate, else the user's.
    pub(crate) fn partition_key(&self) -> &str {
        if self.layout.is_some() {
            AGGREGATE_PARTITION_KEY
        } else {
            &self.users[0].record.partition_key
        }
    }

    /// The PutRecords entry's explicit hash key: the first user record's hash key (the KPL
    /// sets it on every record it sends, aggregated or not).
    pub(crate) fn explicit_hash_key(&self) -> u128 {
        self.users[0].hash_key
    }

    /// Bytes it counts against a PutRecords request's size limit.
    pub(crate) fn request_size(&self) -> usize {
        self.partition_key().len() + self.data_len
    }

    /// The data to send.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match &self.layout {
            Some(l) => l.encode(self.users.iter().map(|u| &u.record.data[..])),
            None => self.users[0].record.data.to_vec(),
        }
    }
}

/// A PutRecords request to send.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) stream: StreamIx,
    pub(crate) stream_name: Arc<str>,
    pub(crate) records: Vec<KRecord>,
}

/// One entry of a PutRecords response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryResult {
    Put {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// A failed call (the whole request, or a ListShards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) class: ErrorClass,
}

/// What came back for a request.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) request: Request,
    pub(crate) started: Instant,
    pub(crate) finished: Instant,
    pub(crate) outcome: Result<Vec<EntryResult>, CallError>,
}

/// A user record the pipeline is done with.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) stream: StreamIx,
    pub(crate) pending: Pending,
    pub(crate) verdict: Verdict,
}

/// The aggregate being filled in a lane.
#[derive(Debug)]
struct Open {
    layout: AggregateLayout,
    users: Vec<Pending>,
    deadline: Instant,
}

#[derive(Debug)]
struct Lane {
    open: Option<Open>,
    ready: VecDeque<KRecord>,
    limiter: Option<ShardLimiter>,
    /// Kinesis records of this lane in the collector or in a request in flight.
    in_flight: u32,
    /// Ordered mode: the front record's retry may not leave before this.
    blocked_until: Option<Instant>,
    /// Ordered mode: a record of this lane waits for a refreshed shard map.
    awaiting_map: bool,
    /// Its shard is closed: the lane only drains what it holds.
    retired: bool,
    /// Ordered mode: retired lanes with overlapping ranges not yet drained into this one.
    blockers: u32,
    /// Ordered mode, retired lane: the lanes it blocks.
    blocking: Vec<ShardIx>,
    /// In the stream's drain queue.
    queued: bool,
}

impl Lane {
    fn new(limiter: Option<ShardLimiter>) -> Lane {
        Lane {
            open: None,
            ready: VecDeque::new(),
            limiter,
            in_flight: 0,
            blocked_until: None,
            awaiting_map: false,
            retired: false,
            blockers: 0,
            blocking: Vec::new(),
            queued: false,
        }
    }

    /// Every user record it holds outside requests, in order: ready records front to back,
    /// then the open aggregate.
    fn take_users(&mut self) -> Vec<Pending> {
        let mut users = Vec::new();
        for kr in self.ready.drain(..) {
            users.extend(kr.users);
        }
        if let Some(open) = self.open.take() {
            users.extend(open.users);
        }
        users
    }
}

#[derive(Debug, Default)]
struct Collector {
    records: Vec<KRecord>,
    bytes: usize,
    deadline: Option<Instant>,
    full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    Idle,
    InFlight,
}

/// A record written to a shard the producer does not know yet: whether it is a wrong shard
/// is decided when the refreshed map tells that shard's range.
#[derive(Debug)]
struct Unverified {
    record: KRecord,
    shard_id: String,
    sequence_number: Arc<str>,
    started: Instant,
    finished: Instant,
}

#[derive(Debug)]
struct StreamState {
    name: Arc<str>,
    table: ShardTable,
    map: Option<ShardMap>,
    map_installed: Option<Instant>,
    fetch: Fetch,
    fetch_not_before: Instant,
    fetch_backoff: Duration,
    want_map: bool,
    /// No usable map (unordered mode): send through the unmapped lane.
    fallback: bool,
    /// Records put before the first map arrived.
    waiting: VecDeque<Pending>,
    /// Wrong-shard records waiting for the refreshed map (unordered mode).
    parked: Vec<Pending>,
    unverified: Vec<Unverified>,
    lanes: Vec<Option<Box<Lane>>>,
    unmapped: Lane,
    collector: Collector,
    drain: VecDeque<LaneId>,
}

impl StreamState {
    fn lane(&self, id: LaneId) -> Option<&Lane> {
        match id {
            LaneId::Unmapped => Some(&self.unmapped),
            LaneId::Shard(ix) => self.lanes.get(ix as usize).and_then(|l| l.as_deref()),
        }
    }

    fn lane_mut(&mut self, id: LaneId) -> Option<&mut Lane> {
        match id {
            LaneId::Unmapped => Some(&mut self.unmapped),
            LaneId::Shard(ix) => self
                .lanes
                .get_mut(ix as usize)
                .and_then(|l| l.as_deref_mut()),
        }
    }

    /// The lane, created if missing.
    fn lane_or_new(&mut self, id: LaneId, rates: Option<Rates>, now: Instant) -> &mut Lane {
        match id {
            LaneId::Unmapped => &mut self.unmapped,
            LaneId::Shard(ix) => {
                let i = ix as usize;
                if self.lanes.len() <= i {
                    self.lanes.resize_with(i + 1, || None);
                }
                self.lanes[i].get_or_insert_with(|| {
                    Box::new(Lane::new(rates.map(|r| ShardLimiter::new(r, now))))
                })
            }
        }
    }

    fn queue(&mut self, id: LaneId) {
        if let Some(lane) = self.lane_mut(id) {
            if !lane.queued && !lane.ready.is_empty() {
                lane.queued = true;
                self.drain.push_back(id);
            }
        }
    }

    /// Whether a response for a request started at `started` calls for a fresher map than
    /// the one installed (the KPL's `seen_at > updated_at`).
    fn map_older_than(&self, started: Instant) -> bool {
        self.map_installed.is_none_or(|t| t <= started)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Look at this lane again: aggregate deadline, limiter tokens, end of a retry backoff.
    Lane(StreamIx, LaneId),
    /// A ListShards may be retried.
    Fetch(StreamIx),
}

/// A user record waiting out its retry backoff (unordered mode).
#[derive(Debug)]
struct Retry {
    at: Instant,
    seq: u64,
    stream: StreamIx,
    pending: Pending,
}

impl PartialEq for Retry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Retry {}
impl PartialOrd for Retry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Retry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The producer's state machine.
#[derive(Debug)]
pub(crate) struct Pipeline {
    settings: Settings,
    streams: Vec<StreamState>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    retries: BinaryHeap<Reverse<Retry>>,
    retry_seq: u64,
    rng: StdRng,
    flushing: bool,
    next_sweep: Instant,
    /// User records held (from `put` until `Finished`).
    held: usize,
    cursor: usize,
}

impl Pipeline {
    pub(crate) fn new(settings: Settings, now: Instant, seed: u64) -> Pipeline {
        Pipeline {
            settings,
            streams: Vec::new(),
            timers: BinaryHeap::new(),
            retries: BinaryHeap::new(),
            retry_seq: 0,
            rng: StdRng::seed_from_u64(seed),
            flushing: false,
            next_sweep: now + SWEEP_INTERVAL,
            held: 0,
            cursor: 0,
        }
    }

    /// Registers a stream; its index is the number of streams registered before it.
    pub(crate) fn add_stream(&mut self, name: Arc<str>, now: Instant) -> StreamIx {
        self.streams.push(StreamState {
            name,
            table: ShardTable::default(),
            map: None,
            map_installed: None,
            fetch: Fetch::Idle,
            fetch_not_before: now,
            fetch_backoff: Duration::ZERO,
            want_map: true,
            fallback: false,
            waiting: VecDeque::new(),
            parked: Vec::new(),
            unverified: Vec::new(),
            lanes: Vec::new(),
            unmapped: Lane::new(None),
            collector: Collector::default(),
            drain: VecDeque::new(),
        });
        (self.streams.len() - 1) as StreamIx
    }

    /// User records held: accepted and not yet finished.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// While on, everything buffered is sent without waiting for deadlines or full requests.
    pub(crate) fn set_flushing(&mut self, on: bool) {
        self.flushing = on;
    }

    // ------------------------------------------------------------------ records in

    /// Accepts a user record.
    pub(crate) fn put(&mut self, stream: StreamIx, p: Pending, now: Instant) {
        self.held += 1;
        self.route(stream, p, now);
    }

    /// Sends a record to its lane (or to the waiting queue if there is no map yet).
    fn route(&mut self, stream: StreamIx, p: Pending, now: Instant) {
        let ordered = self.settings.ordered;
        let st = &mut self.streams[stream as usize];
        let lane = match &st.map {
            Some(map) => LaneId::Shard(map.lookup(p.hash_key)),
            None if st.fallback && !ordered => LaneId::Unmapped,
            None => {
                st.waiting.push_back(p);
                return;
            }
        };
        self.enqueue(stream, lane, p, now);
    }

    fn enqueue(&mut self, s: StreamIx, id: LaneId, p: Pending, now: Instant) {
        let set = &self.settings;
        let aggregate = set.aggregation && id != LaneId::Unmapped;
        let (max_count, max_size) = (set.aggregation_max_count, set.aggregation_max_size);
        let rates = set.rates.filter(|_| id != LaneId::Unmapped);
        let st = &mut self.streams[s as usize];
        let lane = st.lane_or_new(id, rates, now);
        if !aggregate {
            lane.ready.push_back(KRecord::new(vec![p], None, id));
            st.queue(id);
            return;
        }
        let (pk, ehk, len) = (
            p.record.partition_key.as_str(),
            p.record.explicit_hash_key.as_deref(),
            p.record.data.len(),
        );
        if let Some(open) = lane.open.as_mut() {
            if open.users.len() < max_count && open.layout.try_push(pk, ehk, len, max_size) {
                if p.deadline < open.deadline {
                    open.deadline = p.deadline;
                    self.timers.push(Reverse((p.deadline, Timer::Lane(s, id))));
                }
                open.users.push(p);
                if open.users.len() >= max_count {
                    Self::close(st, id);
                }
                return;
            }
            Self::close(st, id);
        }
        let lane = st.lane_or_new(id, rates, now);
        // Room for as many records like this one as fit, so the aggregate fills without
        // reallocating.
        let estimate = (max_size / (len + pk.len() + 8))
            .clamp(1, 4096)
            .min(max_count);
        let mut layout = AggregateLayout::with_capacity(estimate, pk.len());
        if !layout.try_push(pk, ehk, len, max_size) {
            // Too large to share an aggregate: on its own.
            lane.ready.push_back(KRecord::new(vec![p], None, id));
            st.queue(id);
            return;
        }
        let deadline = p.deadline;
        let mut users = Vec::with_capacity(estimate);
        users.push(p);
        lane.open = Some(Open {
            layout,
            users,
            deadline,
        });
        self.timers.push(Reverse((deadline, Timer::Lane(s, id))));
        if max_count <= 1 {
            Self::close(st, id);
        }
    }

    /// Closes the lane's open aggregate into its ready queue.
    fn close(st: &mut StreamState, id: LaneId) {
        let Some(lane) = st.lane_mut(id) else {
            return;
        };
        if let Some(open) = lane.open.take() {
            lane.ready
                .push_back(KRecord::new(open.users, Some(open.layout), id));
            st.queue(id);
        }
    }

    /// Packs users, in order, into Kinesis records for a lane (what `enqueue` would build).
    fn pack(&self, users: Vec<Pending>, id: LaneId) -> Vec<KRecord> {
        let set = &self.settings;
        let mut out = Vec::new();
        if !set.aggregation || id == LaneId::Unmapped {
            out.extend(users.into_iter().map(|u| KRecord::new(vec![u], None, id)));
            return out;
        }
        let mut cur: Vec<Pending> = Vec::new();
        let mut layout = AggregateLayout::new();
        for u in users {
            let (pk, ehk, len) = (
                u.record.partition_key.as_str(),
                u.record.explicit_hash_key.as_deref(),
                u.record.data.len(),
            );
            if cur.len() < set.aggregation_max_count
                && layout.try_push(pk, ehk, len, set.aggregation_max_size)
            {
                cur.push(u);
                continue;
            }
            if !cur.is_empty() {
                out.push(KRecord::new(
                    std::mem::take(&mut cur),
                    Some(std::mem::take(&mut layout)),
                    id,
                ));
            }
            let mut fresh = AggregateLayout::new();
            if fresh.try_push(pk, ehk, len, set.aggregation_max_size) {
                layout = fresh;
                cur.push(u);
            } else {
                out.push(KRecord::new(vec![u], None, id));
            }
        }
        if !cur.is_empty() {
            out.push(KRecord::new(cur, Some(layout), id));
        }
        out
    }

    // ------------------------------------------------------------------ time

    /// Fires what is due at `now`: retries whose backoff ended, aggregate deadlines, limiter
    /// and backoff waits, the expiry sweep; while flushing, closes every open aggregate.
    pub(crate) fn advance(&mut self, now: Instant, out: &mut Vec<Finished>) {
        while self.retries.peek().is_some_and(|r| r.0.at <= now) {
            let Reverse(r) = self.retries.pop().expect("peeked");
            let mut p = r.pending;
            if p.expires <= now {
                self.finish(out, r.stream, p, Verdict::Failed(PutErrorKind::Expired));
            } else {
                p.deadline = (now + self.settings.max_buffered_time / 2).min(p.expires);
                self.route(r.stream, p, now);
            }
        }
        while self.timers.peek().is_some_and(|t| t.0 .0 <= now) {
            let Reverse((_, timer)) = self.timers.pop().expect("peeked");
            if let Timer::Lane(s, id) = timer {
                let st = &mut self.streams[s as usize];
                let Some(lane) = st.lane_mut(id) else {
                    continue;
                };
                if lane.blocked_until.is_some_and(|t| t <= now) {
                    lane.blocked_until = None;
                }
                if lane.open.as_ref().is_some_and(|o| o.deadline <= now) {
                    Self::close(st, id);
                }
                st.queue(id);
            }
        }
        if self.flushing {
            for st in &mut self.streams {
                let ids: Vec<LaneId> = Self::lane_ids(st).collect();
                for id in ids {
                    Self::close(st, id);
                }
            }
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_INTERVAL;
            self.sweep(now, out);
        }
    }

    fn lane_ids(st: &StreamState) -> impl Iterator<Item = LaneId> + '_ {
        st.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(i, _)| LaneId::Shard(i as ShardIx))
            .chain(std::iter::once(LaneId::Unmapped))
    }

    /// Fails every expired record queued outside requests.
    fn sweep(&mut self, now: Instant, out: &mut Vec<Finished>) {
        for s in 0..self.streams.len() {
            let st = &mut self.streams[s];
            let mut expired: Vec<Pending> = Vec::new();
            let (keep, gone): (VecDeque<Pending>, VecDeque<Pending>) =
                st.waiting.drain(..).partition(|p| p.expires > now);
            st.waiting = keep;
            expired.extend(gone);
            let (keep, gone): (Vec<Pending>, Vec<Pending>) =
                st.parked.drain(..).partition(|p| p.expires > now);
            st.parked = keep;
            expired.extend(gone);
            let ids: Vec<LaneId> = Self::lane_ids(st).collect();
            for id in ids {
                let lane = st.lane_mut(id).expect("listed");
                if lane.ready.iter().all(|kr| kr.expires > now) {
                    continue;
                }
                let ready = std::mem::take(&mut lane.ready);
                for kr in ready {
                    if kr.expires > now {
                        lane.ready.push_back(kr);
                        continue;
                    }
                    let (keep, gone): (Vec<Pending>, Vec<Pending>) =
                        kr.users.into_iter().partition(|p| p.expires > now);
                    expired.extend(gone);
                    if !keep.is_empty() {
                        lane.ready.push_back(KRecord::rebuild(keep, id));
                    }
                }
            }
            for p in expired {
                self.finish(
                    out,
                    s as StreamIx,
                    p,
                    Verdict::Failed(PutErrorKind::Expired),
                );
            }
        }
    }

    /// When `advance` next has something to do; with `collectors`, also when a collector's
    /// oldest record is due (the driver asks for that only while it can send).
    pub(crate) fn next_wakeup(&self, collectors: bool) -> Option<Instant> {
        let mut t = self.timers.peek().map(|r| r.0 .0);
        let mut at = |i: Instant| t = Some(t.map_or(i, |t| t.min(i)));
        if let Some(r) = self.retries.peek() {
            at(r.0.at);
        }
        if self.held > 0 {
            at(self.next_sweep);
        }
        if collectors {
            for st in &self.streams {
                if let Some(d) = st.collector.deadline {
                    at(d);
                }
            }
        }
        t
    }

    // ------------------------------------------------------------------ requests out

    /// Moves ready records of a stream's queued lanes into its collector, while they fit.
    fn drain(&mut self, s: StreamIx, now: Instant, out: &mut Vec<Finished>) {
        let (max_count, max_size) = (
            self.settings.collection_max_count,
            self.settings.collection_max_size,
        );
        let ordered = self.settings.ordered;
        let mut expired: Vec<Pending> = Vec::new();
        let st = &mut self.streams[s as usize];
        while !st.collector.full {
            let Some(id) = st.drain.pop_front() else {
                break;
            };
            let (c_len, c_bytes) = (st.collector.records.len(), st.collector.bytes);
            let Some(lane) = st.lane_mut(id) else {
                continue;
            };
            lane.queued = false;
            if ordered
                && (lane.in_flight > 0 || lane.blockers > 0 || lane.awaiting_map || lane.retired)
            {
                continue; // requeued when what blocks it is over
            }
            if let Some(t) = lane.blocked_until {
                if t > now {
                    self.timers.push(Reverse((t, Timer::Lane(s, id))));
                    continue;
                }
                lane.blocked_until = None;
            }
            let Some(front) = lane.ready.front() else {
                continue;
            };
            if front.expires <= now {
                let kr = lane.ready.pop_front().expect("front");
                let (keep, gone): (Vec<Pending>, Vec<Pending>) =
                    kr.users.into_iter().partition(|p| p.expires > now);
                expired.extend(gone);
                if !keep.is_empty() {
                    lane.ready.push_front(KRecord::rebuild(keep, id));
                }
                lane.queued = true;
                st.drain.push_front(id);
                continue;
            }
            let size = front.request_size();
            if c_len >= max_count || c_bytes + size > max_size {
                lane.queued = true;
                st.collector.full = true;
                st.drain.push_front(id);
                break;
            }
            if let Some(limiter) = lane.limiter.as_mut() {
                if let Err(wait) = limiter.try_take(size, now) {
                    self.timers.push(Reverse((now + wait, Timer::Lane(s, id))));
                    continue;
                }
            }
            let kr = lane.ready.pop_front().expect("front");
            lane.in_flight += 1;
            let more = !lane.ready.is_empty() && !ordered;
            let c = &mut st.collector;
            c.bytes += size;
            c.deadline = Some(c.deadline.map_or(kr.deadline, |d| d.min(kr.deadline)));
            c.records.push(kr);
            if c.records.len() >= max_count {
                c.full = true;
            }
            if more {
                if let Some(lane) = st.lane_mut(id) {
                    lane.queued = true;
                }
                st.drain.push_back(id);
            }
        }
        for p in expired {
            self.finish(out, s, p, Verdict::Failed(PutErrorKind::Expired));
        }
    }

    /// The next request to send now, if any: a stream's collector that is full, due, or
    /// flushing. Streams take turns.
    pub(crate) fn next_request(
        &mut self,
        now: Instant,
        out: &mut Vec<Finished>,
    ) -> Option<Request> {
        let n = self.streams.len();
        for k in 0..n {
            let s = (self.cursor + k) % n;
            self.drain(s as StreamIx, now, out);
            let st = &mut self.streams[s];
            let c = &st.collector;
            if c.records.is_empty() {
                continue;
            }
            let due = c.deadline.is_some_and(|d| d <= now);
            if c.full || due || self.flushing {
                self.cursor = (s + 1) % n;
                let c = std::mem::take(&mut st.collector);
                return Some(Request {
                    stream: s as StreamIx,
                    stream_name: st.name.clone(),
                    records: c.records,
                });
            }
        }
        None
    }

    // ------------------------------------------------------------------ responses in

    fn finish(
        &mut self,
        out: &mut Vec<Finished>,
        stream: StreamIx,
        pending: Pending,
        verdict: Verdict,
    ) {
        self.held -= 1;
        out.push(Finished {
            stream,
            pending,
            verdict,
        });
    }

    /// Takes a response: every user record of the request is finished, retried, or parked.
    pub(crate) fn on_response(&mut self, resp: Response, now: Instant, out: &mut Vec<Finished>) {
        let Response {
            request,
            started,
            finished,
            outcome,
        } = resp;
        let s = request.stream;
        let lanes: Vec<LaneId> = request.records.iter().map(|k| k.lane).collect();
        match outcome {
            Err(e) => {
                let code: Arc<str> = e.code.into();
                let message: Arc<str> = e.message.into();
                for kr in request.records {
                    self.attempt_failed(
                        s, kr, &code, &message, e.class, started, finished, now, out,
                    );
                }
            }
            Ok(entries) if entries.len() != request.records.len() => {
                let code: Arc<str> = COUNT_MISMATCH.into();
                let message: Arc<str> = format!(
                    "the response has {} records, the request had {}",
                    entries.len(),
                    request.records.len()
                )
                .into();
                for kr in request.records {
                    for mut p in kr.users {
                        p.add_attempt(&code, &message, started, finished);
                        let kind = PutErrorKind::Rejected {
                            code: COUNT_MISMATCH.into(),
                        };
                        self.finish(out, s, p, Verdict::Failed(kind));
                    }
                }
            }
            Ok(entries) => {
                for (kr, e) in request.records.into_iter().zip(entries) {
                    match e {
                        EntryResult::Put {
                            shard_id,
                            sequence_number,
                        } => self.landed(
                            s,
                            kr,
                            shard_id,
                            sequence_number.into(),
                            started,
                            finished,
                            now,
                            out,
                        ),
                        EntryResult::Failed { code, message } => {
                            let class = classify(&code, None);
                            self.attempt_failed(
                                s,
                                kr,
                                &code.into(),
                                &message.into(),
                                class,
                                started,
                                finished,
                                now,
                                out,
                            );
                        }
                    }
                }
            }
        }
        for id in lanes {
            self.release(s, id, now);
        }
    }

    /// One Kinesis record of a request is done with its request.
    fn release(&mut self, s: StreamIx, id: LaneId, now: Instant) {
        let st = &mut self.streams[s as usize];
        let Some(lane) = st.lane_mut(id) else {
            return;
        };
        lane.in_flight -= 1;
        if lane.retired {
            self.maybe_explode(s, id, now);
        } else {
            st.queue(id);
        }
    }

    /// Empties a retired lane once nothing of it is in flight (and, in ordered mode, once
    /// the retired lanes before it have emptied into it): unordered, its records are routed
    /// anew; ordered, they go in front of the records of the lanes that replaced it.
    fn maybe_explode(&mut self, s: StreamIx, id: LaneId, now: Instant) {
        let ordered = self.settings.ordered;
        let mut work = vec![id];
        while let Some(id) = work.pop() {
            let Some(lane) = self.streams[s as usize].lane_mut(id) else {
                continue;
            };
            if !lane.retired || lane.in_flight > 0 || (ordered && lane.blockers > 0) {
                continue;
            }
            if ordered {
                work.extend(self.explode_ordered(s, id, now));
            } else {
                let users = lane.take_users();
                self.remove_lane(s, id);
                for p in users {
                    self.route(s, p, now);
                }
            }
        }
    }

    fn remove_lane(&mut self, s: StreamIx, id: LaneId) {
        if let LaneId::Shard(ix) = id {
            if let Some(slot) = self.streams[s as usize].lanes.get_mut(ix as usize) {
                *slot = None;
            }
        }
    }

    fn succeed(
        &mut self,
        s: StreamIx,
        kr: KRecord,
        shard_id: Arc<str>,
        sequence_number: Arc<str>,
        out: &mut Vec<Finished>,
    ) {
        let aggregated = kr.layout.is_some();
        for (i, p) in kr.users.into_iter().enumerate() {
            let verdict = Verdict::Put {
                shard_id: shard_id.clone(),
                sequence_number: sequence_number.clone(),
                sub_sequence_number: aggregated.then_some(i as u64),
            };
            self.finish(out, s, p, verdict);
        }
    }

    /// A Kinesis record was written to `shard_id`.
    #[allow(clippy::too_many_arguments)]
    fn landed(
        &mut self,
        s: StreamIx,
        kr: KRecord,
        shard_id: String,
        sequence_number: Arc<str>,
        started: Instant,
        finished: Instant,
        now: Instant,
        out: &mut Vec<Finished>,
    ) {
        let st = &mut self.streams[s as usize];
        let actual = st.table.get(&shard_id);
        let predicted = match kr.lane {
            LaneId::Shard(p) => p,
            LaneId::Unmapped => {
                let id =
                    actual.map_or_else(|| shard_id.as_str().into(), |a| st.table.id(a).clone());
                return self.succeed(s, kr, id, sequence_number, out);
            }
        };
        if actual == Some(predicted) {
            let id = st.table.id(predicted).clone();
            return self.succeed(s, kr, id, sequence_number, out);
        }
        // Another shard than predicted: the map is stale (the KPL refreshes here too).
        let fresh = st.map_older_than(started);
        if fresh {
            st.want_map = true;
        }
        let id: Arc<str> =
            actual.map_or_else(|| shard_id.as_str().into(), |a| st.table.id(a).clone());
        if kr.layout.is_none() {
            // A single record is routed by its own hash key: wherever it landed is right.
            return self.succeed(s, kr, id, sequence_number, out);
        }
        match actual.and_then(|a| st.table.range(a)) {
            Some(range) => {
                if Self::all_within(&kr, &range) {
                    self.succeed(s, kr, id, sequence_number, out);
                } else {
                    self.wrong_shard(s, kr, &shard_id, started, finished, fresh, now, out);
                }
            }
            None if fresh => {
                if self.settings.ordered {
                    if let Some(lane) = st.lane_mut(kr.lane) {
                        lane.awaiting_map = true;
                    }
                }
                st.unverified.push(Unverified {
                    record: kr,
                    shard_id,
                    sequence_number,
                    started,
                    finished,
                });
            }
            // The map was refreshed since the request left and still does not know the
            // shard: it closed again already. Send the records again.
            None => self.wrong_shard(s, kr, &shard_id, started, finished, false, now, out),
        }
    }

    fn all_within(kr: &KRecord, range: &HashKeyRange) -> bool {
        kr.users.iter().all(|u| range.contains(HashKey(u.hash_key)))
    }

    /// The record's aggregate landed where a consumer drops it (a user record outside the
    /// shard's range; the KCL then drops the whole aggregate): send all its user records
    /// again. (The KPL re-sends only the out-of-range ones and so loses the others.)
    #[allow(clippy::too_many_arguments)]
    fn wrong_shard(
        &mut self,
        s: StreamIx,
        kr: KRecord,
        shard_id: &str,
        started: Instant,
        finished: Instant,
        wait_for_map: bool,
        now: Instant,
        out: &mut Vec<Finished>,
    ) {
        let code: Arc<str> = WRONG_SHARD.into();
        let predicted = match kr.lane {
            LaneId::Shard(p) => self.streams[s as usize]
                .table
                .name(p)
                .map_or_else(|| "an older shard".to_string(), |n| n.to_string()),
            LaneId::Unmapped => "no shard".into(),
        };
        let message: Arc<str> =
            format!("landed on {shard_id}, not on the predicted {predicted}, which owns only part of its hash keys").into();
        let id = kr.lane;
        let mut keep = Vec::new();
        for mut p in kr.users {
            p.add_attempt(&code, &message, started, finished);
            if !self.settings.retries {
                let kind = PutErrorKind::NotRetried {
                    code: WRONG_SHARD.into(),
                };
                self.finish(out, s, p, Verdict::Failed(kind));
            } else if p.expires <= now {
                self.finish(out, s, p, Verdict::Failed(PutErrorKind::Expired));
            } else {
                keep.push(p);
            }
        }
        if keep.is_empty() {
            return;
        }
        let st = &mut self.streams[s as usize];
        if self.settings.ordered {
            let kr = KRecord::rebuild(keep, id);
            if let Some(lane) = st.lane_mut(id) {
                lane.ready.push_front(kr);
                lane.awaiting_map |= wait_for_map;
            }
        } else if wait_for_map {
            st.parked.extend(keep);
        } else {
            for p in keep {
                self.route(s, p, now);
            }
        }
    }

    /// An attempt for a whole Kinesis record failed.
    #[allow(clippy::too_many_arguments)]
    fn attempt_failed(
        &mut self,
        s: StreamIx,
        kr: KRecord,
        code: &Arc<str>,
        message: &Arc<str>,
        class: ErrorClass,
        started: Instant,
        finished: Instant,
        now: Instant,
        out: &mut Vec<Finished>,
    ) {
        let set = &self.settings;
        let fail = match class {
            ErrorClass::Fatal => Some(PutErrorKind::Rejected {
                code: code.to_string(),
            }),
            ErrorClass::Throttled if set.fail_if_throttled => Some(PutErrorKind::Throttled),
            _ if !set.retries => Some(PutErrorKind::NotRetried {
                code: code.to_string(),
            }),
            _ => None,
        };
        if class == ErrorClass::Throttled {
            if let Some(limiter) = self.streams[s as usize]
                .lane_mut(kr.lane)
                .and_then(|l| l.limiter.as_mut())
            {
                limiter.on_throttle(now);
            }
        }
        let id = kr.lane;
        let mut keep = Vec::new();
        for mut p in kr.users {
            p.add_attempt(code, message, started, finished);
            if let Some(kind) = &fail {
                self.finish(out, s, p, Verdict::Failed(kind.clone()));
            } else if p.expires <= now {
                self.finish(out, s, p, Verdict::Failed(PutErrorKind::Expired));
            } else {
                keep.push(p);
            }
        }
        if keep.is_empty() {
            return;
        }
        if self.settings.ordered {
            let failed = keep.iter().map(|p| p.attempts.len()).max().unwrap_or(1);
            let delay = self.settings.backoff.delay(failed, &mut self.rng);
            let until = now + delay;
            let kr = KRecord::rebuild(keep, id);
            if let Some(lane) = self.streams[s as usize].lane_mut(id) {
                lane.ready.push_front(kr);
                lane.blocked_until = Some(lane.blocked_until.map_or(until, |t| t.max(until)));
                self.timers.push(Reverse((until, Timer::Lane(s, id))));
            }
        } else {
            for p in keep {
                let delay = self.settings.backoff.delay(p.attempts.len(), &mut self.rng);
                let at = (now + delay).min(p.expires);
                self.retry_seq += 1;
                self.retries.push(Reverse(Retry {
                    at,
                    seq: self.retry_seq,
                    stream: s,
                    pending: p,
                }));
            }
        }
    }

    // ------------------------------------------------------------------ shard maps

    /// Streams whose shard map should be fetched now (each is then marked in flight).
    pub(crate) fn take_fetches(&mut self, now: Instant) -> Vec<(StreamIx, Arc<str>)> {
        let mut v = Vec::new();
        for (i, st) in self.streams.iter_mut().enumerate() {
            if st.fetch == Fetch::Idle && st.want_map && now >= st.fetch_not_before {
                st.fetch = Fetch::InFlight;
                st.want_map = false;
                v.push((i as StreamIx, st.name.clone()));
            }
        }
        v
    }

    /// A ListShards for a stream came back.
    pub(crate) fn on_shards(
        &mut self,
        s: StreamIx,
        result: Result<Vec<ShardInfo>, CallError>,
        now: Instant,
        out: &mut Vec<Finished>,
    ) {
        self.streams[s as usize].fetch = Fetch::Idle;
        let failure = match result {
            Ok(shards) => match self.install(s, shards, now, out) {
                Ok(()) => return,
                Err(e) => e,
            },
            Err(e) => e,
        };
        self.map_failed(s, failure, now, out);
    }

    fn map_failed(&mut self, s: StreamIx, e: CallError, now: Instant, out: &mut Vec<Finished>) {
        tracing::warn!(stream = %self.streams[s as usize].name, code = %e.code, message = %e.message, "shard map update failed");
        let ordered = self.settings.ordered;
        let st = &mut self.streams[s as usize];
        st.fetch_backoff = if st.fetch_backoff.is_zero() {
            MAP_MIN_BACKOFF
        } else {
            (st.fetch_backoff * 3 / 2).min(MAP_MAX_BACKOFF)
        };
        st.fetch_not_before = now + st.fetch_backoff;
        st.want_map = true;
        self.timers
            .push(Reverse((st.fetch_not_before, Timer::Fetch(s))));
        // Records on shards we cannot look up: send them again rather than risk that a
        // consumer drops their aggregate.
        let unverified = std::mem::take(&mut st.unverified);
        for u in unverified {
            self.wrong_shard(
                s,
                u.record,
                &u.shard_id,
                u.started,
                u.finished,
                false,
                now,
                out,
            );
        }
        let st = &mut self.streams[s as usize];
        if st.map.is_none() && !ordered {
            // Without a shard map (no ListShards permission, say), send unaggregated and
            // unlimited, as the KPL does.
            st.fallback = true;
            let waiting: Vec<Pending> = st.waiting.drain(..).collect();
            for p in waiting {
                self.enqueue(s, LaneId::Unmapped, p, now);
            }
        }
    }

    fn install(
        &mut self,
        s: StreamIx,
        shards: Vec<ShardInfo>,
        now: Instant,
        out: &mut Vec<Finished>,
    ) -> Result<(), CallError> {
        let ordered = self.settings.ordered;
        let rates = self.settings.rates;
        let st = &mut self.streams[s as usize];
        let open: Vec<(ShardIx, HashKeyRange)> = shards
            .iter()
            .map(|sh| (st.table.intern(&sh.id), sh.range))
            .collect();
        let map = ShardMap::new(open.clone()).map_err(|e| CallError {
            code: "InvalidShardMap".into(),
            message: e.to_string(),
            class: ErrorClass::Retryable,
        })?;
        for (ix, range) in &open {
            st.table.set_open(*ix, *range);
        }
        let old = st.map.replace(map);
        st.map_installed = Some(now);
        st.fetch_backoff = Duration::ZERO;
        st.fallback = false;
        tracing::debug!(stream = %st.name, shards = open.len(), "shard map updated");

        // Lanes of shards that left the map.
        let mut retired: Vec<ShardIx> = Vec::new();
        if let Some(old) = &old {
            for (ix, _) in old.shards() {
                if !st.map.as_ref().expect("installed").contains(ix) {
                    st.table.set_closed(ix, now);
                    if st.lane(LaneId::Shard(ix)).is_some() {
                        retired.push(ix);
                    }
                }
            }
        }
        for &ix in &retired {
            if ordered {
                let range = st.table.range(ix);
                let blocking: Vec<ShardIx> = open
                    .iter()
                    .filter(|(_, r)| range.is_some_and(|pr| overlaps(&pr, r)))
                    .map(|(n, _)| *n)
                    .collect();
                for &n in &blocking {
                    st.lane_or_new(LaneId::Shard(n), rates, now).blockers += 1;
                }
                let lane = st.lane_mut(LaneId::Shard(ix)).expect("retired lane");
                lane.retired = true;
                lane.blocking = blocking;
            } else {
                let lane = st.lane_mut(LaneId::Shard(ix)).expect("retired lane");
                lane.retired = true;
            }
        }

        // Records that waited for this map, in the order they came.
        let unverified = std::mem::take(&mut st.unverified);
        for u in unverified {
            let range = self.streams[s as usize]
                .table
                .get(&u.shard_id)
                .and_then(|a| self.streams[s as usize].table.range(a));
            match range {
                Some(r) if Self::all_within(&u.record, &r) => {
                    let st = &self.streams[s as usize];
                    let id = st
                        .table
                        .get(&u.shard_id)
                        .map(|a| st.table.id(a).clone())
                        .expect("known");
                    self.succeed(s, u.record, id, u.sequence_number, out);
                }
                _ => self.wrong_shard(
                    s,
                    u.record,
                    &u.shard_id,
                    u.started,
                    u.finished,
                    false,
                    now,
                    out,
                ),
            }
        }
        let st = &mut self.streams[s as usize];
        for lane in st.lanes.iter_mut().flatten() {
            lane.awaiting_map = false;
        }
        let unmapped = st.unmapped.take_users();
        let waiting: Vec<Pending> = st.waiting.drain(..).collect();
        let parked = std::mem::take(&mut st.parked);
        for p in unmapped.into_iter().chain(waiting).chain(parked) {
            self.route(s, p, now);
        }
        for ix in retired {
            self.maybe_explode(s, LaneId::Shard(ix), now);
        }
        // Forget shards closed long ago that no lane uses.
        let st = &mut self.streams[s as usize];
        let lanes = &st.lanes;
        st.table.prune(now, |ix| {
            lanes.get(ix as usize).is_some_and(|l| l.is_some())
        });
        let ids: Vec<LaneId> = Self::lane_ids(st).collect();
        for id in ids {
            st.queue(id);
        }
        Ok(())
    }

    /// Ordered mode: moves a drained retired lane's records, in order, in front of the
    /// records of the lanes that succeeded its shard (those overlapping its range in the
    /// map that retired it), and unblocks those. Returns the successors that are retired
    /// themselves, which may now empty in turn.
    fn explode_ordered(&mut self, s: StreamIx, id: LaneId, now: Instant) -> Vec<LaneId> {
        let rates = self.settings.rates;
        let st = &mut self.streams[s as usize];
        let Some(lane) = st.lane_mut(id) else {
            return Vec::new();
        };
        let blocked_until = lane.blocked_until;
        let successors = std::mem::take(&mut lane.blocking);
        let users = lane.take_users();
        self.remove_lane(s, id);
        let st = &self.streams[s as usize];
        let mut by_lane: Vec<(LaneId, Vec<Pending>)> = Vec::new();
        for p in users {
            let key = HashKey(p.hash_key);
            let target = successors
                .iter()
                .copied()
                .find(|&n| st.table.range(n).is_some_and(|r| r.contains(key)))
                .or_else(|| st.map.as_ref().map(|m| m.lookup(p.hash_key)))
                .expect("a retired lane implies a map");
            let target = LaneId::Shard(target);
            match by_lane.iter_mut().find(|(l, _)| *l == target) {
                Some((_, v)) => v.push(p),
                None => by_lane.push((target, vec![p])),
            }
        }
        let packed: Vec<(LaneId, Vec<KRecord>)> = by_lane
            .into_iter()
            .map(|(l, users)| (l, self.pack(users, l)))
            .collect();
        let st = &mut self.streams[s as usize];
        for (target, records) in packed {
            let lane = st.lane_or_new(target, rates, now);
            for kr in records.into_iter().rev() {
                lane.ready.push_front(kr);
            }
            if let Some(t) = blocked_until {
                lane.blocked_until = Some(lane.blocked_until.map_or(t, |b| b.max(t)));
                self.timers.push(Reverse((t, Timer::Lane(s, target))));
            }
        }
        let mut retired = Vec::new();
        for n in successors {
            let id = LaneId::Shard(n);
            if let Some(lane) = st.lane_mut(id) {
                lane.blockers = lane.blockers.saturating_sub(1);
                if lane.retired {
                    retired.push(id);
                }
            }
            st.queue(id);
        }
        retired
    }

    // ------------------------------------------------------------------ introspection

    /// Streams registered.
    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The name of a stream.
    pub(crate) fn stream_name(&self, s: StreamIx) -> &Arc<str> {
        &self.streams[s as usize].name
    }

    /// Whether any stream's lane still queues a record with nothing able to send it
    /// (used by tests).
    #[cfg(test)]
    fn lane_of(&self, s: StreamIx, shard_id: &str) -> Option<&Lane> {
        let st = &self.streams[s as usize];
        st.lane(LaneId::Shard(st.table.get(shard_id)?))
    }
}

fn overlaps(a: &HashKeyRange, b: &HashKeyRange) -> bool {
    a.start <= b.end && b.start <= a.end
}

#[cfg(test)]
mod tests;
