//! The processor's identity lookups, made blocking for the transaction loop's thread.
//!
//! The loop runs on its own OS thread (transactional Kafka calls block), so it drives the async
//! PostgreSQL client with `Handle::block_on`, under a timeout: a hung database is an outage to
//! wait out, not a reason to hold a transaction open.

use std::time::Duration;

use tokio::runtime::Handle;

use crate::event::Vendor;
use crate::identity::IdentityMap;
use crate::processor::{Identities, InfraError, LookupError};
use crate::vendors::IdentityChange;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct BlockingIdentities {
    pub map: IdentityMap,
    pub handle: Handle,
}

fn outage(message: impl ToString) -> LookupError {
    LookupError::Unavailable(InfraError { dependency: "postgresql", message: message.to_string() })
}

/// A failed query as what it means for the record (`db::is_record_fault`).
fn classify(error: sqlx::Error) -> LookupError {
    if crate::db::is_record_fault(&error) { LookupError::Rejected(error.to_string()) } else { outage(error) }
}

impl BlockingIdentities {
    /// Whether PostgreSQL answers again (used while paused).
    pub fn available(&self) -> bool {
        self.handle.block_on(async { tokio::time::timeout(CALL_TIMEOUT, self.map.ping()).await }).is_ok_and(|r| r.is_ok())
    }
}

impl Identities for BlockingIdentities {
    fn resolve(&mut self, vendor: Vendor, vendor_user_id: &str) -> Result<Option<String>, LookupError> {
        if let Some(answer) = self.map.cached(vendor, vendor_user_id) {
            return Ok(answer);
        }
        let map = &mut self.map;
        self.handle
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, map.lookup(vendor, vendor_user_id)).await })
            .map_err(|_| outage("identity lookup timed out"))?
            .map_err(classify)
    }

    fn apply(&mut self, change: &IdentityChange) -> Result<(), LookupError> {
        let map = &mut self.map;
        self.handle
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, map.apply(change)).await })
            .map_err(|_| outage("identity update timed out"))?
            .map_err(classify)
    }
}
