//! The ingress as the real binary: its startup log (enabled, disabled and insecure vendors),
//! JSON log lines that carry the request span but never a secret, a header value or the
//! payload, and a SIGTERM that stops accepting, finishes the request in flight and flushes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::helpers;
use super::ingress_harness::{CANARY, HeldRequest, Webhook, assert_no_leak, assert_topic_holds, raw_topic};
use super::ingress_support::test_secrets;

/// `biometric-bridge ingress` in a child process with JSON logs, killed when dropped.
pub struct IngressProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub addr: SocketAddr,
}

impl IngressProcess {
    /// Starts the binary writing to `topic` with only the given secrets in its environment
    /// (nothing inherited).
    pub fn spawn(topic: &str, secrets: &[(&str, &str)], extra: &[&str]) -> IngressProcess {
        let args: Vec<&str> = ["--raw-topic", topic].into_iter().chain(extra.iter().copied()).collect();
        Self::spawn_with_env(secrets, &args)
    }

    /// Starts the binary with only `env` in its environment (nothing inherited).
    pub fn spawn_with_env(env: &[(&str, &str)], extra: &[&str]) -> IngressProcess {
        let secrets = env;
        let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
        command
            .args(["ingress", "--http-addr", "127.0.0.1:0"])
            .args(extra)
            .env_clear()
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,biometric_bridge=debug")
            .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
            .env("DATABASE_URL", helpers::database_url())
            .env("REDIS_URL", helpers::redis_url())
            .env("INSECURE_PLAINTEXT_AT_REST", "true")
            .envs(secrets.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the ingress binary");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|line| sink.lock().unwrap().push(line)));

        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = lines.lock().unwrap().iter().find_map(|line| {
                let json: serde_json::Value = serde_json::from_str(line).ok()?;
                (json["message"] == "Ingress listening.").then(|| json["addr"].as_str().unwrap().parse().unwrap())
            });
            if let Some(addr) = found {
                break addr;
            }
            assert!(child.try_wait().unwrap().is_none(), "the ingress exited:\n{}", lines.lock().unwrap().join("\n"));
            assert!(Instant::now() < deadline, "the ingress did not start:\n{}", lines.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        };
        IngressProcess { child, lines, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Log lines parsed as JSON; every line must be JSON under `LOG_FORMAT=json`.
    fn json_log(&self) -> Vec<serde_json::Value> {
        self.log().iter().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"))).collect()
    }

    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the ingress did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for IngressProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn all_secrets() -> Vec<(&'static str, String)> {
    let secrets = test_secrets();
    vec![
        ("TERRA_SIGNING_SECRET", secrets.terra.unwrap().expose().to_owned()),
        ("OURA_CLIENT_SECRET", secrets.oura.unwrap().expose().to_owned()),
        ("WHOOP_CLIENT_SECRET", secrets.whoop.unwrap().expose().to_owned()),
        ("OURA_VERIFICATION_TOKEN", secrets.oura_verification_token.unwrap().expose().to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_the_span_but_no_secret_header_value_or_payload_and_sigterm_drains() {
    let topic = raw_topic(1).await;
    let secrets = all_secrets();
    let env: Vec<(&str, &str)> = secrets.iter().map(|(name, value)| (*name, value.as_str())).collect();
    // (The held request of the SIGTERM check waits on us, not the network: no body rate.)
    let mut ingress = IngressProcess::spawn(&topic, &env, &["--min-body-bytes-per-sec", "0"]);
    let client = reqwest::Client::new();
    let addr = ingress.addr;

    // Accepted and refused requests, each carrying the canary in a header, the body or the URL.
    let canary_body = format!("{{\"type\":\"healthcheck\",\"note\":\"{CANARY}\"}}");
    let accepted = Webhook::terra(canary_body.as_bytes(), &helpers::unique("logged"))
        .header("x-canary", CANARY)
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_eq!(accepted.send_to(&client, addr).await.status(), 202);
    let refused = [
        accepted.clone().with_body(format!("{{\"note\":\"{CANARY}!\"}}").as_bytes()),
        Webhook::terra(format!("{CANARY} not JSON").as_bytes(), &helpers::unique("garbage")),
        Webhook::apple_health(b"{}", &format!("bbt_{CANARY}")),
        accepted.clone().header("content-type", &format!("text/{CANARY}")),
        Webhook { path: format!("/webhooks/{CANARY}"), ..accepted.clone() },
    ];
    for webhook in &refused {
        assert!(webhook.send_to(&client, addr).await.status().is_client_error());
    }
    let handshake = client.get(format!("http://{addr}/webhooks/oura?verification_token={CANARY}&challenge={CANARY}")).send().await.unwrap();
    assert_eq!(handshake.status(), 401);

    // SIGTERM with a request in flight: no new connections, the held one completes, then exit.
    let in_flight = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("drained"));
    let held = HeldRequest::start(addr, &in_flight, 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ingress.sigterm();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = held.finish().await;
    assert_eq!(status, 202, "the in-flight request is finished: {answer}");
    assert!(tokio::task::block_in_place(|| ingress.wait_exit(Duration::from_secs(20))), "clean exit:\n{}", ingress.log().join("\n"));
    assert_topic_holds(&topic, &[&accepted.body, &in_flight.body]).await;

    let log = ingress.json_log();
    let has = |message: &str| log.iter().any(|line| line["message"] == message);
    assert!(has("Received SIGTERM; shutting down."));
    assert!(has("Ingress stopped; producer flushed."));
    let enabled: Vec<&str> =
        log.iter().filter(|line| line["message"] == "Webhook route enabled.").filter_map(|line| line["vendor"].as_str()).collect();
    assert_eq!(enabled, ["terra", "oura", "whoop", "apple-health"]);
    let written = log.iter().find(|line| line["message"] == "Webhook written to Kafka.").expect("a line per written webhook");
    assert_eq!(written["span"]["vendor"], "terra", "{written}");
    assert_eq!(written["span"]["trace_id"], "0af7651916cd43dd8448eb211c80319c", "{written}");
    assert_eq!(written["span"]["delivery_id"], accepted.header_value("x-terra-trace-id"), "{written}");
    let refusals = log.iter().filter(|line| line["message"] == "Webhook refused.").count();
    assert_eq!(refusals, refused.len(), "one line per refused webhook");

    // The whole log: no canary (payload, header values, URL), no secret, no signature.
    let text = ingress.log().join("\n");
    assert_no_leak(&text);
    assert!(!text.contains(accepted.header_value("terra-signature")), "a signature header value was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_log_names_disabled_and_insecure_vendors() {
    let topic = raw_topic(1).await;
    let terra_only = [("TERRA_SIGNING_SECRET", helpers::TERRA_SECRET)];
    let ingress = IngressProcess::spawn(&topic, &terra_only, &[]);
    let log = ingress.json_log();
    let disabled = |vendor: &str| {
        log.iter().find(|line| line["message"] == "Webhook route disabled (answers 404)." && line["vendor"] == vendor).cloned()
    };
    let whoop = disabled("whoop").expect("WHOOP is disabled");
    assert_eq!(whoop["level"], "WARN");
    assert!(whoop["reason"].as_str().unwrap().contains("WHOOP_CLIENT_SECRET"), "{whoop}");
    assert!(disabled("oura").unwrap()["reason"].as_str().unwrap().contains("OURA_CLIENT_SECRET"));
    assert!(disabled("terra").is_none());
    let response = Webhook::whoop(b"{}").send_to(&reqwest::Client::new(), ingress.addr).await;
    assert_eq!(response.status(), 404);
    drop(ingress);

    let insecure = IngressProcess::spawn(&topic, &terra_only, &["--insecure-skip-signatures"]);
    let warning = insecure
        .json_log()
        .into_iter()
        .find(|line| line["message"].as_str().unwrap_or_default().contains("--insecure-skip-signatures is set"));
    assert_eq!(warning.expect("a warning at start")["level"], "WARN");
}
