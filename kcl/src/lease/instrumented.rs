//! A [`LeaseStore`] wrapper that counts and times every operation.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{Lease, LeaseStore};
use crate::checkpoint::Checkpoint;
use crate::error::LeaseStoreError;
use crate::metrics::{LeaseOp, Metrics, OpLabel, OpOutcomeLabel, Outcome};

#[derive(Debug, Clone)]
pub(crate) struct Instrumented {
    inner: Arc<dyn LeaseStore>,
    metrics: Metrics,
}

impl Instrumented {
    pub(crate) fn new(inner: Arc<dyn LeaseStore>, metrics: Metrics) -> Instrumented {
        Instrumented { inner, metrics }
    }

    fn record<T>(&self, op: LeaseOp, start: Instant, r: &Result<T, LeaseStoreError>) {
        self.metrics
            .lease_operation_seconds
            .get_or_create(&OpLabel { operation: op })
            .observe(start.elapsed().as_secs_f64());
        let outcome = match r {
            Ok(_) => Outcome::success,
            Err(e) if e.is_conflict() => Outcome::conflict,
            Err(_) => Outcome::error,
        };
        self.metrics
            .lease_operations
            .get_or_create(&OpOutcomeLabel {
                operation: op,
                outcome,
            })
            .inc();
    }
}

macro_rules! timed {
    ($self:ident, $op:expr, $call:expr) => {{
        let start = Instant::now();
        let r = $call.await;
        $self.record($op, start, &r);
        r
    }};
}

#[async_trait]
impl LeaseStore for Instrumented {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        self.inner.initialize().await
    }
    async fn list(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        timed!(self, LeaseOp::list, self.inner.list())
    }
    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        timed!(self, LeaseOp::get, self.inner.get(key))
    }
    async fn create_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        timed!(
            self,
            LeaseOp::create,
            self.inner.create_if_not_exists(lease)
        )
    }
    async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseStoreError> {
        timed!(self, LeaseOp::renew, self.inner.renew(lease))
    }
    async fn take(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseStoreError> {
        timed!(self, LeaseOp::take, self.inner.take(lease, owner))
    }
    async fn release(&self, lease: &Lease) -> Result<Lease, LeaseStoreError> {
        timed!(self, LeaseOp::release, self.inner.release(lease))
    }
    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease, LeaseStoreError> {
        timed!(
            self,
            LeaseOp::checkpoint,
            self.inner.checkpoint(lease, checkpoint)
        )
    }
    async fn set_child_shards(
        &self,
        key: &str,
        children: &[String],
    ) -> Result<(), LeaseStoreError> {
        timed!(
            self,
            LeaseOp::set_child_shards,
            self.inner.set_child_shards(key, children)
        )
    }
    async fn delete(&self, key: &str) -> Result<(), LeaseStoreError> {
        timed!(self, LeaseOp::delete, self.inner.delete(key))
    }
}
