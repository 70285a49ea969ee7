//! Avro encoding of [`BiometricEvent`] in the Confluent Schema Registry wire format:
//! `0x00` magic byte, 4-byte big-endian schema id, then the Avro binary datum.
//!
//! The schema (`schemas/biometric_event.avsc`) is compiled into the binary, registered once at
//! start ([`register`]) and its id cached in the [`EventCodec`], so encoding on the hot path makes
//! no HTTP call. Decoding of arbitrary ids (tests, the PostgreSQL sink, `dlq show`) goes through
//! `schema_registry_converter`'s caching decoder.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use super::BiometricEvent;

/// The schema text exactly as registered.
pub const SCHEMA_JSON: &str = include_str!("../../schemas/biometric_event.avsc");

/// The parsed schema, shared by the whole process.
pub static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::parse_str(SCHEMA_JSON).expect("schemas/biometric_event.avsc is valid Avro"));

/// The Confluent magic byte that starts every wire-format value.
const MAGIC_BYTE: u8 = 0;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("schema registry: {0}")]
    Registry(String),
    /// The registry answered, and said no (404: wrong URL or path, 401/403: credentials, 422:
    /// an incompatible schema). Waiting does not fix it.
    #[error("schema registry refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("avro: {0}")]
    Avro(String),
    #[error("not a Confluent wire-format value: {0}")]
    WireFormat(&'static str),
    #[error("value was written with schema id {found}, this decoder knows {expected}")]
    UnknownSchemaId { expected: u32, found: u32 },
}

/// Registers the event schema under `subject` (idempotent: an identical schema returns the id it
/// already has) and returns its id.
pub async fn register(settings: &SrSettings, subject: &str) -> Result<u32, CodecError> {
    let supplied = SuppliedSchema::new(Some("io.biometricbridge.v1.BiometricEvent".to_owned()), SchemaType::Avro, SCHEMA_JSON.to_owned());
    post_schema(settings, subject.to_owned(), supplied).await.map(|registered| registered.id).map_err(|error| {
        match refusal_status(&error.error) {
            Some(status) if !error.retriable => CodecError::Refused { status, message: error.to_string() },
            _ => CodecError::Registry(error.to_string()),
        }
    })
}

/// The compatibility every event subject is held to: a new schema must read every event written
/// with the previous one, so consumers (NEUROS) upgrade after the producer, never before. The
/// registry then refuses an incompatible schema at the processor's start (409), and
/// `schemas/history/` with its integration test catches one before it is released.
pub const COMPATIBILITY: &str = "BACKWARD";

/// Sets `subject`'s compatibility to [`COMPATIBILITY`] (idempotent; also for a subject that does
/// not exist yet, so the first registration is already held to it).
pub async fn set_compatibility(registry: &crate::config::RegistryHttp, subject: &str) -> Result<(), CodecError> {
    let url = format!("{}/config/{}", registry.base_url, subject);
    let mut request = registry
        .client
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "compatibility": COMPATIBILITY }));
    if let Some((user, password)) = &registry.auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|error| CodecError::Registry(error.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let message = response.text().await.unwrap_or_default().chars().take(300).collect();
    match status.as_u16() {
        code @ 400..=499 if code != 408 && code != 429 => Err(CodecError::Refused { status: code, message }),
        code => Err(CodecError::Registry(format!("HTTP {code}: {message}"))),
    }
}

/// The 4xx status in the crate's "… failed with status 404 Not Found" message, except the two a
/// retry can cure (408 timeout, 429 rate limit).
fn refusal_status(message: &str) -> Option<u16> {
    let digits = message.split("status ").nth(1)?.get(..3)?;
    let status: u16 = digits.parse().ok()?;
    ((400..500).contains(&status) && status != 408 && status != 429).then_some(status)
}

/// Encodes and decodes events with one known, registered schema id.
pub struct EventCodec {
    schema_id: u32,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

impl EventCodec {
    pub fn new(schema_id: u32) -> Self {
        let writer = GenericDatumWriter::builder(&SCHEMA).build().expect("schema resolves");
        let reader = GenericDatumReader::builder(&SCHEMA).build().expect("schema resolves");
        EventCodec { schema_id, writer, reader }
    }

    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Wire-format bytes of `event`. Pure CPU; no I/O.
    pub fn encode(&self, event: &BiometricEvent) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(512);
        out.push(MAGIC_BYTE);
        out.extend_from_slice(&self.schema_id.to_be_bytes());
        self.writer.write_ser(&mut out, event).map_err(|error| CodecError::Avro(error.to_string()))?;
        Ok(out)
    }

    /// Decodes a value written with this codec's schema id.
    pub fn decode(&self, bytes: &[u8]) -> Result<BiometricEvent, CodecError> {
        let (schema_id, mut datum) = split_wire_format(bytes)?;
        if schema_id != self.schema_id {
            return Err(CodecError::UnknownSchemaId { expected: self.schema_id, found: schema_id });
        }
        self.reader.read_deser(&mut datum).map_err(|error| CodecError::Avro(error.to_string()))
    }
}

/// The bare Avro datum of `event` (no wire-format header), e.g. to fingerprint its content:
/// cheaper than any text serialization, and stable for a given schema.
pub fn datum(event: &BiometricEvent) -> Vec<u8> {
    static WRITER: LazyLock<GenericDatumWriter<'static>> =
        LazyLock::new(|| GenericDatumWriter::builder(&SCHEMA).build().expect("schema resolves"));
    WRITER.write_ser_to_vec(event).expect("events always encode against their own schema")
}

/// Splits a Confluent wire-format value into its schema id and Avro datum.
pub fn split_wire_format(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [_, ..] if bytes.len() >= 5 => Err(CodecError::WireFormat("magic byte is not 0")),
        _ => Err(CodecError::WireFormat("shorter than the 5-byte header")),
    }
}

#[cfg(test)]
mod tests {
    use super::refusal_status;

    #[test]
    fn client_errors_are_refusals_except_the_retryable_ones() {
        assert_eq!(refusal_status("HTTP request to schema registry failed with status 404 Not Found"), Some(404));
        assert_eq!(refusal_status("HTTP request to schema registry failed with status 401 Unauthorized"), Some(401));
        assert_eq!(refusal_status("HTTP request to schema registry failed with status 429 Too Many Requests"), None);
        assert_eq!(refusal_status("HTTP request to schema registry failed with status 500 Internal Server Error"), None);
        assert_eq!(refusal_status("http call to schema registry failed"), None);
    }
}
