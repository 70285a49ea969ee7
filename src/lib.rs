//! biometric-bridge: wearable-vendor webhooks in, clean exactly-once Kafka event streams out.
//!
//! Layout (one binary, `biometric-bridge`, with subcommands; see `main.rs`):
//!
//! - `ingress/`: the thin HTTP service — verify each vendor's signature over the raw bytes, write
//!   them unchanged to `raw-webhooks`, answer 2xx once the broker acknowledged.
//! - `vendors/`: one module per vendor holding its signature check, key extraction and
//!   normalization into the canonical event — plain functions, unit-tested on fixtures.
//! - `event/`: the canonical `BiometricEvent` and its Avro / Confluent wire-format encoding.
//! - `processor/`: the business logic of one record (normalize, identity, dedup, HRV thresholds
//!   and personal baselines, routing, dead letters) — no Kafka client in it.
//! - `runtime/`: the exactly-once streaming runtime that runs it (transactions, rebalances,
//!   tasks and changelog-backed state stores).
//! - `topology/`: the topology file (sources, processors, stores, sinks, routes, topics),
//!   validated, and described as text / Mermaid / dot.
//! - `sink/`: the exactly-once PostgreSQL history sink; `dlq/`: dead-letter list, show, replay.
//! - `events_tail.rs`: `events tail`, decoded output events for humans and scripts.
//! - `kafka/`: header names and topic administration; `identity.rs`: vendor user -> our user.
//! - `connections/`: Oura / WHOOP accounts connected by OAuth: encrypted tokens, the ingress's
//!   OAuth callback, refreshes under a Redis lock, `connections add|list|revoke|authorize-url`.
//! - `erasure/`: `users erase`, a person's data removed place by place, with its report.
//! - `audit/`: the append-only audit log (who did what to whose data) and `audit list`.
//! - `cli.rs`, `config.rs`, `secret.rs`, `telemetry.rs`, `metrics.rs`, `shutdown.rs`, `startup.rs`
//!   (waiting for dependencies at start), `db.rs`: plumbing.

pub mod at_rest;
pub mod audit;
pub mod cli;
pub mod config;
pub mod connections;
pub mod db;
pub mod dlq;
pub mod erasure;
pub mod event;
pub mod events_tail;
pub mod fetch;
pub mod identity;
pub mod ingress;
pub mod kafka;
pub mod keyring;
pub mod metrics;
pub mod processor;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod signal;
pub mod sink;
pub mod startup;
pub mod telemetry;
pub mod topology;
pub mod vendors;
