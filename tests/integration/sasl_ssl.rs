//! Kafka over SASL_SSL, as every managed cluster requires: the stack's TLS listener with a
//! SCRAM-SHA-512 user (`scripts/stack`), the ingress and the processor as real binaries, and a
//! wrong password that ends the start with one clear line instead of a hang.

use std::process::Command;
use std::time::Duration;

use biometric_bridge::event::Vendor;

use super::helpers::{self, TestTopology};
use super::ingress_process::IngressProcess;
use super::ingress_support::test_secrets;

/// The stack's SASL_SSL listener, CA and user, from `scripts/stack env`.
fn sasl_env(password_file: &str) -> Vec<(&'static str, String)> {
    let stack = helpers::stack_var;
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", stack("STACK_KAFKA_SASL_BOOTSTRAP_SERVERS")),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
        ("KAFKA_SASL_USERNAME", stack("STACK_KAFKA_SASL_USERNAME")),
        (
            "KAFKA_SASL_PASSWORD_FILE",
            if password_file.is_empty() { stack("STACK_KAFKA_SASL_PASSWORD_FILE") } else { password_file.to_owned() },
        ),
        ("KAFKA_SSL_CA_LOCATION", stack("STACK_KAFKA_CA_LOCATION")),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(name, value)| (*name, value.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_flow_from_ingress_through_the_processor_over_sasl_ssl() {
    let topology = TestTopology::create(2).await;
    let raw_topic = topology.topic("raw-webhooks");
    let mut env = sasl_env("");
    env.push(("TERRA_SIGNING_SECRET", test_secrets().terra.unwrap().expose().to_owned()));
    let ingress = IngressProcess::spawn(&raw_topic, &refs(&env), &[]);
    let processor = helpers::spawn_processor(&topology, "sasl", &refs(&sasl_env("")));

    let body = helpers::fixture("terra/sleep_low_hrv.json");
    let signature = helpers::terra_signature(helpers::TERRA_SECRET, helpers::now_secs(), &body);
    let response = reqwest::Client::new()
        .post(format!("http://{}/webhooks/terra", ingress.addr))
        .header("content-type", "application/json")
        .header("terra-signature", signature)
        .header("x-terra-trace-id", helpers::unique("delivery-sasl"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);

    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 1, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 1, "processor log:\n{}", processor.log_tail());
    assert_eq!(events[0].event.vendor, Vendor::Terra);
    assert_eq!(events[0].event.user_id, "athlete-0042");
    let log = std::fs::read_to_string(&processor.log).unwrap();
    assert!(log.contains("Kafka reachable.") && log.contains("9094"), "the processor went through the SASL_SSL listener:\n{log}");
}

/// Runs `args` with a wrong SASL password and returns its exit status and stderr: it must exit
/// by itself, quickly.
fn run_with_wrong_password(args: &[&str]) -> (std::process::ExitStatus, String) {
    let wrong = std::env::temp_dir().join(helpers::unique("wrong-password"));
    let wrong_password = "not-the-password-3f1c";
    std::fs::write(&wrong, wrong_password).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", helpers::database_url())
        .env("SCHEMA_REGISTRY_URL", helpers::registry_url())
        .env("TERRA_SIGNING_SECRET", helpers::TERRA_SECRET)
        .env("DATA_ENCRYPTION_KEY", helpers::stack_data_key())
        .envs(sasl_env(wrong.to_str().unwrap()));
    let (status, stderr) = helpers::run_until_exit(&mut command, Duration::from_secs(30));
    assert!(!stderr.contains(wrong_password), "the password must never be logged:\n{stderr}");
    (status, stderr)
}

#[test]
fn a_wrong_sasl_password_is_a_clear_startup_error_not_a_hang() {
    helpers::require_stack();
    for command in [&["process", "--metrics-addr", "127.0.0.1:0"][..], &["ingress", "--http-addr", "127.0.0.1:0"][..]] {
        let (status, stderr) = run_with_wrong_password(command);
        assert!(!status.success(), "{command:?} must exit non-zero:\n{stderr}");
        let last = helpers::last_error_line(&stderr);
        assert!(last.contains("SASL authentication") && last.contains("KAFKA_SASL_PASSWORD"), "{command:?}: {last}");
    }
}
