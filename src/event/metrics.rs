//! The measurement fields of a [`BiometricEvent`], by name.
//!
//! Plausibility screening (`processor::plausibility`) and the topology's `[plausibility]` section
//! address measurements by their Avro field name; this is the one list of those names, their
//! units and where each lives in the struct, so a new field cannot be forgotten by one of them.

use super::BiometricEvent;

/// A measurement field, borrowed for screening.
pub enum Slot<'a> {
    Real(&'a mut Option<f64>),
    Integer(&'a mut Option<i64>),
}

/// A measurement field's name (as in the Avro schema) and unit (as written in range notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
}

macro_rules! metrics {
    (real: $($real:ident : $real_unit:literal),* ; integer: $($int:ident : $int_unit:literal),* $(,)?) => {
        /// Every measurement field of the event.
        pub const METRICS: &[Metric] = &[
            $(Metric { name: stringify!($real), unit: $real_unit },)*
            $(Metric { name: stringify!($int), unit: $int_unit },)*
        ];

        impl BiometricEvent {
            /// The measurement field called `name`, if there is one.
            pub fn metric_slot(&mut self, name: &str) -> Option<Slot<'_>> {
                match name {
                    $(stringify!($real) => Some(Slot::Real(&mut self.$real)),)*
                    $(stringify!($int) => Some(Slot::Integer(&mut self.$int)),)*
                    _ => None,
                }
            }

            /// How many measurement fields hold a value.
            pub fn measurement_count(&self) -> usize {
                [$(self.$real.is_some(),)* $(self.$int.is_some(),)*].into_iter().filter(|set| *set).count()
            }
        }
    };
}

metrics! {
    real:
        hrv_rmssd_ms: "ms",
        hrv_sdnn_ms: "ms",
        heart_rate_avg_bpm: "bpm",
        heart_rate_min_bpm: "bpm",
        heart_rate_max_bpm: "bpm",
        resting_heart_rate_bpm: "bpm",
        recovery_score: "score",
        readiness_score: "score",
        sleep_score: "score",
        sleep_efficiency_pct: "%",
        respiratory_rate_bpm: "breaths/min",
        spo2_pct: "%",
        skin_temp_celsius: "°C",
        temperature_deviation_celsius: "°C",
        distance_meters: "m",
        active_calories_kcal: "kcal",
        total_calories_kcal: "kcal",
        strain: "strain";
    integer:
        sleep_total_seconds: "s",
        sleep_deep_seconds: "s",
        sleep_light_seconds: "s",
        sleep_rem_seconds: "s",
        sleep_awake_seconds: "s",
        time_in_bed_seconds: "s",
        steps: "steps",
}

/// The metric called `name`.
pub fn metric(name: &str) -> Option<Metric> {
    METRICS.iter().copied().find(|metric| metric.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::avro::SCHEMA_JSON;

    #[test]
    fn every_metric_is_an_optional_field_of_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA_JSON).unwrap();
        let fields = schema["fields"].as_array().unwrap();
        for metric in METRICS {
            let field =
                fields.iter().find(|field| field["name"] == metric.name).unwrap_or_else(|| panic!("{} not in the schema", metric.name));
            assert_eq!(field["type"][0], "null", "{}", metric.name);
        }
    }
}
