//! Integration tests against the real stack (`scripts/stack up`; `scripts/test` does it).
//! One test binary: faster to build than one per file.

mod abort;
mod bad_data;
mod connections;
mod crash;
mod dlq_replay;
mod fencing;
mod fetch_crash;
mod fetch_stage;
mod fetch_support;
mod helpers;
mod ingress_auth;
mod ingress_dedup;
mod ingress_errors;
mod ingress_hardening;
mod ingress_harness;
mod ingress_probes;
mod ingress_process;
mod ingress_support;
mod ingress_tokens;
mod kafka_outage;
mod metrics_truth;
mod sasl_ssl;
mod schema_compat;
mod sink_crash;
mod sink_postgres;
mod sink_support;
mod start_order;
mod state;
mod subscriptions;
mod terra_end_to_end;
mod terra_pointers;
mod terra_sim;
mod vendor_contracts;
mod vendor_sim;
mod vendor_sim_selftest;
