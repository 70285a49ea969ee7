//! The processor's business logic: what happens to one raw record. Plain functions and small
//! structs, no Kafka client, so all of it is unit-tested without a broker.
//!
//! - `pipeline.rs`: one record in, output records out (normalize -> identity -> dedup ->
//!   thresholds -> baseline -> route), dead letters and pending fetches included;
//! - `triggers.rs`: fixed rMSSD / SDNN thresholds; `baseline.rs`: personal HRV baselines;
//!   `illness.rs`: `ILLNESS_RISK`, several signals against their baselines;
//!   `judge.rs`: an event's triggers and the priority policy's header;
//!   `dedup.rs`: event-id de-duplication; `plausibility.rs`: impossible values removed before
//!   anything judges them; `store.rs`: the key-value interface they use.
//!
//! The streaming runtime (`runtime/`) owns transactions, offsets, rebalances and the
//! changelog-backed stores, and calls into this module.

pub mod backfill;
pub mod baseline;
pub mod dedup;
pub mod erase;
pub mod illness;
pub mod judge;
pub mod pipeline;
pub mod plausibility;
pub mod store;
pub mod triggers;

pub use pipeline::{AtRest, FetchPlan, Identities, InfraError, LookupError, Output, Pipeline, Record, SealFor, TaskStores, TopicLimits};
