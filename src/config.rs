//! Connection settings shared by the subcommands, read from flags and environment variables.
//!
//! Every setting has a flag and an environment variable (clap `env`); the README's configuration
//! table lists them all. Secrets are not here: they come only from the environment or `*_FILE`
//! (see `secret.rs`), so they never appear in `--help`, `ps` or shell history. URLs that may embed
//! a password (`DATABASE_URL`, `REDIS_URL`) are hidden from `--help` and never logged whole.

use rdkafka::ClientConfig;

/// Kafka connection.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long = "kafka-bootstrap-servers", env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,

    /// Extra librdkafka property as key=value (repeatable), applied after the built-in settings,
    /// e.g. `security.protocol=SASL_SSL`. Env: semicolon-separated list.
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_delimiter = ';', value_parser = parse_key_value, hide_env_values = true)]
    pub kafka_options: Vec<(String, String)>,
}

impl KafkaArgs {
    /// A client config with the bootstrap servers and the user's overrides. Callers set their
    /// role-specific properties first via [`KafkaArgs::config_with`], so user overrides win.
    pub fn config_with(&self, properties: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in properties {
            config.set(*key, *value);
        }
        for (key, value) in &self.kafka_options {
            config.set(key, value);
        }
        config
    }
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    let (key, value) =
        raw.split_once('=').ok_or_else(|| format!("expected key=value, got {:?}", raw.split('=').next().unwrap_or_default()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err("empty key".to_owned());
    }
    Ok((key.to_owned(), value.trim().to_owned()))
}

/// Confluent-compatible schema registry (Confluent, Apicurio `ccompat`, Redpanda, Karapace).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Base URL of the Confluent-compatible schema registry API.
    #[arg(long = "schema-registry-url", env = "SCHEMA_REGISTRY_URL", default_value = "http://127.0.0.1:8081/apis/ccompat/v7")]
    pub registry_url: String,
}

impl RegistryArgs {
    pub fn settings(&self) -> anyhow::Result<schema_registry_converter::async_impl::schema_registry::SrSettings> {
        // The registry client is reqwest on rustls: it needs the process's crypto provider.
        crate::connections::http::install_tls_provider();
        schema_registry_converter::async_impl::schema_registry::SrSettings::new_builder(self.registry_url.clone())
            .set_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|error| anyhow::anyhow!("schema registry settings: {error}"))
    }
}

/// PostgreSQL (identity mapping, Apple Health tokens, event history).
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://bridge:bridge@127.0.0.1:5432/biometric_bridge",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: String,

    /// Maximum connections in the pool.
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", default_value_t = 5)]
    pub database_max_connections: u32,
}

impl DatabaseArgs {
    /// A lazily connecting pool: commands start even while PostgreSQL is briefly down, and each
    /// use reports the outage instead.
    pub fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(self.database_max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy(&self.database_url)
            .map_err(|error| anyhow::anyhow!("invalid DATABASE_URL: {}", redact_url_error(&error.to_string(), &self.database_url)))
    }

    /// Connects and applies the embedded migrations (`migrations/`).
    pub async fn migrated_pool(&self) -> anyhow::Result<sqlx::PgPool> {
        let pool = self.pool()?;
        crate::db::MIGRATOR.run(&pool).await.map_err(|error| {
            anyhow::anyhow!("PostgreSQL migrations failed: {}", redact_url_error(&error.to_string(), &self.database_url))
        })?;
        Ok(pool)
    }
}

/// Redis (the ingress's de-duplication fast path).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis connection URL.
    #[arg(long = "redis-url", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
    pub redis_url: String,
}

/// Removes a URL (which may carry a password) from an error text before it is shown.
pub fn redact_url_error(text: &str, url: &str) -> String {
    if url.is_empty() { text.to_owned() } else { text.replace(url, "<url>") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_options_parse() {
        assert_eq!(parse_key_value("linger.ms = 5").unwrap(), ("linger.ms".to_owned(), "5".to_owned()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn user_options_override_built_in_ones() {
        let args = KafkaArgs { bootstrap_servers: "b:9092".into(), kafka_options: vec![("linger.ms".into(), "50".into())] };
        let config = args.config_with(&[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn urls_are_redacted_from_errors() {
        let url = "postgres://u:pw@h/db";
        assert_eq!(redact_url_error("failed to connect to postgres://u:pw@h/db", url), "failed to connect to <url>");
    }
}
