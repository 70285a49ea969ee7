//! `events tail`: prints committed output events, decoded through the schema registry (any
//! schema id, as a downstream consumer would), one JSON object per line with its headers.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use schema_registry_converter::async_impl::avro::AvroDecoder;

use crate::config::{KafkaArgs, RegistryArgs};
use crate::shutdown::CancellationToken;

/// Where to start and when to stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct TailOptions {
    pub from_beginning: bool,
    pub max: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub since_ms: Option<i64>,
}

pub async fn tail(
    kafka: &KafkaArgs,
    registry: &RegistryArgs,
    topics: &[String],
    options: TailOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let TailOptions { from_beginning, max, idle_timeout_secs, since_ms } = options;
    let group = format!("biometric-bridge-tail-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = kafka
        .config_with(&[
            ("group.id", &group),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", if from_beginning { "earliest" } else { "latest" }),
        ])?
        .create()?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    let decoder = AvroDecoder::new(registry.settings()?);
    let idle = idle_timeout_secs.map(Duration::from_secs);
    let mut printed = 0usize;
    let mut last = Instant::now();
    loop {
        if max.is_some_and(|max| printed >= max) || shutdown.is_cancelled() {
            return Ok(());
        }
        let wait = idle.map_or(Duration::from_secs(1), |idle| idle.saturating_sub(last.elapsed()).max(Duration::from_millis(10)));
        let message = tokio::select! {
            message = consumer.recv() => message?,
            _ = tokio::time::sleep(wait) => {
                if idle.is_some_and(|idle| last.elapsed() >= idle) {
                    return Ok(());
                }
                continue;
            }
            _ = shutdown.cancelled() => return Ok(()),
        };
        last = Instant::now();
        if since_ms.is_some_and(|since| message.timestamp().to_millis().is_some_and(|at| at < since)) {
            continue;
        }
        let decoded = decoder.decode(message.payload()).await.map_err(|error| anyhow::anyhow!("decode: {error}"))?;
        let value = apache_avro::from_value::<serde_json::Value>(&decoded.value).unwrap_or(serde_json::Value::Null);
        let mut headers = serde_json::Map::new();
        if let Some(h) = message.headers() {
            for header in h.iter() {
                let text = header.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(header.key.to_owned(), text.into());
            }
        }
        let line = serde_json::json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "headers": headers,
            "event": value,
        });
        println!("{line}");
        printed += 1;
    }
}
