//! Terra `health_observation` events (Terra OpenAPI, `HealthObservationEvent`,
//! `HealthObservationData`, `HealthObservationMetadata`): discrete observations — symptoms,
//! medication doses, moods and, what NEUROS must not miss, **device events** such as an
//! irregular-rhythm (possible atrial fibrillation) or sleep-apnea notification.
//!
//! Each observation becomes a `HEALTH_OBSERVATION` event carrying its normalized
//! `observation_type` and category; `summary_id` is the upsert key ("re-deliveries and amendments
//! reuse the same summary_id"). An observation with status `ENTERED_IN_ERROR` retracts the record
//! of that `summary_id`: a DELETED event naming its event. Start times may lack an offset, like
//! every Terra time.

use serde::Deserialize;

use super::TerraUser;
use crate::event::{BiometricEvent, EventKind};
use crate::vendors::time::{date_part, terra_time_to_millis};
use crate::vendors::{NormalizeError, RawInput, base_event, event_id};

#[derive(Deserialize)]
struct ObservationEvent {
    user: TerraUser,
    data: Vec<Observation>,
}

#[derive(Deserialize)]
struct Observation {
    metadata: Metadata,
    observation_data: ObservationData,
}

#[derive(Deserialize)]
struct Metadata {
    start_time: String,
    end_time: Option<String>,
    summary_id: String,
}

#[derive(Deserialize)]
struct ObservationData {
    /// `HealthObservationCategory`: a number 0-8.
    category: Option<serde_json::Value>,
    observation_type: String,
    status: Option<serde_json::Value>,
}

/// The name of a `HealthObservationCategory` number.
fn category_name(category: Option<&serde_json::Value>) -> Option<&'static str> {
    Some(match category?.as_u64()? {
        0 => "unspecified",
        1 => "symptom",
        2 => "reproductive_health",
        3 => "self_care",
        4 => "medication",
        5 => "lab_and_health_metrics",
        6 => "state_of_mind",
        7 => "device_event",
        8 => "clinical",
        _ => return None,
    })
}

/// Whether a status says the record was entered in error (a string or Terra's enum number 2 is
/// not relied on: only the documented name).
fn entered_in_error(status: Option<&serde_json::Value>) -> bool {
    status.and_then(serde_json::Value::as_str).is_some_and(|status| status.eq_ignore_ascii_case("entered_in_error"))
}

pub(super) fn normalize(input: &RawInput<'_>) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let event: ObservationEvent = serde_json::from_slice(input.body)?;
    let user = &event.user;
    event.data.into_iter().map(|observation| map(input, user, observation)).collect()
}

fn map(input: &RawInput<'_>, user: &TerraUser, observation: Observation) -> Result<BiometricEvent, NormalizeError> {
    let metadata = &observation.metadata;
    let data = &observation.observation_data;
    let (start, offset_known) = terra_time_to_millis(&metadata.start_time)?;
    let mut event = if entered_in_error(data.status.as_ref()) {
        let mut retraction =
            base_event(input, EventKind::Deleted, &format!("health_observation|{}", metadata.summary_id), &user.user_id, start);
        retraction.retracts_event_id = Some(event_id(input.vendor, EventKind::HealthObservation, &metadata.summary_id));
        retraction
    } else {
        let mut event = base_event(input, EventKind::HealthObservation, &metadata.summary_id, &user.user_id, start);
        event.measured_until = metadata.end_time.as_deref().map(terra_time_to_millis).transpose()?.map(|(end, _)| end);
        event.observation_type = Some(data.observation_type.clone());
        event.observation_category = category_name(data.category.as_ref()).map(str::to_owned);
        event
    };
    if !offset_known {
        event.note("measured_at", metadata.start_time.clone(), super::data::NO_UTC_OFFSET, Some("local time read as UTC".to_owned()));
    }
    event.vendor_record_id = Some(metadata.summary_id.clone());
    event.local_date = Some(date_part(&metadata.start_time)?);
    event.source_device = user.provider.clone();
    if let Some(reference_id) = user.reference_id() {
        event.user_id = reference_id.to_owned();
    }
    Ok(event)
}
