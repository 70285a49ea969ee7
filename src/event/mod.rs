//! The canonical event model and its Avro / Confluent wire-format encoding.

pub mod avro;
pub mod metrics;
mod model;

pub use model::*;
