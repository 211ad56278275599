//! The pipeline alone, driven by explicit instants (a paused clock): exact assertions on
//! which records it puts together, when it sends them, and what each response leads to.

use super::*;
use crate::record::{PutHandle, Record};
use riffle_core::Aggregate;

const MS: Duration = Duration::from_millis(1);

fn config() -> Config {
    Config {
        rate_limit: RateLimit::Off,
        ..Config::default()
    }
}

/// Stream shards as a fresh stream of `n` has them.
fn shards(n: u32) -> Vec<ShardInfo> {
    HashKeyRange::even_split(n)
        .into_iter()
        .enumerate()
        .map(|(i, range)| ShardInfo {
            id: format!("shardId-{i:012}"),
            range,
        })
        .collect()
}

fn shard_id(i: u32) -> String {
    format!("shardId-{i:012}")
}

/// A partition key whose hash key lies in shard `shard` of `n` evenly split shards.
fn key_in(shard: u32, n: u32, nth: usize) -> String {
    let r = HashKeyRange::even_split(n)[shard as usize];
    (0..)
        .map(|i| format!("k{shard}-{i}"))
        .filter(|k| r.contains(HashKey::from_partition_key(k)))
        .nth(nth)
        .expect("some key")
}

struct H {
    p: Pipeline,
    t0: Instant,
    s: StreamIx,
    out: Vec<Finished>,
    handles: Vec<PutHandle>,
    cfg: Config,
}

impl H {
    fn new(cfg: Config) -> H {
        let t0 = Instant::now();
        let mut p = Pipeline::new(Settings::from_config(&cfg), t0, 1);
        let s = p.add_stream("s".into(), t0);
        H {
            p,
            t0,
            s,
            out: Vec::new(),
            handles: Vec::new(),
            cfg,
        }
    }

    /// A pipeline with a map of `n` shards installed at t0.
    fn with_map(cfg: Config, n: u32) -> H {
        let mut h = H::new(cfg);
        let f = h.p.take_fetches(h.t0);
        assert_eq!(f.len(), 1);
        h.p.on_shards(h.s, Ok(shards(n)), h.t0, &mut h.out);
        h
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + MS * ms as u32
    }

    fn put_at(&mut self, ms: u64, pk: &str, data: &[u8]) {
        let now = self.at(ms);
        let rec = Record::new(pk, data.to_vec());
        let hash = HashKey::from_partition_key(pk).0;
        let (pending, handle) = Pending::new(
            rec,
            hash,
            now,
            self.cfg.record_max_buffered_time,
            self.cfg.record_ttl,
            0,
        );
        self.p.put(self.s, pending, now);
        self.handles.push(handle);
    }

    fn tick(&mut self, ms: u64) -> Option<Request> {
        let now = self.at(ms);
        self.p.advance(now, &mut self.out);
        self.p.next_request(now, &mut self.out)
    }

    fn respond(&mut self, ms: u64, req: Request, entries: Vec<EntryResult>) {
        let now = self.at(ms);
        let resp = Response {
            request: req,
            started: now,
            finished: now,
            outcome: Ok(entries),
        };
        self.p.on_response(resp, now, &mut self.out);
    }

    fn fail(&mut self, ms: u64, req: Request, code: &str, class: ErrorClass) {
        let now = self.at(ms);
        let resp = Response {
            request: req,
            started: now,
            finished: now,
            outcome: Err(CallError {
                code: code.into(),
                message: "whole request".into(),
                class,
            }),
        };
        self.p.on_response(resp, now, &mut self.out);
    }

    /// Answers every record as written to its predicted shard.
    fn ok_all(&mut self, ms: u64, req: Request) {
        let entries = req
            .records
            .iter()
            .enumerate()
            .map(|(i, kr)| EntryResult::Put {
                shard_id: predicted(&self.p, self.s, kr),
                sequence_number: format!("{}", 1000 + i),
            })
            .collect();
        self.respond(ms, req, entries);
    }

    fn verdicts(&mut self) -> Vec<(String, Verdict)> {
        self.out
            .drain(..)
            .map(|f| (f.pending.record.partition_key.clone(), f.verdict))
            .collect()
    }
}

fn predicted(p: &Pipeline, s: StreamIx, kr: &KRecord) -> String {
    match kr.lane {
        LaneId::Shard(ix) => p.streams[s as usize].table.id(ix).to_string(),
        LaneId::Unmapped => "shardId-000000000000".into(),
    }
}

fn keys(kr: &KRecord) -> Vec<&str> {
    kr.users
        .iter()
        .map(|u| u.record.partition_key.as_str())
        .collect()
}

fn put_ok(v: &Verdict) -> bool {
    matches!(v, Verdict::Put { .. })
}

#[test]
fn records_wait_for_the_first_map_then_aggregate_per_shard() {
    let mut h = H::new(config());
    let a0 = key_in(0, 2, 0);
    let a1 = key_in(0, 2, 1);
    let b0 = key_in(1, 2, 0);
    h.put_at(0, &a0, b"one");
    h.put_at(1, &b0, b"two");
    h.put_at(2, &a1, b"three");
    assert!(h.tick(200).is_none(), "nothing leaves without a map");
    assert_eq!(h.p.take_fetches(h.at(200)).len(), 1);
    assert!(
        h.p.take_fetches(h.at(200)).is_empty(),
        "one fetch at a time"
    );
    h.p.on_shards(h.s, Ok(shards(2)), h.at(201), &mut h.out);
    // The records' deadlines have passed: everything leaves at once, one aggregate per shard.
    let req = h.tick(201).expect("due");
    assert_eq!(req.records.len(), 2);
    let (first, second) = (&req.records[0], &req.records[1]);
    assert_eq!(keys(first), vec![a0.as_str(), a1.as_str()]);
    assert_eq!(first.partition_key(), "a");
    assert_eq!(
        first.explicit_hash_key(),
        HashKey::from_partition_key(&a0).0
    );
    let bytes = first.encode();
    let agg = Aggregate::parse(&bytes).expect("an aggregate");
    let datas: Vec<&[u8]> = agg.records.iter().map(|r| r.data).collect();
    assert_eq!(datas, vec![&b"one"[..], &b"three"[..]]);
    // A lone record goes as itself, under its own key, with its hash key explicit.
    assert_eq!(keys(second), vec![b0.as_str()]);
    assert!(second.layout.is_none());
    assert_eq!(second.partition_key(), b0);
    assert_eq!(second.encode(), b"two");
    assert_eq!(
        second.explicit_hash_key(),
        HashKey::from_partition_key(&b0).0
    );
    assert_eq!(second.request_size(), b0.len() + 3);
}

#[test]
fn the_oldest_records_deadline_sends_the_request() {
    let mut h = H::with_map(config(), 1);
    h.put_at(0, "a", b"x");
    h.put_at(60, "b", b"y");
    assert!(h.tick(99).is_none());
    assert_eq!(h.p.next_wakeup(true), Some(h.at(100)));
    let req = h.tick(100).expect("the first record's deadline");
    assert_eq!(req.records.len(), 1);
    assert_eq!(keys(&req.records[0]), vec!["a", "b"]);
}

#[test]
fn aggregates_close_at_their_size_and_count_limits() {
    let cfg = Config {
        aggregation_max_size: 200,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    for i in 0..10 {
        h.put_at(0, &format!("key-{i}"), &[i as u8; 40]);
    }
    let req = h.tick(100).unwrap();
    let sizes: Vec<usize> = req.records.iter().map(|k| k.data_len).collect();
    let counts: Vec<usize> = req.records.iter().map(|k| k.users.len()).collect();
    // Each record costs 46 bytes (tag, length, index, data field) plus 7 for its key:
    // three fit into 200 with the 20 bytes of magic and digest.
    assert_eq!(counts, vec![3, 3, 3, 1]);
    assert_eq!(sizes, vec![20 + 3 * 53, 20 + 3 * 53, 20 + 3 * 53, 40]);
    for kr in &req.records[..3] {
        assert_eq!(kr.encode().len(), kr.data_len);
        assert!(kr.data_len <= 200);
    }

    let cfg = Config {
        aggregation_max_count: 4,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    for i in 0..9 {
        h.put_at(0, "same", &[i]);
    }
    let req = h.tick(100).unwrap();
    let counts: Vec<usize> = req.records.iter().map(|k| k.users.len()).collect();
    assert_eq!(counts, vec![4, 4, 1]);
}

#[test]
fn a_record_too_large_to_share_goes_alone_and_keeps_order() {
    let cfg = Config {
        aggregation_max_size: 100,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    h.put_at(0, "a", b"small");
    h.put_at(0, "b", &[7; 100]);
    h.put_at(0, "c", b"small");
    let req = h.tick(100).unwrap();
    let groups: Vec<Vec<&str>> = req.records.iter().map(keys).collect();
    assert_eq!(groups, vec![vec!["a"], vec!["b"], vec!["c"]]);
    assert!(req.records.iter().all(|k| k.layout.is_none()));
}

#[test]
fn aggregation_off_sends_every_record_alone() {
    let cfg = Config {
        aggregation_enabled: false,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    for k in ["a", "b", "c"] {
        h.put_at(0, k, b"d");
    }
    let req = h.tick(100).unwrap();
    assert_eq!(req.records.len(), 3);
    assert!(req
        .records
        .iter()
        .all(|k| k.layout.is_none() && k.users.len() == 1));
}

#[test]
fn full_requests_leave_before_the_deadline() {
    let cfg = Config {
        aggregation_enabled: false,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    for i in 0..501 {
        h.put_at(0, &format!("k{i}"), b"d");
    }
    let req = h.tick(0).expect("500 records fill a request");
    assert_eq!(req.records.len(), 500);
    assert!(h.tick(99).is_none(), "the 501st waits for its deadline");
    assert_eq!(h.tick(100).unwrap().records.len(), 1);

    // By size: 5 MiB of 600 KiB records takes eight, the ninth waits.
    let mut h = H::with_map(
        Config {
            aggregation_enabled: false,
            ..config()
        },
        1,
    );
    for i in 0..9 {
        h.put_at(0, &format!("k{i}"), &vec![0; 600 * 1024]);
    }
    let req = h.tick(0).expect("full by size");
    assert_eq!(req.records.len(), 8);
    let bytes: usize = req.records.iter().map(KRecord::request_size).sum();
    assert!(bytes <= 5 * 1024 * 1024);
    assert!(h.tick(1).is_none());
}

#[test]
fn success_resolves_every_user_record_with_its_sub_sequence_number() {
    let mut h = H::with_map(config(), 1);
    h.put_at(0, "a", b"1");
    h.put_at(0, "b", b"2");
    h.put_at(0, "c", b"3");
    let req = h.tick(100).unwrap();
    assert_eq!(h.p.held(), 3);
    h.ok_all(101, req);
    assert_eq!(h.p.held(), 0);
    let v = h.verdicts();
    let subs: Vec<Option<u64>> = v
        .iter()
        .map(|(_, v)| match v {
            Verdict::Put {
                sub_sequence_number,
                shard_id,
                sequence_number,
            } => {
                assert_eq!(&**shard_id, "shardId-000000000000");
                assert_eq!(&**sequence_number, "1000");
                *sub_sequence_number
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(subs, vec![Some(0), Some(1), Some(2)]);
}

#[test]
fn throttled_records_back_off_and_slow_their_shard() {
    let cfg = Config {
        rate_limit: RateLimit::Percent(150),
        ..Config::default()
    };
    let mut h = H::with_map(cfg, 1);
    h.put_at(0, "a", b"1");
    let req = h.tick(100).unwrap();
    h.respond(
        101,
        req,
        vec![EntryResult::Failed {
            code: "ProvisionedThroughputExceededException".into(),
            message: "slow down".into(),
        }],
    );
    assert!(h.out.is_empty(), "retried, not failed");
    assert_eq!(h.p.held(), 1);
    let lane = h.p.lane_of(h.s, "shardId-000000000000").unwrap();
    assert_eq!(lane.limiter.as_ref().unwrap().factor(), 0.5);
    // The retry waits out a jittered backoff of at most 100 ms.
    let at = h.p.retries.peek().unwrap().0.at;
    assert!(at <= h.at(201), "{:?}", at - h.at(101));
    // Then it goes through the limiter (emptied by the throttle: one token at 750/s) and
    // is collected with a deadline of half the buffering time.
    let mut sent = None;
    for ms in 101..=400 {
        if let Some(r) = h.tick(ms) {
            sent = Some((ms, r));
            break;
        }
    }
    let (ms, req) = sent.expect("the retry is sent");
    assert!(ms <= 201 + 50 + 2, "sent at {ms} ms");
    assert_eq!(req.records[0].users[0].attempts.len(), 1);
    h.ok_all(ms, req);
    match &h.verdicts()[..] {
        [(_, Verdict::Put { .. })] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn fail_if_throttled_fails_at_once() {
    let cfg = Config {
        fail_if_throttled: true,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    h.put_at(0, "a", b"1");
    let req = h.tick(100).unwrap();
    h.respond(
        101,
        req,
        vec![EntryResult::Failed {
            code: "ProvisionedThroughputExceededException".into(),
            message: "slow down".into(),
        }],
    );
    assert_eq!(
        h.verdicts(),
        vec![("a".into(), Verdict::Failed(PutErrorKind::Throttled))]
    );
}

#[test]
fn non_retryable_errors_fail_at_once_and_retries_can_be_off() {
    let mut h = H::with_map(config(), 1);
    h.put_at(0, "a", b"1");
    let req = h.tick(100).unwrap();
    h.fail(101, req, "ResourceNotFoundException", ErrorClass::Fatal);
    let v = h.out.pop().unwrap();
    assert_eq!(
        v.verdict,
        Verdict::Failed(PutErrorKind::Rejected {
            code: "ResourceNotFoundException".into()
        })
    );
    assert_eq!(v.pending.attempts.len(), 1);
    assert_eq!(
        v.pending.attempts[0].error_code(),
        "ResourceNotFoundException"
    );

    let cfg = Config {
        retries: false,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    h.put_at(0, "a", b"1");
    let req = h.tick(100).unwrap();
    h.fail(101, req, "InternalFailure", ErrorClass::Retryable);
    assert_eq!(
        h.verdicts(),
        vec![(
            "a".into(),
            Verdict::Failed(PutErrorKind::NotRetried {
                code: "InternalFailure".into()
            })
        )]
    );
}

#[test]
fn a_failed_request_retries_every_record_until_the_ttl() {
    let cfg = Config {
        record_ttl: Duration::from_secs(2),
        ..config()
    };
    let mut h = H::with_map(cfg, 2);
    h.put_at(0, &key_in(0, 2, 0), b"1");
    h.put_at(0, &key_in(1, 2, 0), b"2");
    let mut ms = 100;
    let mut requests = 0;
    while ms < 5000 && h.p.held() > 0 {
        if let Some(req) = h.tick(ms) {
            requests += 1;
            h.fail(ms, req, "ConnectionError", ErrorClass::Retryable);
        }
        ms += 1;
    }
    assert!(ms <= 2001, "expired at the ttl, not later: {ms}");
    let v = h.out.drain(..).collect::<Vec<_>>();
    assert_eq!(v.len(), 2);
    let mut attempts = 0;
    for f in v {
        assert_eq!(f.verdict, Verdict::Failed(PutErrorKind::Expired));
        assert!(
            f.pending.attempts.len() >= 4,
            "{}",
            f.pending.attempts.len()
        );
        assert!(f
            .pending
            .attempts
            .iter()
            .all(|a| a.error_code() == "ConnectionError"));
        attempts += f.pending.attempts.len();
    }
    // Each attempt of each record was in some request (both share the first).
    assert!(
        requests >= attempts / 2 && requests <= attempts,
        "{requests} requests"
    );
}

#[test]
fn backoff_grows_between_attempts() {
    let mut h = H::with_map(config(), 1);
    h.put_at(0, "a", b"1");
    let mut sent_at = Vec::new();
    for ms in 100..20_000 {
        if let Some(req) = h.tick(ms) {
            sent_at.push(ms);
            h.fail(ms, req, "InternalFailure", ErrorClass::Retryable);
        }
        if sent_at.len() == 8 {
            break;
        }
    }
    let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Full jitter below 100, 200, 400, ... ms, plus at most 50 ms of buffering each.
    for (i, gap) in gaps.iter().enumerate() {
        assert!(*gap <= (100u64 << i) + 51, "gap {i} = {gap}");
    }
    assert!(gaps.iter().sum::<u64>() > 300, "{gaps:?}");
}

#[test]
fn a_count_mismatch_fails_the_request() {
    let mut h = H::with_map(config(), 2);
    h.put_at(0, &key_in(0, 2, 0), b"1");
    h.put_at(0, &key_in(1, 2, 0), b"2");
    let req = h.tick(100).unwrap();
    h.respond(
        101,
        req,
        vec![EntryResult::Put {
            shard_id: shard_id(0),
            sequence_number: "1".into(),
        }],
    );
    let v = h.verdicts();
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|(_, v)| *v
        == Verdict::Failed(PutErrorKind::Rejected {
            code: COUNT_MISMATCH.into()
        })));
}

/// The shards after splitting shard 0 of a 1-shard stream at the midpoint.
fn split_map() -> Vec<ShardInfo> {
    let (lo, hi) = HashKeyRange::FULL
        .split_at(HashKeyRange::FULL.midpoint())
        .unwrap();
    vec![
        ShardInfo {
            id: shard_id(1),
            range: lo,
        },
        ShardInfo {
            id: shard_id(2),
            range: hi,
        },
    ]
}

#[test]
fn an_aggregate_on_an_unknown_shard_waits_for_the_map_then_is_resent_if_split() {
    let mut h = H::with_map(config(), 1);
    // Two keys on each side of the midpoint, so the split divides the aggregate.
    let lo = key_in(0, 2, 0);
    let hi = key_in(1, 2, 0);
    h.put_at(0, &lo, b"low");
    h.put_at(0, &hi, b"high");
    let req = h.tick(100).unwrap();
    assert_eq!(req.records.len(), 1);
    // The broker split the shard meanwhile; the aggregate went by its explicit hash key
    // (the first record's) to the low child, unknown to us.
    h.respond(
        101,
        req,
        vec![EntryResult::Put {
            shard_id: shard_id(1),
            sequence_number: "77".into(),
        }],
    );
    assert!(
        h.out.is_empty(),
        "not decided before the map says where shard 1 lies"
    );
    let f = h.p.take_fetches(h.at(101));
    assert_eq!(f.len(), 1, "a refresh is asked for");
    h.p.on_shards(h.s, Ok(split_map()), h.at(102), &mut h.out);
    assert!(
        h.out.is_empty(),
        "the high record made the aggregate a wrong-shard one"
    );
    // Both user records go again, each to its own child.
    let req = h.tick(200).unwrap();
    let mut groups: Vec<(String, Vec<&str>)> = req
        .records
        .iter()
        .map(|kr| (predicted(&h.p, h.s, kr), keys(kr)))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            (shard_id(1), vec![lo.as_str()]),
            (shard_id(2), vec![hi.as_str()])
        ]
    );
    for kr in &req.records {
        let a = &kr.users[0].attempts;
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].error_code(), WRONG_SHARD);
    }
    h.ok_all(201, req);
    let v = h.verdicts();
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|(_, v)| put_ok(v)));
}

#[test]
fn an_aggregate_wholly_inside_the_shard_it_landed_on_is_done() {
    let mut h = H::with_map(config(), 1);
    let lo1 = key_in(0, 2, 0);
    let lo2 = key_in(0, 2, 1);
    h.put_at(0, &lo1, b"1");
    h.put_at(0, &lo2, b"2");
    let req = h.tick(100).unwrap();
    h.respond(
        101,
        req,
        vec![EntryResult::Put {
            shard_id: shard_id(1),
            sequence_number: "9".into(),
        }],
    );
    assert!(h.out.is_empty());
    assert_eq!(h.p.take_fetches(h.at(101)).len(), 1);
    h.p.on_shards(h.s, Ok(split_map()), h.at(102), &mut h.out);
    let v = h.verdicts();
    assert_eq!(v.len(), 2);
    for (_, verdict) in v {
        match verdict {
            Verdict::Put { shard_id: s, .. } => assert_eq!(&*s, shard_id(1)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_single_record_is_right_wherever_it_lands_but_asks_for_a_fresh_map() {
    let mut h = H::with_map(config(), 1);
    h.put_at(0, "only", b"1");
    let req = h.tick(100).unwrap();
    assert!(h.p.take_fetches(h.at(100)).is_empty());
    h.respond(
        101,
        req,
        vec![EntryResult::Put {
            shard_id: shard_id(5),
            sequence_number: "9".into(),
        }],
    );
    match &h.verdicts()[..] {
        [(_, Verdict::Put { shard_id: s, .. })] => assert_eq!(&**s, shard_id(5)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.p.take_fetches(h.at(101)).len(), 1);
}

#[test]
fn without_list_shards_records_go_unaggregated() {
    let mut h = H::new(config());
    h.put_at(0, "a", b"1");
    h.put_at(0, "b", b"2");
    assert_eq!(h.p.take_fetches(h.at(0)).len(), 1);
    let denied = CallError {
        code: "AccessDeniedException".into(),
        message: "no ListShards for you".into(),
        class: ErrorClass::Fatal,
    };
    h.p.on_shards(h.s, Err(denied.clone()), h.at(1), &mut h.out);
    let req = h.tick(100).unwrap();
    assert_eq!(req.records.len(), 2);
    assert!(req
        .records
        .iter()
        .all(|k| k.lane == LaneId::Unmapped && k.layout.is_none()));
    // The map is asked for again after a backoff of 1 s, then 1.5 s.
    assert!(h.p.take_fetches(h.at(999)).is_empty());
    assert_eq!(h.p.take_fetches(h.at(1001)).len(), 1);
    h.p.on_shards(h.s, Err(denied), h.at(1002), &mut h.out);
    assert!(h.p.take_fetches(h.at(2501)).is_empty());
    assert_eq!(h.p.take_fetches(h.at(2502)).len(), 1);
    // Once a map comes, records aggregate again.
    h.p.on_shards(h.s, Ok(shards(1)), h.at(2503), &mut h.out);
    h.ok_all(2504, req);
    h.put_at(2600, "c", b"3");
    h.put_at(2600, "d", b"4");
    let req = h.tick(2700).unwrap();
    assert_eq!(req.records.len(), 1);
    assert!(req.records[0].layout.is_some());
}

#[test]
fn a_map_that_is_no_partition_is_refused() {
    let mut h = H::new(config());
    h.put_at(0, "a", b"1");
    h.p.take_fetches(h.at(0));
    let mut bad = shards(2);
    bad.pop();
    h.p.on_shards(h.s, Ok(bad), h.at(1), &mut h.out);
    assert!(h.p.streams[0].map.is_none());
    assert_eq!(h.p.take_fetches(h.at(1001)).len(), 1);
}

#[test]
fn the_limiter_holds_records_to_the_shards_rate() {
    let cfg = Config {
        rate_limit: RateLimit::Percent(100),
        shard_records_per_second: 10,
        aggregation_enabled: false,
        ..Config::default()
    };
    let mut h = H::with_map(cfg, 1);
    for i in 0..15 {
        h.put_at(0, &format!("k{i}"), b"d");
    }
    // A full bucket of ten, then one more every 100 ms.
    let req = h.tick(100).unwrap();
    assert_eq!(req.records.len(), 10);
    h.ok_all(100, req);
    let mut sent = Vec::new();
    for ms in 101..=700 {
        if let Some(req) = h.tick(ms) {
            sent.push((ms, req.records.len()));
            h.ok_all(ms, req);
        }
    }
    assert_eq!(sent.len(), 5, "{sent:?}");
    for (i, (ms, n)) in sent.iter().enumerate() {
        assert_eq!(*n, 1);
        let expected = 100 + 100 * (i as u64 + 1);
        assert!((expected..=expected + 1).contains(ms), "{sent:?}");
    }
}

#[test]
fn the_sweep_expires_records_stuck_behind_the_limiter() {
    let cfg = Config {
        rate_limit: RateLimit::Percent(1),
        shard_records_per_second: 1,
        aggregation_enabled: false,
        record_ttl: Duration::from_millis(1500),
        ..Config::default()
    };
    let mut h = H::with_map(cfg, 1);
    for i in 0..3 {
        h.put_at(0, &format!("k{i}"), b"d");
    }
    let req = h.tick(100).unwrap();
    assert_eq!(req.records.len(), 1);
    h.ok_all(100, req);
    assert!(h.tick(1400).is_none());
    h.tick(2399);
    assert_eq!(h.out.len(), 1, "the next sweep is a second after the last");
    h.tick(2400);
    let v = h.verdicts();
    assert_eq!(v.len(), 3);
    assert!(put_ok(&v[0].1));
    assert_eq!(v[1].1, Verdict::Failed(PutErrorKind::Expired));
    assert_eq!(v[2].1, Verdict::Failed(PutErrorKind::Expired));
    assert_eq!(h.p.held(), 0);
}

#[test]
fn flushing_sends_without_waiting() {
    let mut h = H::with_map(config(), 1);
    h.put_at(0, "a", b"1");
    assert!(h.tick(1).is_none());
    h.p.set_flushing(true);
    let req = h.tick(1).expect("flushed");
    assert_eq!(keys(&req.records[0]), vec!["a"]);
}

#[test]
fn ordered_mode_keeps_one_record_per_shard_in_flight() {
    let cfg = Config {
        ordered: true,
        aggregation_max_count: 2,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    for k in ["a", "b", "c", "d", "e"] {
        h.put_at(0, k, k.as_bytes());
    }
    let req = h.tick(100).unwrap();
    assert_eq!(
        req.records.len(),
        1,
        "one Kinesis record of the shard per request"
    );
    assert_eq!(keys(&req.records[0]), vec!["a", "b"]);
    assert!(h.tick(101).is_none(), "the next waits for the response");
    // Throttled: the same two go again, first, after the backoff.
    h.respond(
        102,
        req,
        vec![EntryResult::Failed {
            code: "ProvisionedThroughputExceededException".into(),
            message: "slow".into(),
        }],
    );
    let mut order = Vec::new();
    for ms in 103..2000 {
        if let Some(req) = h.tick(ms) {
            assert_eq!(req.records.len(), 1);
            order.push(keys(&req.records[0]).join(""));
            h.ok_all(ms, req);
        }
    }
    assert_eq!(order, vec!["ab", "cd", "e"]);
    let done: Vec<String> = h.verdicts().into_iter().map(|(k, _)| k).collect();
    assert_eq!(done, vec!["a", "b", "c", "d", "e"]);
}

#[test]
fn ordered_mode_holds_the_children_until_the_parent_has_drained() {
    let cfg = Config {
        ordered: true,
        aggregation_enabled: false,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    let lo = [key_in(0, 2, 0), key_in(0, 2, 1), key_in(0, 2, 2)];
    h.put_at(0, &lo[0], b"1");
    h.put_at(0, &lo[1], b"2");
    let first = h.tick(100).unwrap();
    assert_eq!(keys(&first.records[0]), vec![lo[0].as_str()]);
    // The shard is split while the first record is in flight.
    h.p.take_fetches(h.at(100));
    h.p.on_shards(h.s, Ok(split_map()), h.at(101), &mut h.out);
    h.put_at(101, &lo[2], b"3");
    assert!(
        h.tick(300).is_none(),
        "the child waits for the parent's response"
    );
    // The parent's record failed: it goes first, then the parent's second, then the
    // child's own.
    h.respond(
        301,
        first,
        vec![EntryResult::Failed {
            code: "InternalFailure".into(),
            message: "x".into(),
        }],
    );
    let mut order = Vec::new();
    for ms in 302..3000 {
        if let Some(req) = h.tick(ms) {
            assert_eq!(req.records.len(), 1);
            order.push(keys(&req.records[0])[0].to_string());
            assert_eq!(predicted(&h.p, h.s, &req.records[0]), shard_id(1));
            h.ok_all(ms, req);
        }
    }
    assert_eq!(order, vec![lo[0].clone(), lo[1].clone(), lo[2].clone()]);
    assert_eq!(h.p.held(), 0);
}

#[test]
fn ordered_mode_two_reshards_before_the_parent_drains_keep_order() {
    let cfg = Config {
        ordered: true,
        aggregation_enabled: false,
        ..config()
    };
    let mut h = H::with_map(cfg, 1);
    let k = key_in(0, 4, 0); // lowest quarter: parent 0 → child 1 → grandchild 3
    h.put_at(0, &k, b"1");
    let first = h.tick(100).unwrap();
    h.put_at(100, &k, b"2");
    h.p.take_fetches(h.at(100));
    h.p.on_shards(h.s, Ok(split_map()), h.at(101), &mut h.out);
    h.put_at(101, &k, b"3");
    // Shard 1 splits again into 3 and 4.
    let (lo, hi) = split_map()[0]
        .range
        .split_at(HashKeyRange::even_split(4)[1].start)
        .unwrap();
    let second = vec![
        ShardInfo {
            id: shard_id(3),
            range: lo,
        },
        ShardInfo {
            id: shard_id(4),
            range: hi,
        },
        split_map()[1].clone(),
    ];
    h.p.take_fetches(h.at(102));
    h.p.on_shards(h.s, Ok(second), h.at(103), &mut h.out);
    h.put_at(103, &k, b"4");
    assert!(h.tick(200).is_none());
    h.ok_all(201, first);
    let mut order = Vec::new();
    for ms in 202..1000 {
        if let Some(req) = h.tick(ms) {
            order.push(req.records[0].users[0].record.data.to_vec());
            assert_eq!(predicted(&h.p, h.s, &req.records[0]), shard_id(3));
            h.ok_all(ms, req);
        }
    }
    assert_eq!(order, vec![b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]);
}

#[test]
fn unordered_mode_moves_a_closed_shards_records_at_once() {
    let mut h = H::with_map(config(), 1);
    let lo = key_in(0, 2, 0);
    let hi = key_in(1, 2, 0);
    h.put_at(0, &lo, b"1");
    h.put_at(0, &hi, b"2");
    h.p.take_fetches(h.at(10));
    h.p.on_shards(h.s, Ok(split_map()), h.at(10), &mut h.out);
    let req = h.tick(100).unwrap();
    let mut groups: Vec<(String, Vec<&str>)> = req
        .records
        .iter()
        .map(|kr| (predicted(&h.p, h.s, kr), keys(kr)))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            (shard_id(1), vec![lo.as_str()]),
            (shard_id(2), vec![hi.as_str()])
        ]
    );
}

#[test]
fn closed_shards_are_forgotten_after_a_minute() {
    let mut h = H::with_map(config(), 1);
    h.p.take_fetches(h.at(0));
    h.p.on_shards(h.s, Ok(split_map()), h.at(1), &mut h.out);
    assert!(h.p.streams[0].table.get(&shard_id(0)).is_some());
    h.p.take_fetches(h.at(61_001));
    h.p.on_shards(h.s, Ok(split_map()), h.at(61_001), &mut h.out);
    assert!(h.p.streams[0].table.get(&shard_id(0)).is_none());
    assert!(h.p.streams[0].table.get(&shard_id(1)).is_some());
}
