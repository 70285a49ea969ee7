//! An in-process ingress bound to port 0, for the tests.

use std::net::SocketAddr;

use biometric_bridge::at_rest::Kek;
use biometric_bridge::connections::callback::OAuthSecrets;
use biometric_bridge::ingress::auth::VendorSecrets;
use biometric_bridge::ingress::{Ingress, IngressArgs};
use biometric_bridge::secret::Secret;
use biometric_bridge::shutdown::CancellationToken;
use clap::Parser;

use super::helpers;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: IngressArgs,
}

pub struct TestIngress {
    pub addr: SocketAddr,
    /// Where `/metrics` is: `addr` unless `--metrics-addr` was given.
    pub metrics_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
}

impl TestIngress {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

pub fn test_secrets() -> VendorSecrets {
    VendorSecrets {
        terra: Some(Secret::new(helpers::TERRA_SECRET)),
        oura: Some(Secret::new("oura_test_client_secret_DO_NOT_USE")),
        whoop: Some(Secret::new("whoop_test_client_secret_DO_NOT_USE")),
        oura_verification_token: Some(Secret::new("oura-verification-token-for-tests")),
    }
}

/// Builds (but does not start) an ingress writing to `raw_topic`: its start-up checks' verdict.
pub async fn build_ingress(raw_topic: &str, extra: &[&str]) -> anyhow::Result<Ingress> {
    helpers::require_stack();
    let mut argv = vec!["ingress", "--http-addr", "127.0.0.1:0", "--raw-topic", raw_topic, "--insecure-plaintext-at-rest"];
    argv.extend_from_slice(extra);
    Ingress::build(&Wrapper::parse_from(argv).args, test_secrets()).await
}

/// Starts an ingress writing to `raw_topic`; `extra` are more command-line flags.
pub async fn spawn_ingress(raw_topic: &str, secrets: VendorSecrets, extra: &[&str]) -> TestIngress {
    helpers::require_stack();
    // Most tests read the raw topic's bytes: plaintext, unless a test seals (`spawn_sealing_ingress`).
    let mut argv = vec!["ingress", "--http-addr", "127.0.0.1:0", "--raw-topic", raw_topic, "--insecure-plaintext-at-rest"];
    argv.extend_from_slice(extra);
    let args = Wrapper::parse_from(argv).args;
    let ingress = Ingress::build(&args, secrets).await.expect("ingress builds");
    start(ingress)
}

/// [`spawn_ingress`] sealing every body under `data_encryption_key` (64 hex characters).
pub async fn spawn_sealing_ingress(raw_topic: &str, secrets: VendorSecrets, data_encryption_key: &str, extra: &[&str]) -> TestIngress {
    start(build_sealing_ingress(raw_topic, secrets, data_encryption_key, extra).await.expect("ingress builds"))
}

/// A sealing ingress as built at start, or why it refused to start.
pub async fn build_sealing_ingress(
    raw_topic: &str,
    secrets: VendorSecrets,
    data_encryption_key: &str,
    extra: &[&str],
) -> anyhow::Result<Ingress> {
    helpers::require_stack();
    let mut argv = vec!["ingress", "--http-addr", "127.0.0.1:0", "--raw-topic", raw_topic];
    argv.extend_from_slice(extra);
    let args = Wrapper::parse_from(argv).args;
    let kek = Kek::from_secrets(&Secret::new(data_encryption_key), None).unwrap();
    Ingress::build_with(&args, secrets, OAuthSecrets::default(), Some(kek)).await
}

fn start(ingress: Ingress) -> TestIngress {
    let (addr, metrics_addr) = (ingress.local_addr(), ingress.metrics_addr());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(ingress.run_until_stopped(shutdown.clone()));
    TestIngress { addr, metrics_addr, shutdown, handle, client: reqwest::Client::new() }
}
