//! Kafka plumbing shared by the ingress, the processor and the tools: header names and helpers,
//! topic administration, and the first contact at start.

pub mod admin;
pub mod client_log;
pub mod headers;
pub mod preflight;

/// The largest raw record: a 64 MiB webhook body (Terra's, the largest any vendor sends) plus
/// 2 MiB for key, headers and framing. Raw, dead-letter, pending-fetch, retry and repartition
/// topics carry raw bytes, so their `max.message.bytes` (the topology's) and every producer that
/// writes them follow it.
pub const MAX_RAW_RECORD_BYTES: usize = 66 * 1024 * 1024;
