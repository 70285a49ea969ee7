//! Topology validation: the shipped file loads, and each kind of mistake is reported with its
//! line and field.

use super::*;

const SHIPPED: &str = include_str!("../../topologies/biometric.toml");

fn error_of(text: &str) -> String {
    Topology::parse(text, "t.toml").expect_err("should be refused").to_string()
}

#[test]
fn shipped_topology_is_valid() {
    let topology = Topology::parse(SHIPPED, "biometric.toml").unwrap();
    assert_eq!(topology.application_id, "biometric-bridge");
    assert_eq!(topology.route(Vendor::Terra), "terra-biometric-events");
    assert_eq!(topology.route(Vendor::Oura), "biometric-events");
    assert_eq!(topology.route(Vendor::AppleHealth), "biometric-events");
    assert_eq!(topology.dlq_topic, "raw-webhooks.dlq");
    assert_eq!(topology.thresholds, ThresholdParams::default());
    assert_eq!(topology.dedup, Some(DedupParams { window_ms: 7 * 86_400_000 }));

    let events = topology.topic("terra-biometric-events").unwrap();
    assert_eq!(events.partitions, 10);
    assert_eq!(events.configs.get("compression.type").map(String::as_str), Some("snappy"));
    let raw = topology.topic("raw-webhooks").unwrap();
    assert_eq!(
        raw.configs.get("max.message.bytes").map(String::as_str),
        Some(crate::kafka::MAX_RAW_RECORD_BYTES.to_string().as_str()),
        "the largest raw record fits"
    );
    let changelog = topology.topic("biometric-bridge-dedup-changelog").unwrap();
    assert_eq!(changelog.configs.get("cleanup.policy").map(String::as_str), Some("compact"));
    assert_eq!(changelog.partitions, topology.topic("raw-webhooks").unwrap().partitions);
    assert!(topology.topic("biometric-bridge-terra-direct-repartition").is_some());
    assert_eq!(topology.topic("raw-webhooks.dlq").unwrap().partitions, 1);
}

#[test]
fn unknown_field_names_the_field_and_line() {
    let text = SHIPPED.replace("window_days = 7", "window_dayz = 7");
    let message = error_of(&text);
    assert!(message.contains("window_dayz"), "{message}");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn missing_store_names_line_and_field() {
    let text = SHIPPED.replace("store = \"dedup\"", "store = \"dedupe\"");
    let line = SHIPPED.lines().position(|l| l.contains("store = \"dedup\"")).unwrap() + 1;
    let message = error_of(&text);
    assert!(message.contains(&format!("t.toml:{line}: field `processors.store`")), "{message}");
}

#[test]
fn inverted_thresholds_are_refused() {
    let text = SHIPPED.replace("rmssd_critical_below_ms = 25.0", "rmssd_critical_below_ms = 45.0");
    let message = error_of(&text);
    assert!(message.contains("processors.rmssd_critical_below_ms"), "{message}");
}

#[test]
fn unknown_vendor_in_route_is_refused() {
    let text = SHIPPED.replace("vendor = \"terra\"", "vendor = \"fitbit\"");
    let line = SHIPPED.lines().position(|l| l.contains("vendor = \"terra\"")).unwrap() + 1;
    let message = error_of(&text);
    assert!(message.contains(&format!("t.toml:{line}: field `routes.vendor`")), "{message}");
}

#[test]
fn a_catch_all_route_is_required() {
    let text = SHIPPED.replace("vendor = \"*\"", "vendor = \"oura\"");
    assert!(error_of(&text).contains("catch-all"));
}

#[test]
fn overrides_for_unknown_topics_are_refused() {
    let text = format!("{SHIPPED}\n[topics.typo-topic]\npartitions = 3\n");
    assert!(error_of(&text).contains("typo-topic"));
}

#[test]
fn wrong_types_are_parse_errors_with_a_line() {
    let text = SHIPPED.replace("window_days = 7", "window_days = \"seven\"");
    let message = error_of(&text);
    assert!(message.contains("line"), "{message}");
}

#[test]
fn describe_renders_every_node_in_every_format() {
    let topology = Topology::parse(SHIPPED, "biometric.toml").unwrap();
    let text = describe::describe(&topology, describe::Format::Text);
    assert!(text.contains("Sub-topology: 0"), "{text}");
    assert!(text.contains("Sub-topology: 1"), "{text}");
    assert!(text.contains("Source: webhooks (topics: [raw-webhooks])"), "{text}");
    assert!(text.contains("Processor: dedup (stores: [dedup])"), "{text}");
    assert!(text.contains("Sink: sink:terra-biometric-events (topic: terra-biometric-events)"), "{text}");
    let mermaid = describe::describe(&topology, describe::Format::Mermaid);
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("-.->"), "repartition edge joins the sub-topologies:\n{mermaid}");
    let dot = describe::describe(&topology, describe::Format::Dot);
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("cylinder"));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Any text: an error or a topology, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Topology::parse(&text, "t.toml");
        }

        /// The shipped file with lines dropped or their values replaced: whatever the validator
        /// says, it says it as an error with a line, never a panic.
        #[test]
        fn edited_topology_never_panics(edits in prop::collection::vec((any::<usize>(), prop_oneof![
            Just(None),
            Just(Some("= 0")),
            Just(Some("= -1")),
            Just(Some("= 1e400")),
            Just(Some("= \"\"")),
            Just(Some("= nan")),
            Just(Some("= { min = 5.0, max = 1.0, source = \"x\" }")),
            Just(Some("= [")),
        ]), 1..8)) {
            let mut lines: Vec<String> = SHIPPED.lines().map(str::to_owned).collect();
            for (index, edit) in edits {
                let index = index % lines.len();
                match edit {
                    None => {
                        lines.remove(index);
                    }
                    Some(value) => {
                        if let Some((key, _)) = lines[index].split_once('=') {
                            lines[index] = format!("{key}{value}");
                        }
                    }
                }
            }
            let text = lines.join("\n");
            if let Err(error) = Topology::parse(&text, "t.toml") {
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }
}

#[test]
fn every_measurement_needs_a_plausible_range_with_a_source() {
    let missing = SHIPPED.lines().filter(|line| !line.starts_with("steps = {")).collect::<Vec<_>>().join("\n");
    assert!(error_of(&missing).contains("no range for measurement field \"steps\""), "{}", error_of(&missing));
    let inverted = SHIPPED.replace("hrv_rmssd_ms = { min = 1.0, max = 300.0,", "hrv_rmssd_ms = { min = 300.0, max = 1.0,");
    assert!(error_of(&inverted).contains("plausibility.hrv_rmssd_ms"), "{}", error_of(&inverted));
    let unknown = SHIPPED.replace("steps = {", "stepz = {");
    assert!(error_of(&unknown).contains("\"stepz\" is not a measurement field"), "{}", error_of(&unknown));
    let unsourced = SHIPPED.replace("source = \"a day has 24 h\" }", "source = \" \" }");
    assert!(error_of(&unsourced).contains(".source"), "{}", error_of(&unsourced));
    let topology = Topology::parse(SHIPPED, "t").unwrap();
    assert_eq!(topology.plausibility.range("hrv_rmssd_ms"), Some(Range { min: 1.0, max: 300.0 }));
}

#[test]
fn replication_follows_the_cluster_for_every_topic_internal_ones_included() {
    let topology = Topology::parse(SHIPPED, "biometric.toml").unwrap();
    for topic in &topology.topics {
        assert_eq!(topic.replication_factor, Replicas::Auto, "{}", topic.name);
        let (single, configs) = topic.on_cluster(1);
        assert_eq!(single, 1, "{}", topic.name);
        assert!(!configs.contains_key("min.insync.replicas"), "one broker: the broker's default");
        let (three, configs) = topic.on_cluster(5);
        assert_eq!(three, 3, "{}: at most 3 copies", topic.name);
        assert_eq!(configs.get("min.insync.replicas").map(String::as_str), Some("2"), "{}", topic.name);
        assert_eq!(topic.on_cluster(2).0, 2);
    }
    let names: Vec<&str> = topology.topics.iter().map(|t| t.name.as_str()).collect();
    for internal in ["biometric-bridge-dedup-changelog", "biometric-bridge-terra-direct-repartition", "raw-webhooks.dlq", "pending-fetch"] {
        assert!(names.contains(&internal), "{internal} in {names:?}");
    }
    assert!(names.iter().any(|name| name.ends_with("fetch-retry")), "{names:?}");
}

#[test]
fn fixed_replication_and_in_sync_minimum_are_kept_and_nonsense_is_refused() {
    let text = SHIPPED
        .replace("replication_factor = \"auto\"", "replication_factor = 3")
        .replace("min_insync_replicas = \"auto\"", "min_insync_replicas = 1");
    let topology = Topology::parse(&text, "t.toml").unwrap();
    let (replicas, configs) = topology.topic("raw-webhooks").unwrap().on_cluster(1);
    assert_eq!((replicas, configs.get("min.insync.replicas").map(String::as_str)), (3, Some("1")));
    assert!(error_of(&SHIPPED.replace("replication_factor = \"auto\"", "replication_factor = 0")).contains("at least 1"));
    assert!(Topology::parse(&SHIPPED.replace("replication_factor = \"auto\"", "replication_factor = \"many\""), "t.toml").is_err());
}

/// Health data is kept only as long as it is useful: every topic of the shipped topology has a
/// retention of its own (none falls back to the broker's default), and every compacted changelog
/// keeps its tombstones long enough for a restoring instance to see them.
#[test]
fn every_shipped_topic_has_a_retention() {
    let topology = Topology::parse(SHIPPED, "biometric.toml").unwrap();
    const DAY: i64 = 24 * 3600 * 1000;
    for topic in &topology.topics {
        let config = |key: &str| topic.configs.get(key).map(|value| value.parse::<i64>().unwrap());
        if topic.configs.get("cleanup.policy").map(String::as_str) == Some("compact") {
            assert!(config("delete.retention.ms").is_some_and(|ms| ms >= DAY), "{}: tombstones kept a day at least", topic.name);
            assert_eq!(config("retention.ms"), None, "{}: a compacted changelog keeps current values", topic.name);
        } else {
            let retention = config("retention.ms").unwrap_or_else(|| panic!("{} has no retention.ms", topic.name));
            assert!((DAY..=30 * DAY).contains(&retention), "{}: {retention} ms", topic.name);
        }
    }
    let retention = |name: &str| topology.topic(name).unwrap().configs["retention.ms"].parse::<i64>().unwrap() / DAY;
    assert_eq!(retention("raw-webhooks"), 14, "replay two weeks back after a fix");
    assert_eq!(retention("raw-webhooks.dlq"), 30, "time to look at a dead letter");
    assert_eq!(retention("biometric-events"), 30);
    assert_eq!(retention("terra-biometric-events"), 30);
}
