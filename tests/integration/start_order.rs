//! Misconfiguration fails fast: one clear line and a non-zero exit, where waiting would only
//! look like an outage (a registry path that answers 404, a URL without a scheme, a
//! `KAFKA_OPTIONS` override of a key exactly-once depends on).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::helpers;

/// Runs the processor with `env` over the stack's defaults; returns its last `error:` line,
/// failing the test if it does not exit non-zero within 20 s.
fn processor_error(env: &[(&str, &str)]) -> String {
    helpers::require_stack();
    let stderr_path = std::env::temp_dir().join(helpers::unique("start-order-stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"))
        .args(["process", "--metrics-addr", "127.0.0.1:0"])
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("SCHEMA_REGISTRY_URL", helpers::registry_url())
        .env("DATABASE_URL", helpers::database_url())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{env:?}: still running after 20 s:\n{}", std::fs::read_to_string(&stderr_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!status.success(), "{env:?} must exit non-zero:\n{stderr}");
    stderr.lines().rev().find(|line| line.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{stderr}")).to_owned()
}

#[test]
fn misconfigurations_exit_at_once_with_one_clear_line() {
    let wrong_path = format!("{}/not-the-api", helpers::registry_url());
    let error = processor_error(&[("SCHEMA_REGISTRY_URL", &wrong_path)]);
    assert!(error.contains("misconfigured") && error.contains("HTTP 404"), "{error}");

    let error = processor_error(&[("SCHEMA_REGISTRY_URL", "127.0.0.1:8081/apis/ccompat/v7")]);
    assert!(error.contains("SCHEMA_REGISTRY_URL must be an http:// or https:// URL"), "{error}");

    let error = processor_error(&[("KAFKA_OPTIONS", "linger.ms=5;transactional.id=mine")]);
    assert!(error.contains("transactional.id cannot be set in KAFKA_OPTIONS"), "{error}");
}
