//! Does a trigger mean something? A synthetic cohort with known episodes (`cohort`), the
//! project's own judgement run over it and scored (`evaluate`), and the `evaluate` command's
//! report (`report`). SIGNAL.md has the figures and the commands that produced them.

pub mod cohort;
pub mod evaluate;
mod report;

pub use report::{EvaluateArgs, run};
