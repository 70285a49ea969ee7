//! Output-topic value -> [`EventRow`], through the schema registry (any schema id, cached), as a
//! downstream consumer would decode it.
//!
//! What is the record's fault and what is the registry's decides between skipping and waiting:
//! - not Confluent wire format, an Avro datum that does not decode with its schema, a value that is
//!   not a `BiometricEvent`, or a schema id the registry says does not exist (HTTP 404): the
//!   record can never be written — it is skipped (logged and counted) and its offset moves on;
//! - the registry unreachable or failing in any other way: nothing is wrong with the record, so it
//!   is retried until the registry answers. Skipping there would silently drop every event while a
//!   registry (or its URL) is broken.

use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;

use super::rows::EventRow;
use crate::event::BiometricEvent;
use crate::event::avro::split_wire_format;

/// A record that is not written, with a bounded code for `biometric_bridge_errors_total`.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Skipped {
    /// `undecodable` (bytes or schema) or `invalid_event` (decoded, but breaks the row contract).
    pub code: &'static str,
    pub reason: String,
}

/// The registry could not be asked; try the same record again later.
#[derive(Debug, thiserror::Error)]
#[error("schema registry unavailable: {0}")]
pub struct RegistryUnavailable(String);

pub struct EventDecoder {
    decoder: AvroDecoder,
}

impl EventDecoder {
    pub fn new(settings: SrSettings) -> Self {
        EventDecoder { decoder: AvroDecoder::new(settings) }
    }

    pub async fn decode(&self, payload: Option<&[u8]>) -> Result<Result<EventRow, Skipped>, RegistryUnavailable> {
        let undecodable = |reason: String| Ok(Err(Skipped { code: "undecodable", reason }));
        let Some(payload) = payload else {
            return undecodable("no value (tombstone)".to_owned());
        };
        let schema_id = match split_wire_format(payload) {
            Ok((schema_id, _)) => schema_id,
            Err(error) => return undecodable(error.to_string()),
        };
        // Looked up apart from decoding so that a lookup failure can be told from a bad datum.
        if let Err(error) = self.decoder.get_schema(schema_id).await {
            if is_not_found(&error) {
                return undecodable(format!("schema id {schema_id} is unknown to the registry"));
            }
            // Failures other than transport errors are cached by the decoder: forget them, so
            // the retry asks the registry again.
            self.decoder.remove_errors_from_cache();
            return Err(RegistryUnavailable(error.to_string()));
        }
        let value = match self.decoder.decode(Some(payload)).await {
            Ok(decoded) => decoded.value,
            Err(error) => return undecodable(format!("avro (schema id {schema_id}): {}", error.error)),
        };
        let event: BiometricEvent = match apache_avro::from_value(&value) {
            Ok(event) => event,
            Err(error) => return undecodable(format!("not a BiometricEvent (schema id {schema_id}): {error}")),
        };
        Ok(EventRow::from_event(&event)
            .map_err(|error| Skipped { code: "invalid_event", reason: format!("event {}: {error}", event.event_id) }))
    }
}

/// The registry answered that the schema does not exist (HTTP 404, Confluent error code 40403),
/// as opposed to not answering. The converter reports the status only in its error text.
fn is_not_found(error: &SRCError) -> bool {
    error.error.contains("status 404") || error.cause.as_deref().is_some_and(|cause| cause.contains("40403"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_registry_404_makes_a_schema_id_unknown() {
        let not_found = SRCError::new(
            "HTTP request to schema registry failed with status 404 Not Found",
            Some("error_code: 40403, message: Schema 2147483632 not found.".into()),
            false,
        );
        assert!(is_not_found(&not_found));
        let failing = SRCError::new("HTTP request to schema registry failed with status 500 Internal Server Error", None, false);
        assert!(!is_not_found(&failing), "a broken registry is waited for, not taken as an unknown id");
        let unreachable = SRCError::new("http call to schema registry failed", Some("connection refused".into()), true);
        assert!(!is_not_found(&unreachable));
    }
}
