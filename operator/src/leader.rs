//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! both reshard (and so never double-spend a stream's reshard budget).
//!
//! A candidate reads the Lease; [`decide`] (pure) says whether to create it, renew it,
//! take it over (its holder stopped renewing for a whole lease duration) or wait. Writes
//! are guarded by the Lease's `resourceVersion`, so of two candidates racing for an expired
//! Lease exactly one wins (the other gets 409 Conflict). The leader renews every
//! `renew`; if it cannot renew within the lease duration it must stop acting (the binary
//! exits, and its Deployment restarts it as a follower).
//!
//! kube-runtime 5 has no leader election; `kube-lease-manager` exists, but this is ~150
//! lines whose decision is a pure, tested function, with no extra dependency.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a candidate does with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder let it expire (or released it): take it over.
    Acquire,
    /// Someone else holds it: wait.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides what `me` does with `lease` at `now`.
pub fn decide(
    lease: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseAction {
    let Some(spec) = lease else {
        return LeaseAction::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return LeaseAction::Renew;
    }
    if holder.is_empty() {
        return LeaseAction::Acquire;
    }
    let lease_duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(i64::from(s)))
        .unwrap_or_else(|| SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(t) if t + lease_duration > now => LeaseAction::Wait { holder },
        _ => LeaseAction::Acquire,
    }
}

/// A Lease-based elector.
#[derive(Debug, Clone)]
pub struct Elector {
    /// The Lease API (the operator's namespace).
    pub api: Api<Lease>,
    /// Lease name.
    pub name: String,
    /// This candidate's identity (pod name).
    pub identity: String,
    /// How long a Lease lasts without renewal.
    pub duration: Duration,
    /// How often the leader renews (and followers retry).
    pub renew: Duration,
}

impl Elector {
    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: returns whether we hold the Lease afterwards.
    pub async fn try_once(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let action = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
            self.duration,
        );
        let result = match (&action, current) {
            (LeaseAction::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, 0, None)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (LeaseAction::Renew | LeaseAction::Acquire, Some(mut lease)) => {
                let old = lease.spec.take().unwrap_or_default();
                let (transitions, acquired) = if action == LeaseAction::Renew {
                    (old.lease_transitions.unwrap_or(0), old.acquire_time)
                } else {
                    (old.lease_transitions.unwrap_or(0) + 1, None)
                };
                lease.spec = Some(self.spec(now, transitions, acquired));
                // replace() sends the resourceVersion read: a concurrent write makes it 409.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (LeaseAction::Wait { .. }, _) => return Ok(false),
            (_, None) => return Ok(false),
        };
        match result {
            Ok(()) => {
                if action != LeaseAction::Renew {
                    info!(identity = %self.identity, lease = %self.name, "acquired leadership");
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Campaigns until cancelled: `leader` turns true on acquisition; if leadership is lost
    /// (another holder, or no renewal for a lease duration) it turns false and the loop ends.
    pub async fn run(self, leader: watch::Sender<bool>, cancel: CancellationToken) {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            let held = match self.try_once().await {
                Ok(h) => h,
                Err(e) => {
                    warn!(error = %e, "lease update failed");
                    // Still leading only while the last renewal is within the duration.
                    last_renewal.is_some_and(|t| t.elapsed() < self.duration)
                }
            };
            if held {
                last_renewal = Some(tokio::time::Instant::now());
                if !*leader.borrow() {
                    let _ = leader.send(true);
                }
            } else if *leader.borrow() {
                warn!(identity = %self.identity, "lost leadership");
                let _ = leader.send(false);
                return;
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    if *leader.borrow() {
                        self.release().await;
                    }
                    return;
                }
                _ = tokio::time::sleep(self.renew) => {}
            }
        }
    }

    /// Gives the Lease up (holder cleared) so a follower takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await {
            if lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(&self.identity)
            {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                }
                if let Err(e) = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    warn!(error = %e, "could not release the lease");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn held(by: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn only_an_expired_or_released_lease_changes_hands() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", at(0), d), LeaseAction::Create);
        assert_eq!(
            decide(Some(&held("a", 0)), "a", at(100), d),
            LeaseAction::Renew
        );
        assert_eq!(
            decide(Some(&held("b", 0)), "a", at(14), d),
            LeaseAction::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&held("b", 0)), "a", at(15), d),
            LeaseAction::Acquire
        );
        let released = LeaseSpec {
            holder_identity: None,
            ..held("b", 0)
        };
        assert_eq!(decide(Some(&released), "a", at(1), d), LeaseAction::Acquire);
    }
}
