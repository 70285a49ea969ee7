//! Which topology a command runs: a file, or the one built into the binary, optionally
//! namespaced, with the Terra direct topic overridable (`--topology`, `--namespace`,
//! `--terra-direct-topic`). Shared by `process`, `topics create`, `topology describe`, the sink
//! and the DLQ tools, so they always agree on topic names.

use std::path::PathBuf;

use super::{SourceFormat, Topology};

/// The topology shipped with the binary, used when no `--topology` file is given.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../topologies/biometric.toml");

/// The topology text without the de-duplication processor and its store: for the exactly-once
/// proofs (the crash tests, `benches/chaos.rs`), where a duplicate must not be hidden by the
/// store, only prevented by the transactions.
pub fn without_dedup_store(text: &str) -> String {
    text.replace("[[processors]]\nname = \"dedup\"\ntype = \"dedup\"\nstore = \"dedup\"\n", "")
        .replace(
            "# Longest vendor retry horizon (Terra: a little over 24 h; Garmin \"On Hold\": 7 days) plus margin.\nwindow_days = 7\n",
            "",
        )
        .replace("[[stores]]\nname = \"dedup\"\n", "")
}

/// Which topology to run.
#[derive(Debug, Clone, clap::Args)]
pub struct TopologyArgs {
    /// Topology file (TOML). Default: the topology shipped in the binary
    /// (`topologies/biometric.toml`).
    #[arg(long = "topology", env = "TOPOLOGY_FILE")]
    pub file: Option<PathBuf>,

    /// Name of the topic Terra publishes to directly (overrides the topology's Terra source).
    #[arg(long, env = "TERRA_DIRECT_TOPIC")]
    pub terra_direct_topic: Option<String>,

    /// Suffix `-<namespace>` added to every topic and to the application id, so several copies
    /// of the pipeline can share a cluster (demo runs, tests, staging tenants).
    #[arg(long, env = "TOPOLOGY_NAMESPACE")]
    pub namespace: Option<String>,
}

impl TopologyArgs {
    pub fn load(&self) -> anyhow::Result<Topology> {
        let namespace = self.namespace.as_deref();
        let mut topology = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| anyhow::anyhow!("cannot read topology file {}: {error}", path.display()))?;
                Topology::parse_namespaced(&text, &path.display().to_string(), namespace)?
            }
            None => Topology::parse_namespaced(DEFAULT_TOPOLOGY, "topologies/biometric.toml (built in)", namespace)?,
        };
        if let Some(topic) = &self.terra_direct_topic {
            let Some(source) = topology.sources.iter_mut().find(|s| s.format == SourceFormat::Terra) else {
                anyhow::bail!("TERRA_DIRECT_TOPIC is set but the topology has no Terra source");
            };
            let old = std::mem::replace(&mut source.topic, topic.clone());
            for spec in &mut topology.topics {
                if spec.name == old {
                    spec.name = topic.clone();
                }
            }
        }
        Ok(topology)
    }
}
