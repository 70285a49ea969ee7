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

/// The Kafka places beyond the sealed ones, with when their records go.
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
    let mut places = Vec::new();
    // Records others write (Terra's destination), and the copies of its pointers, are not sealed.
    let unsealed: Vec<&str> = topology
        .sources
        .iter()
        .filter(|source| source.format != crate::topology::SourceFormat::Ingress)
        .flat_map(|source| std::iter::once(source.topic.as_str()).chain(source.repartition_topic.as_deref()))
        .collect();
    if !unsealed.is_empty() {
        places.push(Place::unclean(
            "kafka.unsealed",
            format!(
                "records of Terra's own Kafka destination (written by Terra in the clear) and the repartition copies of \
                 its pointers (which name no user) are not sealed: they go when retention passes ({})",
                days(&mut unsealed.into_iter()).join(", ")
            ),
        ));
    }
    places.push(Place::written(
        "kafka.outputs",
        0,
        format!(
            "events stay readable Avro by design until retention ({}); consumers delete their copies on USER_ERASED",
            outputs.join(", ")
        ),
    ));
    places
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_unsealed_places_of_the_shipped_topology_and_their_retention() {
        let topology = Topology::parse(include_str!("../../topologies/biometric.toml"), "biometric.toml").unwrap();
        let places = kafka(&topology);
        let unsealed = &places[0].note;
        assert_eq!(places[0].name, "kafka.unsealed");
        assert!(unsealed.contains("terra-direct 14 d") && unsealed.contains("terra-direct-repartition 14 d"), "{unsealed}");
        assert!(!unsealed.contains("raw-webhooks") && !unsealed.contains("changelog"), "{unsealed}");
        assert!(places[1].note.contains("terra-biometric-events 30 d") && places[1].note.contains("biometric-events 30 d"));

        let mut report = Report { places: vec![Place::cleaned("postgres.ingest_tokens", 2)] };
        report.places.extend(places);
        assert_eq!(report.unclean(), ["kafka.unsealed"]);
        let text = report.render("user-7");
        assert!(text.starts_with("erase of user user-7\n  ok           postgres.ingest_tokens       2 removed\n"), "{text}");
        assert_eq!(text.matches("NOT CLEANED").count(), 1);
    }
}
