//! Sealed records in the exactly-once loop: opened before the pipeline sees them, skipped when
//! their data key was erased; and the raw bytes the pipeline makes about a person (downloaded
//! Terra payloads, re-keyed Terra records) sealed before they are written.
//!
//! A record sealed under an erased key belongs to a person who asked to be forgotten: it is
//! skipped (its offset committed, nothing written), logged by position and key id only, and
//! counted in `at_rest_erased_skipped_total`. It is never dead-lettered: the dead letter would be
//! unreadable too, and an alarm about a lawful erasure. A key store that does not answer is an
//! outage like an identity lookup's: the record is consumed again once it is back.

use crate::at_rest::{BlockingReader, Opened, Reading};
use crate::kafka::headers;
use crate::processor::{AtRest, InfraError, Output, Record};

/// What a consumed value turned out to be.
pub enum Opening {
    Plain,
    Opened(Opened),
    Erased,
}

/// Opens the record's value if it is sealed.
pub fn open(reader: &BlockingReader, record: &Record<'_>) -> Result<Opening, InfraError> {
    let Some(value) = record.payload else { return Ok(Opening::Plain) };
    match reader.read(value) {
        Ok(Reading::Plain) => Ok(Opening::Plain),
        Ok(Reading::Opened(opened)) => Ok(Opening::Opened(opened)),
        Ok(Reading::Erased { key_id }) => {
            crate::metrics::AT_REST_ERASED_SKIPPED.inc();
            tracing::info!(
                topic = record.topic,
                partition = record.partition,
                offset = record.offset,
                %key_id,
                "Record sealed under an erased data key: skipped (its person was erased)."
            );
            Ok(Opening::Erased)
        }
        Err(error) => Err(key_store_down(error)),
    }
}

fn key_store_down(error: impl std::fmt::Display) -> InfraError {
    InfraError { dependency: "data keys", message: error.to_string() }
}

/// `record` as the pipeline sees it: the opened body, the stored bytes beside it.
pub fn view<'a>(record: Record<'a>, opening: &'a Opening) -> Record<'a> {
    match (opening, record.payload) {
        (Opening::Opened(opened), Some(stored)) => Record {
            payload: Some(&opened.body),
            at_rest: Some(AtRest { stored, vendor_user_id: opened.vendor_user_id.as_deref() }),
            ..record
        },
        _ => record,
    }
}

/// Seals every output that asks for it (`seal_for`): its key then names the data key and its
/// headers no user, exactly as the ingress writes a sealed record. A key store that does not
/// answer is an outage: nothing is written unsealed instead.
pub fn seal_outputs(reader: &BlockingReader, mut outputs: Vec<Output>) -> Result<Vec<Output>, InfraError> {
    for output in &mut outputs {
        let Some(seal_for) = output.seal_for.take() else { continue };
        let sealed = reader.seal(seal_for.vendor, &seal_for.vendor_user_id, &output.payload).map_err(key_store_down)?;
        if let Some(sealed) = sealed {
            output.key = Some(sealed.key.into_bytes());
            output.payload = sealed.value;
            output.headers = headers::copy_except(Some(output.headers.as_borrowed()), &[headers::VENDOR_USER_ID]);
        }
    }
    Ok(outputs)
}
