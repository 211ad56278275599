//! The autoscaling policy and the spec-driven reshard planner: pure functions from the
//! observed load, the stream's spec and its reshard ledger to the next step.
//!
//! # The policy ([`decide`])
//!
//! Per open shard, demand is estimated over the load window: written bytes and records
//! plus the records refused for throughput (a refused record is demand the shard could not
//! take), and bytes read. A shard's *utilization* is its largest demand as a fraction of
//! its limits. With target `t` (`targetUtilizationPercent`):
//!
//! * **Scale up** when the busiest shard is above `t`. If exactly one shard is above `t`
//!   and halving it brings it to `t` or below, split only that shard at the middle of its
//!   hash range (SplitShard, one reshard). Otherwise UpdateShardCount to the smallest count
//!   up to `2 × open` (and `maxShards`) whose even layout is estimated at or below `t`, or
//!   to `2 × open` if none is. Needs the scale-up cooldown to have passed since the last
//!   reshard and one reshard left in the budget.
//! * **Scale down** when nothing was throttled, iterator age is below
//!   [`SCALE_DOWN_MAX_ITERATOR_AGE_MS`], and a smaller even layout, no smaller than half the
//!   open shards and `minShards`, stays at or below `0.75 t` under a *conservative*
//!   estimate (each new range is charged the whole load of every shard it overlaps). Needs
//!   the scale-down cooldown, and leaves `reserveForScaleUp` reshards in the budget.
//! * Otherwise nothing, with the reason.
//!
//! Why it does not oscillate under steady load: after a scale-down the real utilization is
//! at most the conservative estimate, `0.75 t < t`, so no scale-up follows; a scale-up only
//! follows real overload. Property tests in `autoscale/tests.rs` check this, the step and
//! budget limits, and that sustained overload is answered within the budget.
//!
//! # Spec-driven steps ([`plan_spec_step`])
//!
//! `spec.shardCount` (edited, or set through `/scale`) is reached in steps Kinesis allows:
//! each UpdateShardCount goes to at most double and at least half of the open shards, and
//! each counts against the same budget.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use riffle_core::{HashKey, HashKeyRange};

use crate::budget::{self, Budget};
use crate::crd::{AutoscalingSpec, LoadSummary, ReshardRecord, ShardLimits};

/// Above this iterator age (ms) on any shard, the policy does not scale down: consumers are
/// behind and merging shards would not help them.
pub const SCALE_DOWN_MAX_ITERATOR_AGE_MS: u64 = 30_000;

/// Scale-down only to layouts estimated at or below this share of the target.
pub const SCALE_DOWN_HEADROOM: f64 = 0.75;

/// One open shard's load over the window, per second.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLoad {
    /// The shard id.
    pub shard_id: String,
    /// The shard's hash-key range.
    pub range: HashKeyRange,
    /// Bytes written (accepted) per second.
    pub write_bytes: f64,
    /// Records written (accepted) per second.
    pub write_records: f64,
    /// Records refused for throughput per second.
    pub write_throttled: f64,
    /// Bytes read per second.
    pub read_bytes: f64,
    /// GetRecords calls refused for throughput per second.
    pub read_throttled: f64,
    /// Iterator age at the end of the window, ms.
    pub iterator_age_ms: u64,
}

/// The load of every open shard over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// The span the rates cover.
    pub window: Duration,
    /// The open shards, sorted by hash range.
    pub shards: Vec<ShardLoad>,
}

/// Everything the policy looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Now.
    pub now: Timestamp,
    /// Open shards.
    pub open_shards: i32,
    /// The load over a full window, or `None` while there is no full window of samples.
    pub load: Option<&'a Load>,
    /// Autoscaling settings.
    pub spec: &'a AutoscalingSpec,
    /// Per-shard limits.
    pub limits: &'a ShardLimits,
    /// The reshard ledger.
    pub history: &'a [ReshardRecord],
}

/// A reshard the policy or the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// UpdateShardCount (UNIFORM_SCALING) to `target`.
    UpdateShardCount {
        /// Open shards after.
        target: i32,
    },
    /// SplitShard of `shard`, the new shard starting at `at`.
    SplitShard {
        /// The shard to split.
        shard: String,
        /// NewStartingHashKey.
        at: HashKey,
    },
}

/// Which way a step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// More shards.
    Up,
    /// Fewer shards.
    Down,
}

impl Direction {
    /// `up` / `down`, the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Why the policy asks for nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Autoscaling is off.
    Disabled,
    /// No full window of samples yet (start, or shards changed).
    WarmingUp,
    /// Busiest shard at `max`% against target `target`%; no smaller layout fits.
    WithinTarget {
        /// Busiest shard's utilization, percent.
        max: u32,
        /// Target, percent.
        target: u32,
    },
    /// Over target but already at `maxShards`.
    AtMaxShards {
        /// Busiest shard's utilization, percent.
        max: u32,
    },
    /// The step waits for a cooldown.
    Cooldown {
        /// The step waiting.
        direction: Direction,
        /// When it ends.
        until: Timestamp,
    },
    /// No reshard left in the rolling 24 hours.
    BudgetExhausted {
        /// When one becomes free.
        until: Timestamp,
    },
    /// A scale-down would eat into the reserve kept for scaling up.
    BudgetReserved {
        /// Reshards remaining.
        remaining: u32,
        /// The reserve.
        reserve: u32,
    },
    /// Consumers are behind (iterator age) or something was throttled: no scale-down.
    ScaleDownBlocked {
        /// What blocks it.
        why: &'static str,
    },
}

impl Hold {
    /// The short reason name (metrics label, status).
    pub fn name(&self) -> &'static str {
        match self {
            Hold::Disabled => "Disabled",
            Hold::WarmingUp => "WarmingUp",
            Hold::WithinTarget { .. } => "WithinTarget",
            Hold::AtMaxShards { .. } => "AtMaxShards",
            Hold::Cooldown { .. } => "Cooldown",
            Hold::BudgetExhausted { .. } => "BudgetExhausted",
            Hold::BudgetReserved { .. } => "BudgetReserved",
            Hold::ScaleDownBlocked { .. } => "ScaleDownBlocked",
        }
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Disabled => write!(f, "autoscaling is disabled"),
            Hold::WarmingUp => write!(f, "waiting for a full window of load samples"),
            Hold::WithinTarget { max, target } => {
                write!(f, "busiest shard at {max}% of its limits, target {target}%")
            }
            Hold::AtMaxShards { max } => {
                write!(f, "busiest shard at {max}% but the stream is at maxShards")
            }
            Hold::Cooldown { direction, until } => {
                write!(
                    f,
                    "scale-{} waits for its cooldown until {until}",
                    direction.as_str()
                )
            }
            Hold::BudgetExhausted { until } => {
                write!(f, "reshard budget exhausted until {until}")
            }
            Hold::BudgetReserved { remaining, reserve } => write!(
                f,
                "scale-down would leave {} of {remaining} reshards, below the reserve of {reserve}",
                remaining.saturating_sub(1)
            ),
            Hold::ScaleDownBlocked { why } => write!(f, "no scale-down: {why}"),
        }
    }
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make this step.
    Step {
        /// Up or down.
        direction: Direction,
        /// The call.
        step: Step,
        /// Open shards after it.
        to_shards: i32,
        /// Why, for status and events.
        reason: String,
    },
    /// Make none.
    Hold(Hold),
}

/// Utilization of one shard's demand along the three limited dimensions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Demand {
    write_bytes: f64,
    write_records: f64,
    read_bytes: f64,
}

impl Demand {
    fn of(s: &ShardLoad) -> Demand {
        let write_records = s.write_records + s.write_throttled;
        // Refused records are assumed to be as large as the accepted ones on average.
        let write_bytes = if s.write_records > 0.0 {
            s.write_bytes * write_records / s.write_records
        } else {
            s.write_bytes
        };
        Demand {
            write_bytes,
            write_records,
            read_bytes: s.read_bytes,
        }
    }

    fn utilization(&self, l: &ShardLimits) -> f64 {
        (self.write_bytes / l.write_bytes_per_second as f64)
            .max(self.write_records / l.write_records_per_second as f64)
            .max(self.read_bytes / l.read_bytes_per_second as f64)
    }

    fn add(&mut self, o: Demand, share: f64) {
        self.write_bytes += o.write_bytes * share;
        self.write_records += o.write_records * share;
        self.read_bytes += o.read_bytes * share;
    }
}

fn width(r: &HashKeyRange) -> f64 {
    (r.end.0 - r.start.0) as f64 + 1.0
}

fn overlap(a: &HashKeyRange, b: &HashKeyRange) -> f64 {
    let lo = a.start.0.max(b.start.0);
    let hi = a.end.0.min(b.end.0);
    if lo > hi {
        0.0
    } else {
        (hi - lo) as f64 + 1.0
    }
}

/// Highest utilization of an even layout of `k` shards, estimated from `load`. With
/// `conservative`, every new range takes the whole load of each shard it overlaps;
/// otherwise each shard's load is spread evenly over its range.
fn layout_max_utilization(load: &Load, limits: &ShardLimits, k: i32, conservative: bool) -> f64 {
    let goal = HashKeyRange::even_split(k.max(1) as u32);
    goal.iter()
        .map(|g| {
            let mut d = Demand::default();
            for s in &load.shards {
                let o = overlap(g, &s.range);
                if o > 0.0 {
                    let share = if conservative {
                        1.0
                    } else {
                        o / width(&s.range)
                    };
                    d.add(Demand::of(s), share);
                }
            }
            d.utilization(limits)
        })
        .fold(0.0, f64::max)
}

fn percent(u: f64) -> u32 {
    (u * 100.0).round().clamp(0.0, u32::MAX as f64) as u32
}

/// Summarizes `load` for status and metrics.
pub fn summarize(load: &Load, limits: &ShardLimits) -> LoadSummary {
    let mut total = Demand::default();
    let mut busiest: Option<(&ShardLoad, f64)> = None;
    let mut sum = LoadSummary {
        window_seconds: load.window.as_secs(),
        ..LoadSummary::default()
    };
    let (mut wb, mut wr, mut wt, mut rt) = (0.0, 0.0, 0.0, 0.0);
    for s in &load.shards {
        let d = Demand::of(s);
        total.add(d, 1.0);
        let u = d.utilization(limits);
        if busiest.is_none_or(|(_, b)| u > b) {
            busiest = Some((s, u));
        }
        wb += s.write_bytes;
        wr += s.write_records;
        wt += s.write_throttled;
        rt += s.read_throttled;
        sum.max_iterator_age_ms = sum.max_iterator_age_ms.max(s.iterator_age_ms);
    }
    let n = load.shards.len().max(1) as f64;
    let stream_u = Demand {
        write_bytes: total.write_bytes / n,
        write_records: total.write_records / n,
        read_bytes: total.read_bytes / n,
    }
    .utilization(limits);
    sum.max_shard_utilization_percent = busiest.map(|(_, u)| percent(u)).unwrap_or(0);
    sum.busiest_shard = busiest.map(|(s, _)| s.shard_id.clone());
    sum.stream_utilization_percent = percent(stream_u);
    sum.incoming_bytes_per_second = wb.round() as u64;
    sum.incoming_records_per_second = wr.round() as u64;
    sum.write_throttled_per_second = wt.round() as u64;
    sum.read_throttled_per_second = rt.round() as u64;
    sum
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// The autoscaling decision for `input`. See the module docs for the rules.
pub fn decide(input: Input<'_>) -> Decision {
    let spec = input.spec;
    if !spec.enabled {
        return Decision::Hold(Hold::Disabled);
    }
    let Some(load) = input.load.filter(|l| !l.shards.is_empty()) else {
        return Decision::Hold(Hold::WarmingUp);
    };
    let open = input.open_shards.max(1);
    let limits = input.limits;
    let target = f64::from(spec.target_utilization_percent) / 100.0;
    let utils: Vec<f64> = load
        .shards
        .iter()
        .map(|s| Demand::of(s).utilization(limits))
        .collect();
    let max_u = utils.iter().copied().fold(0.0, f64::max);
    let budget = Budget::at(spec.max_reshards_per24h.min(10), input.history, input.now);
    let last = budget::last_reshard(input.history);
    let max_shards = spec.max_shards.min(10_000);
    let min_shards = spec.min_shards.max(1);

    if max_u > target {
        if open >= max_shards {
            return Decision::Hold(Hold::AtMaxShards {
                max: percent(max_u),
            });
        }
        if let Some(until) = last.map(|t| t + signed(spec.scale_up_cooldown.0)) {
            if until > input.now {
                return Decision::Hold(Hold::Cooldown {
                    direction: Direction::Up,
                    until,
                });
            }
        }
        if budget.remaining() == 0 {
            return Decision::Hold(Hold::BudgetExhausted {
                until: budget.next_free_at.unwrap_or(input.now),
            });
        }
        let hot: Vec<usize> = (0..utils.len()).filter(|&i| utils[i] > target).collect();
        if let [i] = hot[..] {
            if utils[i] / 2.0 <= target {
                let s = &load.shards[i];
                return Decision::Step {
                    direction: Direction::Up,
                    step: Step::SplitShard {
                        shard: s.shard_id.clone(),
                        at: HashKey(s.range.midpoint().0 + 1),
                    },
                    to_shards: open + 1,
                    reason: format!(
                        "shard {} at {}% of its limits (target {}%); the other shards are within target",
                        s.shard_id,
                        percent(utils[i]),
                        spec.target_utilization_percent
                    ),
                };
            }
        }
        let ceiling = (open * 2).min(max_shards);
        let k = (open + 1..=ceiling)
            .find(|&k| layout_max_utilization(load, limits, k, false) <= target)
            .unwrap_or(ceiling);
        return Decision::Step {
            direction: Direction::Up,
            step: Step::UpdateShardCount { target: k },
            to_shards: k,
            reason: format!(
                "{} of {} shards above target {}% (busiest {}%); {k} shards estimated at {}%",
                hot.len(),
                utils.len(),
                spec.target_utilization_percent,
                percent(max_u),
                percent(layout_max_utilization(load, limits, k, false))
            ),
        };
    }

    if open <= min_shards {
        return within(max_u, spec);
    }
    let floor = ((open + 1) / 2).max(min_shards);
    let goal = target * SCALE_DOWN_HEADROOM;
    let Some(k) = (floor..open).find(|&k| layout_max_utilization(load, limits, k, true) <= goal)
    else {
        return within(max_u, spec);
    };
    if load
        .shards
        .iter()
        .any(|s| s.write_throttled > 0.0 || s.read_throttled > 0.0)
    {
        return Decision::Hold(Hold::ScaleDownBlocked {
            why: "records or reads were throttled in the window",
        });
    }
    if load
        .shards
        .iter()
        .any(|s| s.iterator_age_ms > SCALE_DOWN_MAX_ITERATOR_AGE_MS)
    {
        return Decision::Hold(Hold::ScaleDownBlocked {
            why: "a consumer's iterator age is above 30 s",
        });
    }
    if let Some(until) = last.map(|t| t + signed(spec.scale_down_cooldown.0)) {
        if until > input.now {
            return Decision::Hold(Hold::Cooldown {
                direction: Direction::Down,
                until,
            });
        }
    }
    if budget.remaining() < spec.reserve_for_scale_up + 1 {
        return Decision::Hold(Hold::BudgetReserved {
            remaining: budget.remaining(),
            reserve: spec.reserve_for_scale_up,
        });
    }
    Decision::Step {
        direction: Direction::Down,
        step: Step::UpdateShardCount { target: k },
        to_shards: k,
        reason: format!(
            "busiest shard at {}% (target {}%); {k} shards estimated at most {}%",
            percent(max_u),
            spec.target_utilization_percent,
            percent(layout_max_utilization(load, limits, k, true))
        ),
    }
}

fn within(max_u: f64, spec: &AutoscalingSpec) -> Decision {
    Decision::Hold(Hold::WithinTarget {
        max: percent(max_u),
        target: spec.target_utilization_percent,
    })
}

/// What `spec.shardCount` asks of the stream now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecPlan {
    /// Open shards equal the request.
    Done,
    /// UpdateShardCount to `step`; `clamped` says why it is not the request itself.
    Step {
        /// Target of this call.
        step: i32,
        /// Set when `step` differs from the requested count.
        clamped: Option<String>,
    },
    /// No reshard allowed before `until`.
    BudgetExhausted {
        /// When one becomes free.
        until: Timestamp,
        /// The step that waits.
        step: i32,
    },
}

/// The next UpdateShardCount toward `requested` from `open` open shards.
pub fn plan_spec_step(
    open: i32,
    requested: i32,
    limit: u32,
    history: &[ReshardRecord],
    now: Timestamp,
) -> SpecPlan {
    if requested == open || open < 1 {
        return SpecPlan::Done;
    }
    let lo = (open + 1) / 2;
    let hi = open.saturating_mul(2);
    let step = requested.clamp(lo, hi);
    let budget = Budget::at(limit, history, now);
    if budget.remaining() == 0 {
        return SpecPlan::BudgetExhausted {
            until: budget.next_free_at.unwrap_or(now),
            step,
        };
    }
    let clamped = (step != requested).then(|| {
        format!(
            "requested {requested} shards; from {open} open shards one UpdateShardCount may go to \
             {lo}..{hi}, so the operator steps to {step} and continues within the budget \
             ({} of {limit} left in 24 h)",
            budget.remaining()
        )
    });
    SpecPlan::Step { step, clamped }
}

#[cfg(test)]
mod tests;
