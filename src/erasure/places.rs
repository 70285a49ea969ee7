//! The erase's report: one line per place the project keeps data in, cleaned (with a count) or
//! not (with why, and when the data goes on its own).

use crate::topology::Topology;

/// One place and what the erase did there.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// `postgres.<table>`, `vendor.revocation`, `kafka.<what>`, `stores`.
    pub name: String,
    pub cleaned: bool,
    /// Rows (records) removed, when cleaned.
    pub count: u64,
    /// Why not, when not cleaned.
    pub note: String,
}

impl Place {
    pub fn cleaned(name: &str, count: u64) -> Place {
        Place { name: name.to_owned(), cleaned: true, count, note: String::new() }
    }

    /// A place done by writing, not deleting (`count` records, `note` says what).
    pub fn written(name: &str, count: u64, note: impl Into<String>) -> Place {
        Place { name: name.to_owned(), cleaned: true, count, note: note.into() }
    }

    pub fn unclean(name: &str, note: impl Into<String>) -> Place {
        Place { name: name.to_owned(), cleaned: false, count: 0, note: note.into() }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub places: Vec<Place>,
}

impl Report {
    /// The places that still hold data about the person.
    pub fn unclean(&self) -> Vec<&str> {
        self.places.iter().filter(|place| !place.cleaned).map(|place| place.name.as_str()).collect()
    }

    pub fn render(&self, user: &str) -> String {
        let mut out = format!("erase of user {user}\n");
        for place in &self.places {
            if place.cleaned && !place.note.is_empty() {
                out.push_str(&format!("  ok           {:<28} {}\n", place.name, place.note));
            } else if place.cleaned {
                out.push_str(&format!("  ok           {:<28} {} removed\n", place.name, place.count));
            } else {
                out.push_str(&format!("  NOT CLEANED  {:<28} {}\n", place.name, place.note));
            }
        }
        out
    }
}

/// The Kafka places the erase cannot clean yet, with when their records go.
pub fn kafka(topology: &Topology) -> Vec<Place> {
    let days = |names: &mut dyn Iterator<Item = &str>| -> Vec<String> {
        names
            .filter_map(|name| {
                let retention = topology.topic(name)?.configs.get("retention.ms")?.parse::<i64>().ok()?;
                Some(format!("{name} {} d", retention / 86_400_000))
            })
            .collect()
    };
    let outputs = days(&mut topology.event_sinks.iter().map(String::as_str));
    let compacted = |name: &str| topology.topic(name).is_some_and(|t| t.configs.get("cleanup.policy").is_some_and(|p| p == "compact"));
    let at_rest = days(
        &mut topology
            .topics
            .iter()
            .map(|topic| topic.name.as_str())
            .filter(|name| !topology.event_sinks.iter().any(|sink| sink == name) && !compacted(name)),
    );
    vec![
        Place::unclean(
            "kafka.at_rest",
            format!(
                "Kafka cannot delete single records and per-user encryption (crypto-shredding) is not built yet; the \
                 person's webhooks, dead letters, fetches and retries go when retention passes: {}",
                at_rest.join(", ")
            ),
        ),
        Place::unclean(
            "kafka.outputs",
            format!(
                "the person's events stay readable until retention passes ({}); consumers delete their copies on USER_ERASED",
                outputs.join(", ")
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_place_the_shipped_topology_keeps_and_its_retention() {
        let topology = Topology::parse(include_str!("../../topologies/biometric.toml"), "biometric.toml").unwrap();
        let places = kafka(&topology);
        let at_rest = &places[0].note;
        for part in ["raw-webhooks 14 d", "raw-webhooks.dlq 30 d", "pending-fetch 14 d"] {
            assert!(at_rest.contains(part), "{part} in {at_rest}");
        }
        assert!(!at_rest.contains("changelog") && !at_rest.contains("biometric-events"), "{at_rest}");
        assert!(places[1].note.contains("terra-biometric-events 30 d") && places[1].note.contains("biometric-events 30 d"));

        let mut report = Report { places: vec![Place::cleaned("postgres.ingest_tokens", 2)] };
        report.places.extend(places);
        assert_eq!(report.unclean(), ["kafka.at_rest", "kafka.outputs"]);
        let text = report.render("user-7");
        assert!(text.starts_with("erase of user user-7\n  ok           postgres.ingest_tokens       2 removed\n"), "{text}");
        assert_eq!(text.matches("NOT CLEANED").count(), 2);
    }
}
