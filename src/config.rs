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
    /// e.g. `socket.keepalive.enable=true`. Env: semicolon-separated list. Keys exactly-once
    /// depends on, and secrets, are refused (use the settings below).
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_delimiter = ';', value_parser = parse_kafka_option, hide_env_values = true)]
    pub kafka_options: Vec<(String, String)>,

    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

/// TLS and SASL towards Kafka (managed clusters require both). The SASL password and a TLS key's
/// password come only from the environment or a file: `KAFKA_SASL_PASSWORD` (or
/// `KAFKA_SASL_PASSWORD_FILE`), `KAFKA_SSL_KEY_PASSWORD` (or `_FILE`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSecurityArgs {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`; unset: `sasl_ssl` when a SASL
    /// mechanism is set, else plaintext.
    #[arg(long = "kafka-security-protocol", env = "KAFKA_SECURITY_PROTOCOL", value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"], ignore_case = true)]
    pub security_protocol: Option<String>,

    /// PEM file of the CA(s) that signed the brokers' certificates (default: the system's).
    #[arg(long = "kafka-ssl-ca-location", env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,

    /// PEM client certificate, for clusters that authenticate clients by mutual TLS.
    #[arg(long = "kafka-ssl-certificate-location", env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<String>,

    /// PEM private key of the client certificate.
    #[arg(long = "kafka-ssl-key-location", env = "KAFKA_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<String>,

    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[arg(long = "kafka-sasl-mechanism", env = "KAFKA_SASL_MECHANISM", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], ignore_case = true)]
    pub sasl_mechanism: Option<String>,

    /// SASL user name (its password: KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE).
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
}

/// The librdkafka properties a user may not override through `KAFKA_OPTIONS`: those exactly-once
/// depends on (the process computes them; an override would be silently applied while the logs
/// still show the computed value), and secrets (which belong in `_FILE` variables, not in a list
/// that is echoed by `ps`, shells and orchestrators).
const PROTECTED_OPTIONS: [(&str, &str); 10] = [
    ("transactional.id", "it is <application_id>-<PROCESSOR_INSTANCE_ID>"),
    ("group.id", "it is the topology's application id"),
    ("isolation.level", "exactly-once reads read_committed"),
    ("enable.auto.commit", "offsets are committed inside the transactions"),
    ("enable.idempotence", "the producers are idempotent"),
    ("sasl.password", "use KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE"),
    ("sasl.username", "use KAFKA_SASL_USERNAME"),
    ("ssl.key.password", "use KAFKA_SSL_KEY_PASSWORD or KAFKA_SSL_KEY_PASSWORD_FILE"),
    ("ssl.keystore.password", "use a PEM key with KAFKA_SSL_KEY_LOCATION"),
    ("sasl.oauthbearer.client.secret", "OAUTHBEARER is not supported"),
];

impl KafkaArgs {
    /// Settings for a local, unauthenticated broker (tests, benchmarks).
    pub fn plaintext(bootstrap_servers: impl Into<String>) -> KafkaArgs {
        KafkaArgs { bootstrap_servers: bootstrap_servers.into(), kafka_options: Vec::new(), security: KafkaSecurityArgs::default() }
    }

    /// A client config with the bootstrap servers, the security settings and the user's
    /// overrides. Callers pass their role-specific properties, which user overrides follow. Fails
    /// when a secret cannot be read or the security settings do not fit together.
    pub fn config_with(&self, properties: &[(&str, &str)]) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in properties {
            config.set(*key, *value);
        }
        self.security.apply(&mut config, crate::secret::load_secret)?;
        // An empty key is a blank entry (`KAFKA_OPTIONS=` or a trailing `;`): nothing to set.
        for (key, value) in self.kafka_options.iter().filter(|(key, _)| !key.is_empty()) {
            config.set(key, value);
        }
        Ok(config)
    }
}

impl KafkaSecurityArgs {
    /// Sets the TLS / SASL properties on `config`, reading secrets with `secret`.
    fn apply(
        &self,
        config: &mut ClientConfig,
        secret: impl Fn(&str) -> Result<Option<crate::secret::Secret>, crate::secret::SecretError>,
    ) -> anyhow::Result<()> {
        let protocol = match (&self.security_protocol, &self.sasl_mechanism) {
            (Some(protocol), _) => protocol.to_ascii_lowercase(),
            (None, Some(_)) => "sasl_ssl".to_owned(),
            (None, None) => "plaintext".to_owned(),
        };
        let sasl = protocol.starts_with("sasl_");
        let tls = protocol == "ssl" || protocol == "sasl_ssl";
        config.set("security.protocol", &protocol);
        if tls {
            if let Some(ca) = &self.ssl_ca_location {
                config.set("ssl.ca.location", ca);
            }
            match (&self.ssl_certificate_location, &self.ssl_key_location) {
                (Some(certificate), Some(key)) => {
                    config.set("ssl.certificate.location", certificate).set("ssl.key.location", key);
                    if let Some(password) = secret("KAFKA_SSL_KEY_PASSWORD")? {
                        config.set("ssl.key.password", password.expose());
                    }
                }
                (None, None) => {}
                _ => anyhow::bail!("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together"),
            }
        } else if self.ssl_ca_location.is_some() || self.ssl_certificate_location.is_some() {
            anyhow::bail!("KAFKA_SSL_* settings need KAFKA_SECURITY_PROTOCOL ssl or sasl_ssl (it is {protocol})");
        }
        if sasl {
            let mechanism = self.sasl_mechanism.as_deref().map(str::to_ascii_uppercase).unwrap_or_else(|| "PLAIN".to_owned());
            let username = self.sasl_username.as_deref().filter(|u| !u.is_empty());
            let username = username.ok_or_else(|| anyhow::anyhow!("KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_USERNAME"))?;
            let password = secret("KAFKA_SASL_PASSWORD")?.ok_or_else(|| {
                anyhow::anyhow!("KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)")
            })?;
            config.set("sasl.mechanism", &mechanism).set("sasl.username", username).set("sasl.password", password.expose());
        } else if self.sasl_mechanism.is_some() || self.sasl_username.is_some() {
            anyhow::bail!("KAFKA_SASL_* settings need KAFKA_SECURITY_PROTOCOL sasl_ssl or sasl_plaintext (it is {protocol})");
        }
        Ok(())
    }
}

fn parse_kafka_option(raw: &str) -> Result<(String, String), String> {
    // A deployment that sets the variable empty (`KAFKA_OPTIONS=`, a compose default) or ends the
    // list with `;` means no option there, not a malformed one.
    if raw.trim().is_empty() {
        return Ok((String::new(), String::new()));
    }
    let (key, value) = parse_key_value(raw)?;
    if let Some((_, why)) = PROTECTED_OPTIONS.iter().find(|(protected, _)| protected.eq_ignore_ascii_case(&key)) {
        return Err(format!("{key} cannot be set in KAFKA_OPTIONS: {why}"));
    }
    Ok((key, value))
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
/// Basic auth (Confluent Cloud's API key and secret) comes only from the environment or a file:
/// `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO` (or `_FILE`), `<user>:<password>`, the Confluent
/// clients' own convention.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Base URL of the Confluent-compatible schema registry API (http:// or https://).
    #[arg(long = "schema-registry-url", env = "SCHEMA_REGISTRY_URL", default_value = "http://127.0.0.1:8081/apis/ccompat/v7")]
    pub registry_url: String,

    /// PEM file of extra CA(s) trusted for an https:// registry, beside the system's.
    #[arg(long = "schema-registry-ca-location", env = "SCHEMA_REGISTRY_CA_LOCATION")]
    pub registry_ca_location: Option<String>,
}

impl RegistryArgs {
    /// Settings for a local registry without TLS or auth (tests, benchmarks).
    pub fn plain(registry_url: impl Into<String>) -> RegistryArgs {
        RegistryArgs { registry_url: registry_url.into(), registry_ca_location: None }
    }

    /// Client settings. Fails, with a line naming the setting, on a URL without an http(s)
    /// scheme, an unreadable CA file or a malformed user info: those are misconfigurations that
    /// no amount of waiting fixes.
    pub fn settings(&self) -> anyhow::Result<schema_registry_converter::async_impl::schema_registry::SrSettings> {
        self.settings_with(crate::secret::load_secret)
    }

    fn settings_with(
        &self,
        secret: impl Fn(&str) -> Result<Option<crate::secret::Secret>, crate::secret::SecretError>,
    ) -> anyhow::Result<schema_registry_converter::async_impl::schema_registry::SrSettings> {
        let url = reqwest::Url::parse(&self.registry_url).ok().filter(|url| matches!(url.scheme(), "http" | "https"));
        if url.is_none() {
            anyhow::bail!(
                "SCHEMA_REGISTRY_URL must be an http:// or https:// URL, e.g. http://registry:8081/apis/ccompat/v7 (got one without a scheme or host: {})",
                crate::startup::host_of(&self.registry_url)
            );
        }
        let client = self.client_builder()?;
        let mut builder = schema_registry_converter::async_impl::schema_registry::SrSettings::new_builder(self.registry_url.clone());
        builder.set_timeout(std::time::Duration::from_secs(10));
        if let Some((user, password)) = Self::basic_auth_with(&secret)? {
            builder.set_basic_authorization(&user, Some(&password));
        }
        // The crate's error for a bad builder names no secret (it is about the client).
        builder.build_with(client).map_err(|error| anyhow::anyhow!("schema registry settings: {error}"))
    }

    /// An HTTP client for the registry's own API (what the converter crate does not cover, such
    /// as a subject's compatibility), with the CA and the basic auth of [`RegistryArgs::settings`].
    /// Built once at start: a bad CA file or user info fails there, not on every retry.
    pub fn http(&self) -> anyhow::Result<RegistryHttp> {
        let client = self.client_builder()?.timeout(std::time::Duration::from_secs(10)).build()?;
        let auth = Self::basic_auth_with(crate::secret::load_secret)?;
        Ok(RegistryHttp { client, auth, base_url: self.registry_url.trim_end_matches('/').to_owned() })
    }

    fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        // The registry client is reqwest on rustls: it needs the process's crypto provider.
        crate::connections::http::install_tls_provider();
        let mut client = reqwest::Client::builder();
        if let Some(path) = &self.registry_ca_location {
            let pem = std::fs::read(path).map_err(|error| anyhow::anyhow!("SCHEMA_REGISTRY_CA_LOCATION {path}: {error}"))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|error| anyhow::anyhow!("SCHEMA_REGISTRY_CA_LOCATION {path}: not a PEM certificate bundle ({error})"))?;
            if certificates.is_empty() {
                anyhow::bail!("SCHEMA_REGISTRY_CA_LOCATION {path}: no certificate in the file");
            }
            client = client.tls_certs_merge(certificates);
        }
        Ok(client)
    }

    fn basic_auth_with(
        secret: impl Fn(&str) -> Result<Option<crate::secret::Secret>, crate::secret::SecretError>,
    ) -> anyhow::Result<Option<(String, String)>> {
        let Some(user_info) = secret("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")? else { return Ok(None) };
        let (user, password) = user_info
            .expose()
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must be <user>:<password>"))?;
        Ok(Some((user.to_owned(), password.to_owned())))
    }
}

/// The registry's HTTP API beside the converter crate's client: base URL, client, basic auth.
pub struct RegistryHttp {
    pub client: reqwest::Client,
    pub auth: Option<(String, String)>,
    pub base_url: String,
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

    /// Connects and applies the embedded migrations (`migrations/`). An unreachable server is a
    /// [`DatabaseUnavailable`] error, so callers can tell an absence from a failed migration.
    pub async fn migrated_pool(&self) -> anyhow::Result<sqlx::PgPool> {
        let pool = self.pool()?;
        self.migrate(&pool).await?;
        Ok(pool)
    }

    /// Applies the embedded migrations on `pool`.
    pub async fn migrate(&self, pool: &sqlx::PgPool) -> anyhow::Result<()> {
        if let Err(error) = pool.acquire().await {
            let reason = redact_url_error(&error.to_string(), &self.database_url);
            return Err(DatabaseUnavailable { address: crate::startup::host_of(&self.database_url), reason }.into());
        }
        crate::db::MIGRATOR.run(pool).await.map_err(|error| {
            anyhow::anyhow!("PostgreSQL migrations failed: {}", redact_url_error(&error.to_string(), &self.database_url))
        })?;
        Ok(())
    }
}

/// PostgreSQL did not answer (down, or not up yet): a wait, not a misconfiguration.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL at {address} does not answer: {reason}")]
pub struct DatabaseUnavailable {
    pub address: String,
    pub reason: String,
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
    use crate::secret::Secret;

    #[test]
    fn key_value_options_parse() {
        assert_eq!(parse_key_value("linger.ms = 5").unwrap(), ("linger.ms".to_owned(), "5".to_owned()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn user_options_override_built_in_ones() {
        let args = KafkaArgs { kafka_options: vec![("linger.ms".into(), "50".into())], ..KafkaArgs::plaintext("b:9092") };
        let config = args.config_with(&[("linger.ms", "5"), ("acks", "all")]).unwrap();
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn options_exactly_once_depends_on_and_secrets_are_refused() {
        for raw in
            ["transactional.id=x", "GROUP.ID=y", "isolation.level=read_uncommitted", "enable.auto.commit=true", "sasl.password=hunter2"]
        {
            let error = parse_kafka_option(raw).unwrap_err();
            assert!(error.contains("cannot be set in KAFKA_OPTIONS"), "{error}");
            assert!(!error.contains("hunter2"), "never echo the value: {error}");
        }
        assert_eq!(parse_kafka_option("socket.keepalive.enable=true").unwrap().0, "socket.keepalive.enable");
    }

    #[test]
    fn a_blank_kafka_option_sets_nothing() {
        assert_eq!(parse_kafka_option("  ").unwrap(), (String::new(), String::new()));
        let args = KafkaArgs { kafka_options: vec![(String::new(), String::new())], ..KafkaArgs::plaintext("b:9092") };
        let config = args.config_with(&[]).unwrap();
        assert!(!config.config_map().contains_key(""), "no empty property: {:?}", config.config_map());
        assert!(parse_kafka_option("=x").is_err(), "a value without a key is still refused");
    }

    fn secrets(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Result<Option<Secret>, crate::secret::SecretError> {
        move |name| Ok(pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| Secret::new(*v)))
    }

    #[test]
    fn sasl_ssl_takes_the_password_from_the_environment() {
        let security = KafkaSecurityArgs {
            sasl_mechanism: Some("scram-sha-512".into()),
            sasl_username: Some("bridge".into()),
            ssl_ca_location: Some("/ca.pem".into()),
            ..KafkaSecurityArgs::default()
        };
        let mut config = ClientConfig::new();
        security.apply(&mut config, secrets(&[("KAFKA_SASL_PASSWORD", "pw")])).unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"), "a mechanism implies SASL over TLS");
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!((config.get("sasl.username"), config.get("sasl.password")), (Some("bridge"), Some("pw")));
        assert_eq!(config.get("ssl.ca.location"), Some("/ca.pem"));
    }

    #[test]
    fn incomplete_security_settings_are_errors_that_name_the_missing_one() {
        let no_password = KafkaSecurityArgs { sasl_mechanism: Some("PLAIN".into()), sasl_username: Some("u".into()), ..Default::default() };
        let error = no_password.apply(&mut ClientConfig::new(), secrets(&[])).unwrap_err().to_string();
        assert!(error.contains("KAFKA_SASL_PASSWORD"), "{error}");
        let no_user = KafkaSecurityArgs { security_protocol: Some("sasl_ssl".into()), ..Default::default() };
        assert!(no_user.apply(&mut ClientConfig::new(), secrets(&[])).unwrap_err().to_string().contains("KAFKA_SASL_USERNAME"));
        let ca_without_tls = KafkaSecurityArgs { ssl_ca_location: Some("/ca.pem".into()), ..Default::default() };
        assert!(ca_without_tls.apply(&mut ClientConfig::new(), secrets(&[])).is_err());
        let mut plain = ClientConfig::new();
        KafkaSecurityArgs::default().apply(&mut plain, secrets(&[])).unwrap();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
    }

    #[test]
    fn registry_misconfigurations_fail_with_the_setting_named() {
        let error = RegistryArgs::plain("registry:8081/apis/ccompat/v7").settings_with(secrets(&[])).unwrap_err().to_string();
        assert!(error.contains("SCHEMA_REGISTRY_URL must be an http:// or https:// URL"), "{error}");
        let bad_ca = RegistryArgs { registry_ca_location: Some("/nonexistent/ca.pem".into()), ..RegistryArgs::plain("https://r:8081") };
        assert!(bad_ca.settings_with(secrets(&[])).unwrap_err().to_string().contains("SCHEMA_REGISTRY_CA_LOCATION"));
        let no_colon = RegistryArgs::plain("https://r:8081").settings_with(secrets(&[("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "keyonly")]));
        let error = no_colon.unwrap_err().to_string();
        assert!(error.contains("<user>:<password>") && !error.contains("keyonly"), "{error}");
    }

    /// The registry sees Confluent-style basic auth built from the user info, on every call.
    #[tokio::test]
    async fn registry_basic_auth_is_sent() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Headers, then the schema body: read until the request's body has arrived.
            while !String::from_utf8_lossy(&request).contains("BiometricEvent") {
                let read = socket.read(&mut buffer).unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let body = r#"{"id":7}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let settings = RegistryArgs::plain(format!("http://{address}"))
            .settings_with(secrets(&[("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "api-key:api-secret")]))
            .unwrap();
        let id = crate::event::avro::register(&settings, "biometric-events-value").await.unwrap();
        assert_eq!(id, 7);
        let request = server.join().unwrap().to_ascii_lowercase();
        // base64("api-key:api-secret")
        assert!(request.contains("authorization: basic yxbplwtletphcgktc2vjcmv0"), "{request}");
    }

    #[test]
    fn urls_are_redacted_from_errors() {
        let url = "postgres://u:pw@h/db";
        assert_eq!(redact_url_error("failed to connect to postgres://u:pw@h/db", url), "failed to connect to <url>");
    }
}
