//! Outage tests: the ingress while Redis or Kafka is stopped, and after they come back.
//!
//! Why a separate test binary: these tests stop shared infrastructure with `scripts/stack down`.
//! Tests inside one binary run in parallel threads, so a stopped broker would break whatever
//! `tests/integration` test happened to run meanwhile; cargo runs test *binaries* one after
//! another, so while this binary runs, nothing else of ours is using the stack. Inside it the
//! tests are serialized by [`stack::serial`], and every outage is an [`stack::Outage`] guard that
//! brings its component back up when dropped, even when an assertion fails mid-way, so the stack
//! is never left down.
//!
//! The harness of the integration tests is reused as is, by path.

#[allow(dead_code)]
#[path = "../integration/fetch_support.rs"]
mod fetch_support;
#[allow(dead_code)]
#[path = "../integration/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../integration/ingress_harness.rs"]
mod ingress_harness;
#[allow(dead_code)]
#[path = "../integration/ingress_support.rs"]
mod ingress_support;
#[path = "../integration/vendor_sim.rs"]
mod vendor_sim;

mod fetch_outage;
mod kafka_outage;
mod postgres_outage;
mod redis_outage;
mod stack;
