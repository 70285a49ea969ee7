//! `topology describe`: the DAG as text (like Kafka Streams' `Topology#describe()`), Mermaid or
//! Graphviz dot. All three render one [`Graph`] built from the validated [`Topology`], so they
//! cannot disagree.

use std::fmt::Write;

use super::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Source,
    Processor,
    Sink,
}

#[derive(Debug)]
struct Node {
    id: String,
    kind: NodeKind,
    /// Topics for sources and sinks.
    topics: Vec<String>,
    stores: Vec<String>,
    next: Vec<String>,
}

#[derive(Debug)]
struct SubTopology {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Graph {
    subtopologies: Vec<SubTopology>,
    /// Store name -> changelog topic.
    stores: Vec<(String, String)>,
}

fn node(id: &str, kind: NodeKind, topics: &[&str], stores: &[String], next: &[&str]) -> Node {
    Node {
        id: id.to_owned(),
        kind,
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        stores: stores.to_vec(),
        next: next.iter().map(|n| (*n).to_owned()).collect(),
    }
}

fn graph(topology: &Topology) -> Graph {
    let mut subtopologies = Vec::new();
    // One re-keying sub-topology per repartitioned source.
    let mut main_sources: Vec<(String, String)> = Vec::new();
    for source in &topology.sources {
        match &source.repartition_topic {
            Some(repartition) => {
                let rekey = format!("{}-rekey", source.name);
                let sink = format!("{}-repartition-sink", source.name);
                subtopologies.push(SubTopology {
                    nodes: vec![
                        node(&source.name, NodeKind::Source, &[&source.topic], &[], &[&rekey]),
                        node(&rekey, NodeKind::Processor, &[], &[], &[&sink]),
                        node(&sink, NodeKind::Sink, &[repartition], &[], &[]),
                    ],
                });
                main_sources.push((format!("{}-repartition-source", source.name), repartition.clone()));
            }
            None => main_sources.push((source.name.clone(), source.topic.clone())),
        }
    }

    let mut nodes = Vec::new();
    let first = topology.processors.first().map(|p| p.0.clone()).unwrap_or_default();
    for (name, topic) in &main_sources {
        nodes.push(node(name, NodeKind::Source, &[topic], &[], &[&first]));
    }
    let sink_id = |topic: &str| format!("sink:{topic}");
    for (index, (name, _type, store)) in topology.processors.iter().enumerate() {
        let stores: Vec<String> = store.iter().cloned().collect();
        let mut next: Vec<String> = Vec::new();
        match topology.processors.get(index + 1) {
            Some(following) => next.push(following.0.clone()),
            None => next.extend(topology.event_sinks.iter().map(|t| sink_id(t))),
        }
        if index == 0 {
            // normalize: poison pills and pending fetches leave here.
            next.push(sink_id(&topology.pending_fetch_topic));
            next.push(sink_id(&topology.dlq_topic));
        }
        let next_refs: Vec<&str> = next.iter().map(String::as_str).collect();
        nodes.push(node(name, NodeKind::Processor, &[], &stores, &next_refs));
    }
    // The fetch stage joins the chain after normalize: notifications come back from pending-fetch
    // (and the retry topic) as fetched records.
    let after_normalize = topology.processors.get(1).map(|p| p.0.clone()).unwrap_or_default();
    let retry = &topology.fetch.retry_topic;
    nodes.push(node("fetch-source", NodeKind::Source, &[&topology.pending_fetch_topic, retry], &[], &["fetch"]));
    nodes.push(node("fetch", NodeKind::Processor, &[], &[], &[&after_normalize, &sink_id(retry), &sink_id(&topology.dlq_topic)]));
    let mut sink_topics: Vec<&String> = topology.event_sinks.iter().collect();
    sink_topics.push(&topology.pending_fetch_topic);
    sink_topics.push(retry);
    sink_topics.push(&topology.dlq_topic);
    for topic in sink_topics {
        nodes.push(node(&sink_id(topic), NodeKind::Sink, &[topic], &[], &[]));
    }
    subtopologies.push(SubTopology { nodes });

    Graph { subtopologies, stores: topology.stores.iter().map(|s| (s.name.clone(), s.changelog_topic.clone())).collect() }
}

/// Renders the topology in `format`.
pub fn describe(topology: &Topology, format: Format) -> String {
    let graph = graph(topology);
    match format {
        Format::Text => text(topology, &graph),
        Format::Mermaid => mermaid(&graph),
        Format::Dot => dot(&graph),
    }
}

fn predecessors<'a>(sub: &'a SubTopology, id: &str) -> Vec<&'a str> {
    sub.nodes.iter().filter(|n| n.next.iter().any(|next| next == id)).map(|n| n.id.as_str()).collect()
}

fn text(topology: &Topology, graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Topology: {}", topology.application_id);
    for (index, sub) in graph.subtopologies.iter().enumerate() {
        let _ = writeln!(out, "  Sub-topology: {index}");
        for n in &sub.nodes {
            let _ = match n.kind {
                NodeKind::Source => writeln!(out, "    Source: {} (topics: [{}])", n.id, n.topics.join(", ")),
                NodeKind::Processor => writeln!(out, "    Processor: {} (stores: [{}])", n.id, n.stores.join(", ")),
                NodeKind::Sink => writeln!(out, "    Sink: {} (topic: {})", n.id, n.topics.join(", ")),
            };
            if !n.next.is_empty() {
                let _ = writeln!(out, "      --> {}", n.next.join(", "));
            }
            let prev = predecessors(sub, &n.id);
            if !prev.is_empty() {
                let _ = writeln!(out, "      <-- {}", prev.join(", "));
            }
        }
    }
    if !graph.stores.is_empty() {
        let _ = writeln!(out, "  Stores:");
        for (name, changelog) in &graph.stores {
            let _ = writeln!(out, "    {name} (changelog: {changelog}, cleanup.policy=compact)");
        }
    }
    out
}

/// Mermaid/dot ids must be plain identifiers.
fn ident(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn label(n: &Node) -> String {
    match n.kind {
        NodeKind::Source => format!("source: {}", n.topics.join(", ")),
        NodeKind::Sink => format!("sink: {}", n.topics.join(", ")),
        NodeKind::Processor if n.stores.is_empty() => n.id.clone(),
        NodeKind::Processor => format!("{} [store: {}]", n.id, n.stores.join(", ")),
    }
}

fn mermaid(graph: &Graph) -> String {
    let mut out = String::from("flowchart LR\n");
    for (index, sub) in graph.subtopologies.iter().enumerate() {
        let _ = writeln!(out, "  subgraph sub{index}[\"Sub-topology {index}\"]");
        for n in &sub.nodes {
            let shape = match n.kind {
                NodeKind::Source | NodeKind::Sink => ("[/", "/]"),
                NodeKind::Processor => ("(", ")"),
            };
            let _ = writeln!(out, "    {}{}\"{}\"{}", ident(&format!("s{index}_{}", n.id)), shape.0, label(n), shape.1);
        }
        for n in &sub.nodes {
            for next in &n.next {
                let _ = writeln!(out, "    {} --> {}", ident(&format!("s{index}_{}", n.id)), ident(&format!("s{index}_{next}")));
            }
        }
        let _ = writeln!(out, "  end");
    }
    // A repartition topic joins the sub-topologies.
    for (index, sub) in graph.subtopologies.iter().enumerate() {
        for sink in sub.nodes.iter().filter(|n| n.kind == NodeKind::Sink) {
            for (other_index, other) in graph.subtopologies.iter().enumerate() {
                for source in other.nodes.iter().filter(|n| n.kind == NodeKind::Source && n.topics == sink.topics) {
                    let _ = writeln!(
                        out,
                        "  {} -.-> {}",
                        ident(&format!("s{index}_{}", sink.id)),
                        ident(&format!("s{other_index}_{}", source.id))
                    );
                }
            }
        }
    }
    for (name, changelog) in &graph.stores {
        let _ = writeln!(out, "  store_{}[(\"store {name} / changelog {changelog}\")]", ident(name));
        for (index, sub) in graph.subtopologies.iter().enumerate() {
            for n in sub.nodes.iter().filter(|n| n.stores.contains(name)) {
                let _ = writeln!(out, "  {} --- store_{}", ident(&format!("s{index}_{}", n.id)), ident(name));
            }
        }
    }
    out
}

fn dot(graph: &Graph) -> String {
    let mut out = String::from("digraph topology {\n  rankdir=LR;\n");
    for (index, sub) in graph.subtopologies.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{index} {{\n    label=\"Sub-topology {index}\";");
        for n in &sub.nodes {
            let shape = match n.kind {
                NodeKind::Source | NodeKind::Sink => "parallelogram",
                NodeKind::Processor => "box",
            };
            let _ = writeln!(out, "    {} [label=\"{}\", shape={shape}];", ident(&format!("s{index}_{}", n.id)), label(n));
        }
        for n in &sub.nodes {
            for next in &n.next {
                let _ = writeln!(out, "    {} -> {};", ident(&format!("s{index}_{}", n.id)), ident(&format!("s{index}_{next}")));
            }
        }
        out.push_str("  }\n");
    }
    for (name, changelog) in &graph.stores {
        let _ = writeln!(out, "  store_{} [label=\"store {name}\\nchangelog {changelog}\", shape=cylinder];", ident(name));
        for (index, sub) in graph.subtopologies.iter().enumerate() {
            for n in sub.nodes.iter().filter(|n| n.stores.contains(name)) {
                let _ = writeln!(out, "  {} -> store_{} [dir=both, style=dashed];", ident(&format!("s{index}_{}", n.id)), ident(name));
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    /// The README's diagram is this command's output for the shipped topology, so it cannot drift
    /// from the code again (it once lacked the whole fetch stage). To update it, paste
    /// `biometric-bridge topology describe --format mermaid` into the README's mermaid block.
    #[test]
    fn the_readme_diagram_is_the_shipped_topology() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```mermaid\n").expect("the README has a mermaid diagram") + "```mermaid\n".len();
        let end = start + readme[start..].find("```").expect("the diagram's block is closed");
        let topology = super::Topology::parse(super::super::DEFAULT_TOPOLOGY, "topologies/biometric.toml").unwrap();
        assert_eq!(&readme[start..end], super::describe(&topology, super::Format::Mermaid), "README.md's mermaid block is out of date");
    }
}
