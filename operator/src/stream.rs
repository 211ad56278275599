//! One reconcile step of a Stream against its Kinesis endpoint, shared by the Kubernetes
//! controller ([`crate::controller`]) and standalone mode ([`crate::standalone`]).
//!
//! observe (DescribeStreamSummary, ListShards, ListTagsForStream) → create, or wait while
//! not ACTIVE → converge settings ([`crate::plan`]) → reshard toward the target (spec or
//! autoscaler, both within the budget) → the new status, the events to publish and when to
//! look again. Nothing here talks to Kubernetes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::autoscale::{self, Decision, Direction, Hold, SpecPlan, Step};
use crate::budget::{self, Budget};
use crate::conditions;
use crate::crd::{
    Approval, AutoscalerDecision, CapacityMode, ReshardOperation, ReshardProposal, ReshardRecord,
    ReshardTrigger, Stream, StreamStatus, APPROVE_ANNOTATION, COND_BUDGET_EXHAUSTED, COND_DEGRADED,
    COND_PAUSED, COND_READY, COND_RESHARDING, STREAM_LABEL,
};
use crate::kinesis::{Kinesis, KinesisError};
use crate::load::{self, HttpClient, LoadWindow};
use crate::metrics::{Metrics, StreamLabels};
use crate::plan::{self, Action, Observed, Phase};

/// How soon to look again while the stream is changing.
pub const FAST_REQUEUE: Duration = Duration::from_secs(1);
/// How soon to look again at a settled stream without autoscaling.
pub const SLOW_REQUEUE: Duration = Duration::from_secs(300);

/// An event to publish (Kubernetes Event, or a log line in standalone mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason, e.g. `ScaleUp`, `ScaleClamped`, `KinesisError`.
    pub reason: String,
    /// What the operator did, e.g. `UpdateShardCount`.
    pub action: String,
    /// Human text.
    pub message: String,
}

impl Note {
    fn normal(reason: &str, action: &str, message: impl Into<String>) -> Note {
        Note {
            warning: false,
            reason: reason.into(),
            action: action.into(),
            message: message.into(),
        }
    }

    fn warning(reason: &str, action: &str, message: impl Into<String>) -> Note {
        Note {
            warning: true,
            ..Note::normal(reason, action, message)
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The whole status to write.
    pub status: StreamStatus,
    /// Events to publish.
    pub notes: Vec<Note>,
    /// When to look again.
    pub requeue: Duration,
    /// Set when the step failed (the controller backs off).
    pub error: Option<KinesisError>,
}

/// What a step needs besides the Stream.
#[derive(Debug)]
pub struct Deps<'a> {
    /// The endpoint's client.
    pub kinesis: &'a Kinesis,
    /// The endpoint's URL (for status).
    pub endpoint_url: &'a str,
    /// Where the per-shard metrics are, if anywhere.
    pub metrics_url: Option<&'a str>,
    /// Client for scraping.
    pub http: &'a HttpClient,
    /// Load samples per stream object (`namespace/name`).
    pub loads: &'a Mutex<HashMap<String, LoadWindow>>,
    /// Operator metrics.
    pub metrics: &'a Metrics,
    /// Metrics labels of this stream.
    pub labels: StreamLabels,
}

/// A step's working state.
struct Step_<'a> {
    stream: &'a Stream,
    key: String,
    deps: &'a Deps<'a>,
    now: Timestamp,
    status: StreamStatus,
    notes: Vec<Note>,
    degraded: Option<(String, String)>,
    resharding: Option<String>,
}

/// Runs one reconcile step of `stream` (whose object key is `key`, `namespace/name`).
pub async fn reconcile(stream: &Stream, key: &str, deps: &Deps<'_>, now: Timestamp) -> Outcome {
    let prev = stream.status.clone().unwrap_or_default();
    let mut status = prev.clone();
    status.observed_generation = stream.metadata.generation;
    status.endpoint = Some(deps.endpoint_url.to_string());
    status.selector = Some(format!(
        "{STREAM_LABEL}={}",
        stream.metadata.name.as_deref().unwrap_or_default()
    ));
    status.reshard_history = budget::prune(&prev.reshard_history, now);
    let mut s = Step_ {
        stream,
        key: key.to_string(),
        deps,
        now,
        status,
        notes: Vec::new(),
        degraded: None,
        resharding: None,
    };
    conditions::set(
        &mut s.status.conditions,
        COND_PAUSED,
        false,
        "Reconciling",
        "",
        stream.metadata.generation,
        now,
    );
    match s.run().await {
        Ok(requeue) => s.finish(requeue, None),
        Err(e) => {
            s.notes.push(Note::warning(
                "KinesisError",
                e.operation,
                format!("{}: {}", e.code, e.message),
            ));
            s.degraded = Some(("KinesisError".into(), e.to_string()));
            s.finish(FAST_REQUEUE, Some(e))
        }
    }
}

impl Step_<'_> {
    fn name(&self) -> String {
        self.stream.stream_name()
    }

    fn gen(&self) -> Option<i64> {
        self.stream.metadata.generation
    }

    async fn run(&mut self) -> Result<Duration, KinesisError> {
        let name = self.name();
        let kinesis = self.deps.kinesis;
        let Some(obs) = kinesis.observe(&name).await? else {
            let create = plan::converge(&self.stream.spec, None);
            for a in &create {
                kinesis.execute(&name, "", a).await?;
            }
            self.notes.push(Note::normal(
                "Created",
                "CreateStream",
                format!("created stream {name}"),
            ));
            self.status.stream_status = Some(Phase::Creating.as_str().into());
            self.set_ready(false, "Creating", "the endpoint is creating the stream");
            return Ok(FAST_REQUEUE);
        };
        self.observe(&obs);
        match obs.phase {
            Phase::Active => {}
            Phase::Creating => {
                self.set_ready(false, "Creating", "the endpoint is creating the stream");
                return Ok(FAST_REQUEUE);
            }
            Phase::Updating => {
                self.resharding = Some("the endpoint is updating the stream".into());
                return Ok(FAST_REQUEUE);
            }
            Phase::Deleting => {
                self.set_ready(false, "Deleting", "the endpoint is deleting the stream");
                return Ok(FAST_REQUEUE);
            }
        }
        let batch = plan::next_batch(plan::converge(&self.stream.spec, Some(&obs)));
        if !batch.is_empty() {
            for a in &batch {
                kinesis.execute(&name, &obs.arn, a).await?;
                self.notes.push(Note::normal(
                    "Updated",
                    a.name(),
                    format!("{} on stream {name}", a.name()),
                ));
            }
            self.set_ready(false, "Converging", "applying spec changes");
            return Ok(FAST_REQUEUE);
        }
        self.set_ready(true, "Active", format!("{} open shards", obs.open_count()));
        if self.stream.spec.capacity_mode == CapacityMode::OnDemand {
            self.status.target_shards = Some(obs.open_count());
            self.status.scale_clamp = None;
            self.status.pending_proposal = None;
            return Ok(SLOW_REQUEUE);
        }
        if self.stream.spec.autoscaling_enabled().is_some() {
            self.autoscale(&obs).await
        } else {
            self.follow_spec(&obs).await
        }
    }

    fn observe(&mut self, obs: &Observed) {
        self.status.stream_status = Some(obs.phase.as_str().into());
        self.status.stream_arn = Some(obs.arn.clone());
        self.status.open_shards = Some(obs.open_count());
        if self.status.target_shards.is_none() {
            self.status.target_shards = Some(obs.open_count());
        }
    }

    fn set_ready(&mut self, ok: bool, reason: &str, message: impl Into<String>) {
        let gen = self.gen();
        conditions::set(
            &mut self.status.conditions,
            COND_READY,
            ok,
            reason,
            message,
            gen,
            self.now,
        );
    }

    /// Moves toward `spec.shardCount` in allowed steps.
    async fn follow_spec(&mut self, obs: &Observed) -> Result<Duration, KinesisError> {
        let open = obs.open_count();
        let requested = self.stream.spec.shard_count;
        self.status.last_decision = None;
        self.status.pending_proposal = None;
        let plan = autoscale::plan_spec_step(
            open,
            requested,
            self.stream.spec.reshard_limit(),
            &self.status.reshard_history,
            self.now,
        );
        match plan {
            SpecPlan::Done => {
                self.status.target_shards = Some(open);
                self.status.scale_clamp = None;
                Ok(SLOW_REQUEUE)
            }
            SpecPlan::Step { step, clamped } => {
                if let Some(why) = &clamped {
                    if self.status.scale_clamp.as_ref() != Some(why) {
                        self.notes.push(Note::normal(
                            "ScaleClamped",
                            "UpdateShardCount",
                            why.clone(),
                        ));
                    }
                }
                self.status.scale_clamp = clamped;
                let direction = if step > open {
                    Direction::Up
                } else {
                    Direction::Down
                };
                self.reshard(
                    obs,
                    direction,
                    Step::UpdateShardCount { target: step },
                    step,
                    ReshardTrigger::Spec,
                    format!("spec.shardCount is {requested}"),
                )
                .await?;
                Ok(FAST_REQUEUE)
            }
            SpecPlan::BudgetExhausted { until, step } => {
                let why = format!(
                    "requested {requested} shards; the next step to {step} waits for the reshard \
                     budget until {until}"
                );
                if self.status.scale_clamp.as_ref() != Some(&why) {
                    self.notes.push(Note::warning(
                        "ReshardBudgetExhausted",
                        "UpdateShardCount",
                        why.clone(),
                    ));
                }
                self.status.scale_clamp = Some(why);
                self.status.target_shards = Some(open);
                self.resharding = Some(format!(
                    "waiting for the budget to reach {requested} shards"
                ));
                Ok(requeue_until(until, self.now))
            }
        }
    }

    /// Runs the autoscaler and carries out (or proposes) its decision.
    async fn autoscale(&mut self, obs: &Observed) -> Result<Duration, KinesisError> {
        let spec = self
            .stream
            .spec
            .autoscaling_enabled()
            .cloned()
            .unwrap_or_default();
        let window = spec.window.0;
        let open: Vec<_> = obs
            .open_shards
            .iter()
            .map(|s| (s.id.clone(), s.range))
            .collect();
        self.status.scale_clamp = (self.stream.spec.shard_count != obs.open_count()).then(|| {
            format!(
                "spec.shardCount {} is not followed while autoscaling is enabled: the \
                 autoscaler sets the target",
                self.stream.spec.shard_count
            )
        });
        let sample = match self.deps.metrics_url {
            Some(url) => load::scrape(self.deps.http, url)
                .await
                .map(|text| load::parse(&text, &self.name()))
                .map_err(|e| e.to_string()),
            None => Err("no metrics URL for this endpoint (set endpoint.metricsUrl)".to_string()),
        };
        let load = {
            let mut loads = self.deps.loads.lock().unwrap_or_else(|p| p.into_inner());
            let lw = loads.entry(self.key.clone()).or_default();
            if let Ok(scrape) = sample.as_ref() {
                lw.push(self.now, scrape.clone(), window);
            }
            lw.load(&open, window)
        };
        if let Err(e) = &sample {
            self.degraded = Some(("MetricsUnavailable".into(), e.clone()));
        }
        let limits = self.stream.spec.shard_limits.clone();
        let decision = autoscale::decide(autoscale::Input {
            now: self.now,
            open_shards: obs.open_count(),
            load: load.as_ref(),
            spec: &spec,
            limits: &limits,
            history: &self.status.reshard_history,
        });
        let summary = load.as_ref().map(|l| autoscale::summarize(l, &limits));
        let interval = (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let (action, to, reason) = match &decision {
            Decision::Step {
                step,
                to_shards,
                reason,
                direction,
            } => (
                step_action(step, *direction).to_string(),
                *to_shards,
                reason.clone(),
            ),
            Decision::Hold(h) => (
                format!("None/{}", h.name()),
                obs.open_count(),
                h.to_string(),
            ),
        };
        self.deps.metrics.decision(
            &self.deps.labels,
            match &decision {
                Decision::Step {
                    step, direction, ..
                } => step_action(step, *direction),
                Decision::Hold(h) => h.name(),
            },
        );
        self.status.last_decision = Some(AutoscalerDecision {
            time: Time(self.now),
            action,
            from_shards: obs.open_count(),
            to_shards: to,
            reason: reason.clone(),
            load: summary,
        });
        let Decision::Step {
            direction,
            step,
            to_shards,
            reason,
        } = decision
        else {
            self.status.pending_proposal = None;
            self.status.target_shards = Some(obs.open_count());
            if let Decision::Hold(Hold::Cooldown { until, .. } | Hold::BudgetExhausted { until }) =
                &decision
            {
                self.status.next_reshard_allowed_at = Some(Time(*until));
            }
            return Ok(interval);
        };
        if spec.approval == Approval::Manual {
            let approved = self
                .stream
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPROVE_ANNOTATION));
            let same = self.status.pending_proposal.as_ref().filter(|p| {
                p.to_shards == to_shards
                    && p.from_shards == obs.open_count()
                    && p.action == step_action(&step, direction)
            });
            let proposal = match same {
                Some(p) => p.clone(),
                None => {
                    let p = ReshardProposal {
                        id: format!(
                            "{}-{}-{}",
                            step_action(&step, direction).to_lowercase(),
                            to_shards,
                            self.now.as_second()
                        ),
                        time: Time(self.now),
                        action: step_action(&step, direction).into(),
                        from_shards: obs.open_count(),
                        to_shards,
                        shard: match &step {
                            Step::SplitShard { shard, .. } => Some(shard.clone()),
                            Step::UpdateShardCount { .. } => None,
                        },
                        reason: reason.clone(),
                    };
                    self.notes.push(Note::normal(
                        "ReshardProposed",
                        step_operation(&step),
                        format!(
                            "{} {} → {to_shards} shards: {reason}; approve with the annotation \
                             {APPROVE_ANNOTATION}={}",
                            p.action,
                            obs.open_count(),
                            p.id
                        ),
                    ));
                    p
                }
            };
            if approved != Some(&proposal.id) {
                self.status.pending_proposal = Some(proposal);
                self.status.target_shards = Some(obs.open_count());
                return Ok(interval);
            }
            self.status.pending_proposal = None;
        }
        self.reshard(
            obs,
            direction,
            step,
            to_shards,
            ReshardTrigger::Autoscaler,
            reason,
        )
        .await?;
        self.deps
            .loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        Ok(FAST_REQUEUE)
    }

    /// Makes one reshard call and records it in the ledger, an event and the metrics.
    async fn reshard(
        &mut self,
        obs: &Observed,
        direction: Direction,
        step: Step,
        to_shards: i32,
        trigger: ReshardTrigger,
        reason: String,
    ) -> Result<(), KinesisError> {
        let name = self.name();
        let (action, operation, shard) = match &step {
            Step::UpdateShardCount { target } => (
                Action::UpdateShardCount(*target),
                ReshardOperation::UpdateShardCount,
                None,
            ),
            Step::SplitShard { shard, at } => (
                Action::SplitShard {
                    shard: shard.clone(),
                    at: *at,
                },
                ReshardOperation::SplitShard,
                Some(shard.clone()),
            ),
        };
        let from = obs.open_count();
        if let Err(e) = self.deps.kinesis.execute(&name, &obs.arn, &action).await {
            self.deps
                .metrics
                .reshard(&self.deps.labels, direction.as_str(), false);
            self.notes.push(Note::warning(
                "ReshardFailed",
                action.name(),
                format!(
                    "{} {from} → {to_shards} shards refused: {}: {}",
                    action.name(),
                    e.code,
                    e.message
                ),
            ));
            return Err(e);
        }
        self.deps
            .metrics
            .reshard(&self.deps.labels, direction.as_str(), true);
        self.status.reshard_history.push(ReshardRecord {
            time: Time(self.now),
            operation,
            from_shards: from,
            to_shards,
            shard: shard.clone(),
            trigger,
        });
        self.status.target_shards = Some(to_shards);
        let what = match &shard {
            Some(s) => format!("{} of {s}", action.name()),
            None => action.name().to_string(),
        };
        self.notes.push(Note::normal(
            step_action(&step, direction),
            action.name(),
            format!("{what}: {from} → {to_shards} shards ({reason})"),
        ));
        self.resharding = Some(format!("{what} {from} → {to_shards}"));
        Ok(())
    }

    fn finish(mut self, requeue: Duration, error: Option<KinesisError>) -> Outcome {
        let gen = self.gen();
        let now = self.now;
        let open = self.status.open_shards.unwrap_or(0);
        let target = self.status.target_shards.unwrap_or(open);
        let budget = Budget::at(
            self.stream.spec.reshard_limit(),
            &self.status.reshard_history,
            now,
        );
        self.status.reshard_budget_remaining = Some(budget.remaining());
        match budget.next_free_at {
            Some(t) => self.status.next_reshard_allowed_at = Some(Time(t)),
            None => {
                if self
                    .status
                    .next_reshard_allowed_at
                    .as_ref()
                    .is_some_and(|t| t.0 <= now || self.status.last_decision.is_none())
                {
                    self.status.next_reshard_allowed_at = None;
                }
            }
        }
        let c = &mut self.status.conditions;
        let resharding = self
            .resharding
            .clone()
            .or_else(|| (open != target).then(|| format!("{open} open, moving to {target}")));
        match &resharding {
            Some(m) => conditions::set(c, COND_RESHARDING, true, "Resharding", m.clone(), gen, now),
            None => conditions::set(
                c,
                COND_RESHARDING,
                false,
                "Stable",
                format!("{open} open shards"),
                gen,
                now,
            ),
        }
        match budget.next_free_at {
            Some(t) => conditions::set(
                c,
                COND_BUDGET_EXHAUSTED,
                true,
                "BudgetExhausted",
                format!(
                    "{} reshards in the last 24 h; next allowed at {t}",
                    budget.used
                ),
                gen,
                now,
            ),
            None => conditions::set(
                c,
                COND_BUDGET_EXHAUSTED,
                false,
                "BudgetAvailable",
                format!(
                    "{} of {} reshards left in 24 h",
                    budget.remaining(),
                    budget.limit
                ),
                gen,
                now,
            ),
        }
        match &self.degraded {
            Some((reason, message)) => {
                conditions::set(c, COND_DEGRADED, true, reason, message.clone(), gen, now)
            }
            None => conditions::set(c, COND_DEGRADED, false, "Healthy", "", gen, now),
        }
        if !c.iter().any(|x| x.type_ == COND_READY) {
            conditions::set(
                c,
                COND_READY,
                false,
                "Unknown",
                "the stream has not been observed yet",
                gen,
                now,
            );
        }
        self.deps
            .metrics
            .stream_shards(&self.deps.labels, open, target, budget.remaining());
        Outcome {
            status: self.status,
            notes: self.notes,
            requeue,
            error,
        }
    }
}

fn requeue_until(until: Timestamp, now: Timestamp) -> Duration {
    let d = until.duration_since(now).unsigned_abs();
    d.clamp(FAST_REQUEUE, SLOW_REQUEUE)
}

fn step_action(step: &Step, direction: Direction) -> &'static str {
    match (step, direction) {
        (Step::SplitShard { .. }, _) => "SplitShard",
        (Step::UpdateShardCount { .. }, Direction::Up) => "ScaleUp",
        (Step::UpdateShardCount { .. }, Direction::Down) => "ScaleDown",
    }
}

fn step_operation(step: &Step) -> &'static str {
    match step {
        Step::SplitShard { .. } => "SplitShard",
        Step::UpdateShardCount { .. } => "UpdateShardCount",
    }
}

/// The status of a paused Stream: the previous one with `ReconciliationPaused` set.
pub fn paused(stream: &Stream, now: Timestamp) -> StreamStatus {
    let mut status = stream.status.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        COND_PAUSED,
        true,
        "Paused",
        format!("annotation {} is \"true\"", crate::crd::PAUSE_ANNOTATION),
        stream.metadata.generation,
        now,
    );
    status
}
