//! Stopping and starting stack components from a test, and waiting for the ingress to notice.

use std::process::Command;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use crate::ingress_support::TestIngress;

/// Runs `scripts/stack <action> <component>` and fails the test if it fails.
fn run(action: &str, component: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack");
    let output = Command::new(script).args([action, component]).output().expect("run scripts/stack");
    assert!(
        output.status.success(),
        "scripts/stack {action} {component} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One outage at a time in this binary: the tests share the stack. An async lock, held for the
/// whole test (across awaits), and shared by the tests' separate runtimes.
pub async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

/// A stopped component, started again by [`Outage::end`] or, whatever happens, on drop.
pub struct Outage {
    component: &'static str,
    ended: bool,
}

impl Outage {
    pub fn begin(component: &'static str) -> Outage {
        run("down", component);
        Outage { component, ended: false }
    }

    /// Starts the component again and waits until it answers (`scripts/stack up` waits).
    pub fn end(mut self) {
        self.ended = true;
        run("up", self.component);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.ended {
            // Not `run`: a panic while unwinding would abort the process.
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack");
            let status = Command::new(script).args(["up", self.component]).status();
            eprintln!("outage guard: scripts/stack up {} -> {status:?}", self.component);
        }
    }
}

/// Polls `/ready` until it answers `status` (200 or 503); returns the last JSON body.
pub async fn wait_ready(ingress: &TestIngress, status: u16, within: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let response = ingress.client.get(ingress.url("/ready")).send().await.expect("the ingress answers");
        let actual = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        if actual == status {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "/ready still {actual} after {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of an unlabelled counter or gauge in the ingress's `/metrics`.
pub async fn metric(ingress: &TestIngress, name: &str) -> f64 {
    let text = ingress.client.get(ingress.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no {name}"))
}
