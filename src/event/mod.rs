//! The canonical event model and its Avro / Confluent wire-format encoding.

pub mod avro;
mod model;

pub use model::*;
