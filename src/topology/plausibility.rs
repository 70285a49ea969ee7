//! `[plausibility]`: the range each measurement must lie in to be used at all.
//!
//! A value outside its range (or not a finite number) is removed from the event and recorded as a
//! data-quality note (`processor::plausibility`): it is never judged by a trigger and never enters
//! a baseline. The ranges live in the topology, each with its source, so they can be reviewed and
//! changed without a release; every measurement field must have one, so a new field cannot slip
//! through unscreened.

use std::collections::BTreeMap;

use toml::Spanned;

use super::TopologyError;
use super::Validator;
use super::spec::RangeSpec;
use crate::event::metrics::{METRICS, metric};

/// An inclusive range, in the field's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn contains(&self, value: f64) -> bool {
        value >= self.min && value <= self.max
    }
}

/// Every measurement field's range.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plausibility {
    pub ranges: BTreeMap<&'static str, Range>,
}

impl Plausibility {
    pub fn range(&self, field: &str) -> Option<Range> {
        self.ranges.get(field).copied()
    }
}

impl Validator<'_> {
    pub(super) fn plausibility(&self, spec: &Spanned<BTreeMap<String, Spanned<RangeSpec>>>) -> Result<Plausibility, TopologyError> {
        let mut ranges = BTreeMap::new();
        for (name, range) in spec.get_ref() {
            let Some(metric) = metric(name) else {
                let known: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
                return Err(self.error(
                    range,
                    "plausibility",
                    format!("{name:?} is not a measurement field (one of {})", known.join(", ")),
                ));
            };
            let RangeSpec { min, max, source } = range.get_ref();
            if !(min.is_finite() && max.is_finite() && min < max) {
                return Err(self.error(range, &format!("plausibility.{name}"), "min and max must be finite numbers with min < max"));
            }
            if source.trim().is_empty() {
                return Err(self.error(range, &format!("plausibility.{name}.source"), "say where the range comes from"));
            }
            ranges.insert(metric.name, Range { min: *min, max: *max });
        }
        if let Some(missing) = METRICS.iter().find(|metric| !ranges.contains_key(metric.name)) {
            return Err(self.error(spec, "plausibility", format!("no range for measurement field {:?}", missing.name)));
        }
        Ok(Plausibility { ranges })
    }
}
