//! Kafka plumbing shared by the ingress, the processor and the tools: header names and helpers,
//! and topic administration.

pub mod admin;
pub mod headers;
