//! Sinks: copies of the output events outside Kafka.

pub mod postgres;
