//! The Riffle operator: Stream, Consumer and RiffleBroker resources, converged through the
//! Kinesis API, with a shard autoscaler.
//!
//! # Layout (start reading at [`controller`])
//!
//! - [`crd`]: the resource types; the CRD YAML is generated from them.
//! - [`autoscale`] and [`budget`]: the pure autoscaling policy and reshard ledger.
//! - [`plan`]: the pure converge planner: spec + observed stream → Kinesis actions.
//! - [`kinesis`]: observes a stream and executes planned actions with `aws-sdk-kinesis`.
//! - [`load`]: scrapes a broker's `/metrics` into per-shard rates over a window.
//! - [`stream`]: one Stream reconcile step, shared by the controller and standalone mode.
//! - [`controller`]: the Kubernetes controllers (Stream, Consumer, RiffleBroker): finalizers,
//!   events, status, backoff, pause.
//! - [`render`]: pure RiffleBroker → StatefulSet, Services, ConfigMap, PDB, ServiceMonitor.
//! - [`leader`]: Lease-based leader election.
//! - [`standalone`]: the same stream reconcile driven from manifest files, without Kubernetes.
//! - [`metrics`]: the operator's Prometheus metrics.

pub mod autoscale;
pub mod budget;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod kinesis;
pub mod leader;
pub mod load;
pub mod metrics;
pub mod plan;
pub mod render;
pub mod standalone;
pub mod stream;
