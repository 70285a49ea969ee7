//! The ingress as a hostile client and a careless vendor would try it: two users' identical
//! uploads are two records, concurrent copies of one delivery are one, JSON the README refuses
//! is refused, unsigned requests are refused before their body is read, a slow client holds only
//! its share of the in-flight slots, idle and slowloris connections are closed and cost bounded
//! memory, and the namespace reaches the raw topic.

use std::time::{Duration, Instant};

use biometric_bridge::config::DatabaseArgs;
use biometric_bridge::ingress::tokens;
use tokio::io::AsyncWriteExt;

use super::helpers;
use super::ingress_harness::{HeldRequest, Webhook, assert_accepted, assert_error, assert_topic_holds, records, start};

async fn pool() -> sqlx::PgPool {
    let database = DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 2 };
    database.migrated_pool().await.expect("PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_uploading_the_same_body_are_two_records() {
    let (topic, ingress) = start(2, &[]).await;
    let pool = pool().await;
    let (first, second) = (helpers::unique("sister"), helpers::unique("brother"));
    let body = helpers::fixture("apple_healthkit/hae_metrics.json");
    for user in [&first, &second] {
        let token = tokens::issue(&pool, user).await.unwrap();
        // Byte-identical bodies: the same sha256 delivery id for both users.
        assert_accepted(Webhook::apple_health(&body, token.token.expose()).send(&ingress).await, 202, "accepted").await;
    }
    let found = assert_topic_holds(&topic, &[&body, &body]).await;
    let mut keys: Vec<String> = found.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect();
    keys.sort();
    let mut wanted = vec![format!("apple-health:{first}"), format!("apple-health:{second}")];
    wanted.sort();
    assert_eq!(keys, wanted);
    // The same user's re-upload is still a duplicate.
    let token = tokens::issue(&pool, &first).await.unwrap();
    assert_accepted(Webhook::apple_health(&body, token.token.expose()).send(&ingress).await, 200, "duplicate").await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_delivery_are_written_once() {
    let (topic, ingress) = start(1, &[]).await;
    for round in 0..3 {
        let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique(&format!("copies-{round}")));
        // Twenty copies at once, as a vendor retrying a timed-out delivery (or sending two copies)
        // can: they are all in flight while the first write waits for the broker.
        let sends = (0..20).map(|_| {
            let (webhook, client, addr) = (webhook.clone(), ingress.client.clone(), ingress.addr);
            tokio::spawn(async move { webhook.send_to(&client, addr).await.status().as_u16() })
        });
        let mut statuses: Vec<u16> = futures::future::join_all(sends).await.into_iter().map(Result::unwrap).collect();
        statuses.sort();
        assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "round {round}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 202 || *s == 200), "round {round}: {statuses:?}");
    }
    let found = records(&topic, 4, Duration::from_secs(6)).await;
    assert_eq!(found.len(), 3, "one record per delivery, whatever the copies");
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_the_readme_refuses_is_refused_with_400() {
    let (topic, ingress) = start(1, &[]).await;
    let invalid_utf8 = b"{\"type\":\"sleep\",\"user\":{\"user_id\":\"\xff\xfe\"}}".to_vec();
    let deep = format!("{{\"type\":\"sleep\",\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    for body in [invalid_utf8, deep] {
        assert_error(Webhook::terra(&body, &helpers::unique("bad-json")).send(&ingress).await, 400, "malformed_json").await;
    }
    let good = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("good"));
    assert_accepted(good.send(&ingress).await, 202, "accepted").await;
    assert_topic_holds(&topic, &[&good.body]).await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_stale_requests_are_refused_before_their_body_is_read() {
    let (_topic, ingress) = start(1, &[]).await;
    let body = helpers::fixture("terra/sleep.json");
    let unsigned = Webhook::terra(&body, "d").without_header("terra-signature");
    // Past Terra's 26 h retry horizon.
    let stale = Webhook::terra_signed_with(&body, "d", helpers::TERRA_SECRET, helpers::now_secs() - 30 * 3_600);
    let unsigned_oura = Webhook::oura(b"{}").without_header("x-oura-timestamp");
    for (webhook, code) in [(unsigned, "missing_signature"), (stale, "stale_signature"), (unsigned_oura, "missing_signature")] {
        // Only the head is sent: the answer must not wait for a body that never comes.
        let started = Instant::now();
        let (status, answer) = HeldRequest::start(ingress.addr, &webhook, 0).await.response().await;
        assert_eq!(status, 401, "{answer}");
        assert!(answer.contains(code), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(1), "answered without the body: {:?}", started.elapsed());
    }
    ingress.stop().await;
}

/// A client address other than the test's own 127.0.0.1, for requests that must not share the
/// hostile client's slots.
fn other_client() -> reqwest::Client {
    reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_client_holds_only_its_share_and_only_briefly() {
    let (_topic, ingress) = start(1, &[]).await;
    let body = helpers::fixture("terra/sleep.json");
    // 110 requests with forged but fresh signature headers, their bodies never sent.
    let forged = Webhook::terra(&body, "forged").header("terra-signature", &format!("t={},v1=00", helpers::now_secs()));
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..110 {
        held.push(HeldRequest::start(ingress.addr, &forged, 0).await);
    }
    // Meanwhile another client's signed webhooks are served.
    let client = other_client();
    let mut served = 0;
    for _ in 0..20 {
        let webhook = Webhook::terra(&body, &helpers::unique("legit"));
        if webhook.send_to(&client, ingress.addr).await.status() == 202 {
            served += 1;
        }
    }
    assert_eq!(served, 20, "the slow client's share leaves room for everyone else");
    // The slow requests are cut by the minimum body rate after about a second.
    let mut answers = Vec::new();
    for request in held {
        answers.push(request.response().await);
    }
    let held_for = started.elapsed();
    let too_slow = answers.iter().filter(|(status, body)| *status == 408 && body.contains("body_too_slow")).count();
    let overloaded = answers.iter().filter(|(status, body)| *status == 503 && body.contains("overloaded")).count();
    assert_eq!(too_slow, 50, "the client's share, default half of 100 slots: {answers:?}");
    assert_eq!(overloaded, 60);
    assert!(held_for < Duration::from_secs(4), "slots held {held_for:?}");
    eprintln!("slow client: {too_slow} slots held for {held_for:?}, {overloaded} refused at once; {served}/20 other webhooks served");
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_a_connection_is_answered_503_and_closed() {
    let (_topic, ingress) = start(1, &["--max-connections", "20"]).await;
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(tokio::net::TcpStream::connect(ingress.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, answer) = HeldRequest::start(ingress.addr, &Webhook::terra(b"{}", "x"), 0).await.response().await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(open);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("after-cap"));
    assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    ingress.stop().await;
}

/// Resident memory of a process, from /proc, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 =
        status.lines().find_map(|line| line.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kib / 1024.0
}

/// The ingress's own count of open connections, from its `/metrics`.
async fn open_connections(addr: std::net::SocketAddr) -> i64 {
    let text = other_client().get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|line| line.starts_with("biometric_bridge_http_connections_open ")).unwrap();
    // The scrape's own connection is open too.
    line.rsplit(' ').next().unwrap().parse::<i64>().unwrap() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_cost_bounded_memory_and_are_closed() {
    let topic = super::ingress_harness::raw_topic(1).await;
    let ingress = super::ingress_process::IngressProcess::spawn(
        &topic,
        &[("TERRA_SIGNING_SECRET", helpers::TERRA_SECRET)],
        &["--header-read-timeout-ms", "2000", "--idle-timeout-ms", "3000"],
    );
    let addr = ingress.addr;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_mib(ingress.pid());

    // 1 000 idle connections, 20 slowloris ones trickling headers, 200 with a 380 KB header.
    let mut idle = Vec::new();
    for _ in 0..1_000 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut slowloris = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"POST /webhooks/terra HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        slowloris.push(stream);
    }
    let mut huge = Vec::new();
    let header = format!("POST /webhooks/terra HTTP/1.1\r\nhost: x\r\nx-pad: {}", "a".repeat(380_000));
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(header.as_bytes()).await;
        huge.push(stream);
    }
    for stream in &mut slowloris {
        let _ = stream.write_all(b"x-more: 1\r\n").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_mib(ingress.pid());
    let open_during = open_connections(addr).await;
    eprintln!("ingress RSS {before:.1} MiB before, {during:.1} MiB with 1 220 hostile connections ({open_during} open)");
    assert!(during < before + 40.0, "RSS grew from {before:.1} to {during:.1} MiB");

    // Past the timeouts (header 2 s, idle 3 s) every one of them is closed by the ingress.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut open = open_connections(addr).await;
    while open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        open = open_connections(addr).await;
    }
    assert_eq!(open, 0, "connections still open after the timeouts");
    let closed_by_peer = idle.iter().filter(|stream| {
        let mut byte = [0u8; 1];
        matches!(stream.try_read(&mut byte), Ok(0))
    });
    assert_eq!(closed_by_peer.count(), 1_000, "every idle connection was closed by the ingress");
    drop((idle, slowloris, huge));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_suffixes_the_raw_topic() {
    let namespace = helpers::unique("ns");
    let topology =
        biometric_bridge::topology::Topology::parse_namespaced(biometric_bridge::topology::DEFAULT_TOPOLOGY, "t", Some(&namespace))
            .unwrap();
    let raw = topology.ingress_topic().to_owned();
    assert_eq!(raw, format!("raw-webhooks-{namespace}"));
    let spec = topology.topic(&raw).unwrap().clone();
    biometric_bridge::kafka::admin::ensure_topics(&helpers::kafka_args(), &[spec]).await.unwrap();
    let ingress = super::ingress_process::IngressProcess::spawn_with_env(
        &[("TERRA_SIGNING_SECRET", helpers::TERRA_SECRET), ("TOPOLOGY_NAMESPACE", &namespace)],
        &[],
    );
    let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("namespaced"));
    assert_accepted(webhook.send_to(&reqwest::Client::new(), ingress.addr).await, 202, "accepted").await;
    assert_topic_holds(&raw, &[&webhook.body]).await;
}
