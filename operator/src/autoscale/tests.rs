use super::*;
use crate::crd::{HumanDuration, ReshardOperation, ReshardTrigger};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

const MIB: f64 = 1_048_576.0;

/// The paused clock: every test's "now" is a fixed instant plus an offset.
fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn spec() -> AutoscalingSpec {
    AutoscalingSpec {
        enabled: true,
        min_shards: 1,
        max_shards: 16,
        ..AutoscalingSpec::default()
    }
}

fn shard_id(i: usize) -> String {
    format!("shardId-{i:012}")
}

/// Even layout of `utilizations.len()` shards, each writing `u × 1 MiB/s`.
fn load(utilizations: &[f64]) -> Load {
    let ranges = HashKeyRange::even_split(utilizations.len() as u32);
    Load {
        window: Duration::from_secs(300),
        shards: utilizations
            .iter()
            .zip(ranges)
            .enumerate()
            .map(|(i, (u, range))| ShardLoad {
                shard_id: shard_id(i),
                range,
                write_bytes: u * MIB,
                write_records: u * 100.0,
                write_throttled: 0.0,
                read_bytes: 0.0,
                read_throttled: 0.0,
                iterator_age_ms: 0,
            })
            .collect(),
    }
}

fn reshard(secs: i64) -> ReshardRecord {
    ReshardRecord {
        time: Time(at(secs)),
        operation: ReshardOperation::UpdateShardCount,
        from_shards: 2,
        to_shards: 4,
        shard: None,
        trigger: ReshardTrigger::Autoscaler,
    }
}

fn run(
    spec: &AutoscalingSpec,
    load: Option<&Load>,
    history: &[ReshardRecord],
    now: i64,
) -> Decision {
    let limits = ShardLimits::default();
    decide(Input {
        now: at(now),
        open_shards: load.map(|l| l.shards.len() as i32).unwrap_or(1),
        load,
        spec,
        limits: &limits,
        history,
    })
}

#[test]
fn disabled_and_warming_up_hold() {
    let off = AutoscalingSpec::default();
    assert_eq!(
        run(&off, Some(&load(&[2.0])), &[], 0),
        Decision::Hold(Hold::Disabled)
    );
    assert_eq!(run(&spec(), None, &[], 0), Decision::Hold(Hold::WarmingUp));
}

#[test]
fn even_overload_scales_to_the_smallest_count_that_fits() {
    // 2 shards at 90%: 3 shards carry 60% each.
    assert_eq!(
        run(&spec(), Some(&load(&[0.9, 0.9])), &[], 0),
        Decision::Step {
            direction: Direction::Up,
            step: Step::UpdateShardCount { target: 3 },
            to_shards: 3,
            reason: "2 of 2 shards above target 70% (busiest 90%); 3 shards estimated at 60%"
                .into(),
        }
    );
}

#[test]
fn one_hot_shard_is_split_at_the_middle_of_its_range() {
    let l = load(&[1.2, 0.2, 0.2, 0.2]);
    let mid = l.shards[0].range.midpoint().0 + 1;
    assert_eq!(mid, 1u128 << 125);
    assert_eq!(
        run(&spec(), Some(&l), &[], 0),
        Decision::Step {
            direction: Direction::Up,
            step: Step::SplitShard {
                shard: shard_id(0),
                at: HashKey(mid)
            },
            to_shards: 5,
            reason: "shard shardId-000000000000 at 120% of its limits (target 70%); \
                     the other shards are within target"
                .into(),
        }
    );
}

#[test]
fn a_shard_too_hot_for_one_split_doubles_the_stream_at_most() {
    // 200% on a quarter of the space: even 8 shards leave 100% on the first.
    let d = run(&spec(), Some(&load(&[2.0, 0.2, 0.2, 0.2])), &[], 0);
    assert!(
        matches!(
            &d,
            Decision::Step {
                step: Step::UpdateShardCount { target: 8 },
                to_shards: 8,
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn throttled_records_count_as_demand() {
    let mut l = load(&[0.5]);
    // 50 accepted + 100 refused records per second against 1000/s is 15%, but bytes:
    // 0.5 MiB accepted for 50 records → 1.5 MiB demanded → 150%.
    l.shards[0].write_throttled = 100.0;
    assert!(matches!(
        run(&spec(), Some(&l), &[], 0),
        Decision::Step {
            step: Step::UpdateShardCount { target: 2 },
            ..
        }
    ));
    let s = summarize(&l, &ShardLimits::default());
    assert_eq!(s.max_shard_utilization_percent, 150);
    assert_eq!(s.write_throttled_per_second, 100);
}

#[test]
fn scale_up_respects_cooldown_budget_and_max() {
    let l = load(&[0.9, 0.9]);
    assert_eq!(
        run(&spec(), Some(&l), &[reshard(0)], 60),
        Decision::Hold(Hold::Cooldown {
            direction: Direction::Up,
            until: at(300)
        })
    );
    let full: Vec<_> = (0..10).map(|i| reshard(i * 600)).collect();
    assert_eq!(
        run(&spec(), Some(&l), &full, 6000),
        Decision::Hold(Hold::BudgetExhausted { until: at(86_400) })
    );
    let s = AutoscalingSpec {
        max_shards: 2,
        ..spec()
    };
    assert_eq!(
        run(&s, Some(&l), &[], 0),
        Decision::Hold(Hold::AtMaxShards { max: 90 })
    );
    // A configured lower budget is the limit.
    let s = AutoscalingSpec {
        max_reshards_per24h: 3,
        reserve_for_scale_up: 1,
        ..spec()
    };
    assert_eq!(
        run(&s, Some(&l), &full[..3], 6000),
        Decision::Hold(Hold::BudgetExhausted { until: at(86_400) })
    );
}

#[test]
fn light_load_scales_down_to_half_at_most() {
    assert_eq!(
        run(&spec(), Some(&load(&[0.1; 4])), &[reshard(0)], 7200),
        Decision::Step {
            direction: Direction::Down,
            step: Step::UpdateShardCount { target: 2 },
            to_shards: 2,
            reason: "busiest shard at 10% (target 70%); 2 shards estimated at most 20%".into(),
        }
    );
    // Idle: still only half per step.
    assert!(matches!(
        run(&spec(), Some(&load(&[0.0; 8])), &[], 0),
        Decision::Step {
            step: Step::UpdateShardCount { target: 4 },
            ..
        }
    ));
    // Not below minShards.
    let s = AutoscalingSpec {
        min_shards: 3,
        ..spec()
    };
    assert!(matches!(
        run(&s, Some(&load(&[0.0; 4])), &[], 0),
        Decision::Step {
            step: Step::UpdateShardCount { target: 3 },
            ..
        }
    ));
    assert_eq!(
        run(&s, Some(&load(&[0.0; 3])), &[], 0),
        Decision::Hold(Hold::WithinTarget { max: 0, target: 70 })
    );
}

#[test]
fn scale_down_needs_headroom_cooldown_reserve_and_no_lag() {
    // 4 × 30%: 2 shards would be at 60% > 52.5% (0.75 × 70%), 3 would be (conservatively)
    // at 60% too: hold.
    assert_eq!(
        run(&spec(), Some(&load(&[0.3; 4])), &[], 0),
        Decision::Hold(Hold::WithinTarget {
            max: 30,
            target: 70
        })
    );
    let l = load(&[0.1; 4]);
    assert_eq!(
        run(&spec(), Some(&l), &[reshard(0)], 600),
        Decision::Hold(Hold::Cooldown {
            direction: Direction::Down,
            until: at(3600)
        })
    );
    let eight: Vec<_> = (0..8).map(|i| reshard(i * 60)).collect();
    assert_eq!(
        run(&spec(), Some(&l), &eight, 7200),
        Decision::Hold(Hold::BudgetReserved {
            remaining: 2,
            reserve: 2
        })
    );
    let mut lagging = l.clone();
    lagging.shards[2].iterator_age_ms = 45_000;
    assert_eq!(
        run(&spec(), Some(&lagging), &[], 7200),
        Decision::Hold(Hold::ScaleDownBlocked {
            why: "a consumer's iterator age is above 30 s"
        })
    );
    let mut throttled = l;
    throttled.shards[1].read_throttled = 1.0;
    assert!(matches!(
        run(&spec(), Some(&throttled), &[], 7200),
        Decision::Hold(Hold::ScaleDownBlocked { .. })
    ));
}

#[test]
fn spec_steps_are_clamped_to_double_and_half() {
    assert_eq!(
        plan_spec_step(2, 100, 10, &[], at(0)),
        SpecPlan::Step {
            step: 4,
            clamped: Some(
                "requested 100 shards; from 2 open shards one UpdateShardCount may go to 1..4, \
                 so the operator steps to 4 and continues within the budget (10 of 10 left in 24 h)"
                    .into()
            ),
        }
    );
    assert_eq!(
        plan_spec_step(8, 1, 10, &[], at(0)),
        SpecPlan::Step {
            step: 4,
            clamped: plan_clamp(8, 1, 4)
        }
    );
    assert_eq!(
        plan_spec_step(5, 3, 10, &[], at(0)),
        SpecPlan::Step {
            step: 3,
            clamped: None
        }
    );
    assert_eq!(plan_spec_step(3, 3, 10, &[], at(0)), SpecPlan::Done);
    let two = [reshard(0), reshard(10)];
    assert_eq!(
        plan_spec_step(4, 8, 2, &two, at(20)),
        SpecPlan::BudgetExhausted {
            until: at(86_400),
            step: 8
        }
    );
}

fn plan_clamp(open: i32, requested: i32, step: i32) -> Option<String> {
    match plan_spec_step(open, requested, 10, &[], at(0)) {
        SpecPlan::Step { clamped, step: s } if s == step => clamped,
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Property tests: a simulated stream under random load traces.
// ---------------------------------------------------------------------------------------

/// Demand over the hash space: 16 equal buckets, each with records per second (1 KiB each).
#[derive(Debug, Clone)]
struct Demand16([f64; 16]);

const BUCKET: f64 = 340_282_366_920_938_463_463_374_607_431_768_211_456.0 / 16.0; // 2^128 / 16

struct Sim {
    spec: AutoscalingSpec,
    limits: ShardLimits,
    shards: Vec<HashKeyRange>,
    history: Vec<ReshardRecord>,
    log: Vec<(i64, Direction, Step, i32, i32)>,
    now: i64,
}

const TICK: i64 = 30;

impl Sim {
    fn new(spec: AutoscalingSpec, open: i32) -> Sim {
        Sim {
            spec,
            limits: ShardLimits::default(),
            shards: HashKeyRange::even_split(open as u32),
            history: Vec::new(),
            log: Vec::new(),
            now: 0,
        }
    }

    /// What the broker's metrics would show for each shard under `d`.
    fn observe(&self, d: &Demand16) -> Load {
        let shards = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (lo, hi) = (r.start.0 as f64, r.end.0 as f64 + 1.0);
                let mut records = 0.0;
                for (b, rate) in d.0.iter().enumerate() {
                    let (blo, bhi) = (b as f64 * BUCKET, (b + 1) as f64 * BUCKET);
                    let o = (hi.min(bhi) - lo.max(blo)).max(0.0);
                    records += rate * o / BUCKET;
                }
                let bytes = records * 1024.0;
                let f = (self.limits.write_records_per_second as f64 / records.max(1e-9))
                    .min(self.limits.write_bytes_per_second as f64 / bytes.max(1e-9))
                    .min(1.0);
                ShardLoad {
                    shard_id: format!("s{i}"),
                    range: *r,
                    write_bytes: bytes * f,
                    write_records: records * f,
                    write_throttled: records * (1.0 - f),
                    read_bytes: 0.0,
                    read_throttled: 0.0,
                    iterator_age_ms: 0,
                }
            })
            .collect();
        Load {
            window: self.spec.window.0,
            shards,
        }
    }

    fn throttled(&self, d: &Demand16) -> bool {
        self.observe(d)
            .shards
            .iter()
            .any(|s| s.write_throttled > 1e-6)
    }

    /// One evaluation: the load window is full only when no reshard happened within it.
    fn tick(&mut self, d: &Demand16) -> Decision {
        self.now += TICK;
        let window = self.spec.window.0.as_secs() as i64;
        let warm = budget::last_reshard(&self.history)
            .is_none_or(|t| at(self.now).duration_since(t) >= SignedDuration::from_secs(window));
        let load = self.observe(d);
        let decision = decide(Input {
            now: at(self.now),
            open_shards: self.shards.len() as i32,
            load: warm.then_some(&load),
            spec: &self.spec,
            limits: &self.limits,
            history: &self.history,
        });
        if let Decision::Step {
            direction,
            step,
            to_shards,
            ..
        } = &decision
        {
            let (direction, step, to_shards) = (*direction, step.clone(), *to_shards);
            let from = self.shards.len() as i32;
            match &step {
                Step::UpdateShardCount { target } => {
                    self.shards = HashKeyRange::even_split(*target as u32);
                }
                Step::SplitShard { shard, at } => {
                    let i: usize = shard[1..].parse().unwrap();
                    let (a, b) = self.shards[i]
                        .split_at(*at)
                        .expect("split inside the shard");
                    self.shards.splice(i..=i, [a, b]);
                }
            }
            assert_eq!(self.shards.len() as i32, to_shards);
            self.history.push(ReshardRecord {
                time: Time(at(self.now)),
                operation: ReshardOperation::UpdateShardCount,
                from_shards: from,
                to_shards,
                shard: None,
                trigger: ReshardTrigger::Autoscaler,
            });
            self.log.push((self.now, direction, step, from, to_shards));
        }
        decision
    }

    /// Evaluates every TICK for `secs` under steady demand `d`. While the policy holds,
    /// nothing it looks at changes before the hold's own end (cooldown, budget, window) or
    /// the next ledger entry ageing out, so the evaluations in between (which would give
    /// the same answer) are skipped.
    fn run(&mut self, d: &Demand16, secs: i64) {
        let end = self.now + secs;
        while self.now + TICK <= end {
            let decision = self.tick(d);
            let base = Timestamp::from_second(1_800_000_000).unwrap();
            let secs_of = |t: Timestamp| t.duration_since(base).as_secs();
            let wake = match decision {
                Decision::Step { .. } => continue,
                Decision::Hold(Hold::Cooldown { until, .. } | Hold::BudgetExhausted { until }) => {
                    secs_of(until)
                }
                Decision::Hold(Hold::WarmingUp) => {
                    secs_of(budget::last_reshard(&self.history).unwrap_or(at(self.now)))
                        + self.spec.window.0.as_secs() as i64
                }
                Decision::Hold(_) => self
                    .history
                    .iter()
                    .map(|r| secs_of(r.time.0) + 86_400)
                    .filter(|t| *t > self.now)
                    .min()
                    .unwrap_or(end),
            };
            // The first tick at or after `wake`, never past the end.
            let next = ((wake + TICK - 1) / TICK * TICK).min(end / TICK * TICK);
            if next - TICK > self.now {
                self.now = next - TICK;
            }
        }
    }

    /// Every limit the policy promises, over the whole log.
    fn check_limits(&self) {
        let s = &self.spec;
        for (k, (t, dir, step, from, to)) in self.log.iter().enumerate() {
            match step {
                Step::UpdateShardCount { target } => {
                    assert!(
                        *target <= 2 * from && *target >= (from + 1) / 2,
                        "step {from}→{target}"
                    );
                }
                Step::SplitShard { .. } => assert_eq!(*to, from + 1),
            }
            match dir {
                Direction::Up => assert!(*to > *from && *to <= s.max_shards),
                Direction::Down => assert!(*to < *from && *to >= s.min_shards),
            }
            let window: Vec<_> = self
                .log
                .iter()
                .filter(|e| e.0 > t - 86_400 && e.0 <= *t)
                .collect();
            assert!(
                window.len() as u32 <= s.max_reshards_per24h,
                "budget overspent at {t}"
            );
            if *dir == Direction::Down {
                let before = window.len() as u32 - 1;
                assert!(
                    s.max_reshards_per24h - before > s.reserve_for_scale_up,
                    "scale-down spent the reserve at {t}"
                );
            }
            if k > 0 {
                let gap = t - self.log[k - 1].0;
                let cd = match dir {
                    Direction::Up => s.scale_up_cooldown.0,
                    Direction::Down => s.scale_down_cooldown.0,
                };
                assert!(gap >= cd.as_secs() as i64, "cooldown broken at {t}: {gap}s");
            }
        }
    }
}

fn arb_spec() -> impl Strategy<Value = AutoscalingSpec> {
    (
        1i32..4,
        8i32..64,
        50u32..90,
        1u64..10,
        5u64..60,
        2u32..=10,
        0u32..3,
    )
        .prop_map(
            |(min, max, target, up, down, budget, reserve)| AutoscalingSpec {
                enabled: true,
                min_shards: min,
                max_shards: max,
                target_utilization_percent: target,
                window: HumanDuration(Duration::from_secs(120)),
                scale_up_cooldown: HumanDuration(Duration::from_secs(up * 60)),
                scale_down_cooldown: HumanDuration(Duration::from_secs(down * 60)),
                max_reshards_per24h: budget,
                reserve_for_scale_up: reserve.min(budget - 1),
                approval: crate::crd::Approval::Auto,
            },
        )
}

fn arb_demand(max_per_bucket: f64) -> impl Strategy<Value = Demand16> {
    proptest::array::uniform16(0.0..max_per_bucket).prop_map(Demand16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random load that changes every few minutes to a few hours, for 3 days: no step is
    /// more than double or less than half, none beyond min/max, never more than the budget
    /// in any rolling 24 h, cooldowns and the scale-up reserve always kept.
    #[test]
    fn limits_are_never_violated(
        spec in arb_spec(),
        open in 1i32..8,
        trace in proptest::collection::vec((arb_demand(600.0), 1i64..240), 1..40),
    ) {
        let open = open.clamp(spec.min_shards, spec.max_shards);
        let mut sim = Sim::new(spec, open);
        for (demand, ticks) in trace.iter().cycle().take(200) {
            sim.run(demand, ticks * TICK);
            if sim.now > 3 * 86_400 { break; }
        }
        sim.check_limits();
    }

    /// Steady load never makes it oscillate: once it has scaled down it never scales up,
    /// and it settles (no step in the second day).
    #[test]
    fn steady_load_never_oscillates(
        spec in arb_spec(),
        open in 1i32..32,
        demand in arb_demand(800.0),
    ) {
        let open = open.clamp(spec.min_shards, spec.max_shards);
        let mut sim = Sim::new(spec, open);
        sim.run(&demand, 5 * 86_400);
        sim.check_limits();
        let first_down = sim.log.iter().position(|e| e.1 == Direction::Down);
        if let Some(i) = first_down {
            prop_assert!(
                sim.log[i..].iter().all(|e| e.1 == Direction::Down),
                "scaled up after scaling down: {:?}", sim.log
            );
        }
        // Settled: at most log2(64) steps each way, at least one per day even with the
        // smallest budget and reserve, so a policy still moving on day five is oscillating
        // or creeping.
        let late = sim.log.iter().filter(|e| e.0 > 4 * 86_400).count();
        prop_assert!(late == 0, "still resharding on day five: {:?}", sim.log);
    }

    /// Sustained overload is answered within the budget: from a quiet, settled stream,
    /// an even overload the maximum can carry stops being throttled after at most
    /// log2(needed / open) + 1 scale-ups, each right after its cooldown and window.
    #[test]
    fn sustained_overload_is_answered_within_the_budget(
        spec in arb_spec(),
        open in 1i32..4,
        per_bucket in 100.0f64..1500.0,
    ) {
        let mut spec = spec;
        spec.max_shards = 64;
        spec.max_reshards_per24h = 10;
        spec.reserve_for_scale_up = spec.reserve_for_scale_up.min(9);
        let open = open.clamp(spec.min_shards, spec.max_shards);
        let demand = Demand16([per_bucket; 16]);
        let mut sim = Sim::new(spec.clone(), open);
        let target = f64::from(spec.target_utilization_percent) / 100.0;
        // Shards needed to carry the demand at the target.
        let total = per_bucket * 16.0;
        prop_assume!(total > f64::from(open) * target * 1000.0);
        let needed = (total / (target * 1000.0)).ceil() as i32;
        prop_assume!(needed <= spec.max_shards);
        let steps = (f64::from(needed) / f64::from(open)).log2().ceil() as i64 + 1;
        let per_step = spec.window.0.as_secs() as i64
            + spec.scale_up_cooldown.0.as_secs() as i64 + 2 * TICK;
        let limit = steps * per_step + TICK;
        sim.run(&demand, limit);
        sim.check_limits();
        prop_assert!(!sim.throttled(&demand), "still throttled after {}s: {:?}", sim.now, sim.log);
        prop_assert!(sim.log.len() as i64 <= steps, "{} steps for {steps}: {:?}", sim.log.len(), sim.log);
        prop_assert!(sim.log.iter().all(|e| e.1 == Direction::Up));
    }
}
