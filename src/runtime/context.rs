//! Rebalance handling: what happens to the open transaction and the tasks when partitions move.
//!
//! librdkafka calls [`RuntimeContext::rebalance`] from inside `poll`, on the transaction loop's
//! own thread, so the engine is never used concurrently (the mutex is uncontended and only
//! satisfies `Send + Sync`).
//!
//! - Revoke (cooperative: only the moving partitions): commit the open transaction first, so
//!   everything processed so far is handed over committed; if the assignment was *lost* (session
//!   timeout: another member may already own the partitions) abort it instead — committing could
//!   duplicate what the new owner reprocesses. Then drop the revoked tasks.
//! - Assign: commit first (restoring can take a while; an open transaction must not time out),
//!   assign, then restore the new tasks' stores before any of their records is processed.
//!
//! The repartition topics are not subscribed: partition p of each is assigned together with
//! partition p of the ingress topic (the task), which keeps a user's records and state together
//! whatever the group's assignor does.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use super::engine::{Engine, TxnError};

pub struct RuntimeContext {
    pub engine: Arc<Mutex<Option<Engine>>>,
}

impl ClientContext for RuntimeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::client_log::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::client_log::error(&error, reason);
    }

    /// Partition ends from librdkafka's statistics, for the lag gauge ([`super::lag`]). Served by
    /// `poll`, when the loop holds no lock; a tick that finds the engine busy is skipped.
    fn stats(&self, statistics: Statistics) {
        if let Ok(mut guard) = self.engine.try_lock()
            && let Some(engine) = guard.as_mut()
        {
            engine.lag.observe(&statistics);
        }
    }
}

impl ConsumerContext for RuntimeContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut guard = self.engine.lock().expect("engine lock");
        let Some(engine) = guard.as_mut() else {
            tracing::error!("Rebalance before the engine exists; ignoring.");
            return;
        };
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                engine.add_co_partitions(tpl);
                settle_open_transaction(engine, consumer, false);
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(error) = assigned {
                    tracing::error!(%error, "Could not take the assignment.");
                    engine.fatal = Some(TxnError::Fatal(format!("assign failed: {error}")));
                    return;
                }
                tracing::info!(partitions = %describe(tpl), "Partitions assigned.");
                // What the group has committed, for the lag gauge (librdkafka's own figure
                // cannot see transactional commits: see `lag.rs`).
                match consumer.committed_offsets(tpl.clone(), std::time::Duration::from_secs(10)) {
                    Ok(committed) => engine.lag.assigned(super::engine::committed_offsets(&committed)),
                    Err(error) => tracing::warn!(%error, "Could not read the committed offsets; lag is reported after the next rewind."),
                }
                if let Err(error) = engine.on_assigned(tpl) {
                    tracing::error!(%error, "Restoring state stores failed.");
                    engine.fatal = Some(TxnError::Fatal(format!("restore failed: {error}")));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                engine.add_co_partitions(tpl);
                let lost = consumer.assignment_lost();
                settle_open_transaction(engine, consumer, lost);
                engine.on_revoked(tpl);
                let unassigned = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(error) = unassigned {
                    tracing::error!(%error, "Could not release the revoked partitions.");
                }
                tracing::info!(partitions = %describe(tpl), lost, "Partitions revoked.");
            }
            other => {
                tracing::error!(error = ?other, "Rebalance error.");
                if cooperative {
                    let _ = consumer.incremental_unassign(tpl);
                } else {
                    let _ = consumer.unassign();
                }
            }
        }
    }
}

/// Commits (or, when the assignment was lost, aborts) the open transaction during a rebalance.
fn settle_open_transaction(engine: &mut Engine, consumer: &BaseConsumer<RuntimeContext>, lost: bool) {
    if !engine.txn_open() {
        return;
    }
    let result = if lost {
        tracing::warn!("Assignment lost: aborting the open transaction.");
        engine.abort("assignment_lost")
    } else {
        engine.commit(consumer).or_else(|error| match error {
            TxnError::Abortable(reason) => {
                tracing::warn!(%reason, "Commit on rebalance failed; aborting.");
                engine.abort("commit_failed")
            }
            fatal => Err(fatal),
        })
    };
    if let Err(error) = result {
        engine.fatal = Some(error);
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| format!("{}[{}]", e.topic(), e.partition())).collect::<Vec<_>>().join(", ")
}
