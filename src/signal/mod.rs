//! Does a trigger mean something? A synthetic cohort with known episodes (`cohort`), the
//! project's own judgement run over it and scored (`evaluate`), and the `evaluate` command's
//! report (`report`), and one person's picture (`chart`, `users chart`). SIGNAL.md has the figures and the commands that produced them.

pub mod chart;
pub mod cohort;
pub mod evaluate;
mod report;
pub mod users;

pub use report::{EvaluateArgs, run};
