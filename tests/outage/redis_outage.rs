//! Redis is an optimisation: while it is down the ingress keeps accepting (and counts the
//! errors); when it is back, re-deliveries are recognised again.

use std::time::{Duration, Instant};

use crate::helpers;
use crate::ingress_harness::{Webhook, assert_accepted, assert_topic_holds, start};
use crate::stack::{self, Outage};

fn webhook(run: &str, seq: usize) -> Webhook {
    let body = format!("{{\"type\":\"healthcheck\",\"run\":\"{run}\",\"seq\":{seq}}}");
    Webhook::terra(body.as_bytes(), &format!("{run}-{seq}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_accepted_while_redis_is_down_and_dedup_resumes_after() {
    let _serial = stack::serial().await;
    let (topic, ingress) = start(1, &[]).await;
    let run = helpers::unique("redis-outage");

    let before = webhook(&run, 0);
    assert_accepted(before.send(&ingress).await, 202, "accepted").await;
    assert_accepted(before.send(&ingress).await, 200, "duplicate").await;
    let errors_before = stack::metric(&ingress, "biometric_bridge_redis_errors_total").await;

    let outage = Outage::begin("redis");
    let during: Vec<Webhook> = (1..=5).map(|seq| webhook(&run, seq)).collect();
    for webhook in &during {
        let started = Instant::now();
        assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
        assert!(started.elapsed() < Duration::from_millis(500), "Redis down must not slow webhooks: {:?}", started.elapsed());
    }
    // Without Redis a re-delivery cannot be recognised: it is written again (the processor
    // de-duplicates), never refused.
    assert_accepted(before.send(&ingress).await, 202, "accepted").await;
    let errors_during = stack::metric(&ingress, "biometric_bridge_redis_errors_total").await;
    assert!(errors_during > errors_before, "redis errors counted: {errors_before} -> {errors_during}");
    outage.end();

    // Back: a new webhook is marked again, so its re-delivery is a duplicate (the reconnection
    // may take a few seconds; until then re-deliveries are written again).
    let after = webhook(&run, 6);
    assert_accepted(after.send(&ingress).await, 202, "accepted").await;
    let mut written_again = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = after.send(&ingress).await;
        if response.status() == 200 {
            assert_accepted(response, 200, "duplicate").await;
            break;
        }
        assert_accepted(response, 202, "accepted").await;
        written_again += 1;
        assert!(Instant::now() < deadline, "de-duplication did not resume after Redis came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut expected: Vec<&[u8]> = vec![&before.body, &before.body];
    expected.extend(during.iter().map(|webhook| webhook.body.as_slice()));
    expected.extend(std::iter::repeat_n(after.body.as_slice(), 1 + written_again));
    assert_topic_holds(&topic, &expected).await;
    ingress.stop().await;
}
