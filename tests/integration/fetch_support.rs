//! Shared by the fetch-stage tests (and the outage binary): a topology with short retry delays,
//! a vendor API simulator, a connection store with this test's own encryption key, and writers of
//! vendor-format notifications to `raw-webhooks`.

use biometric_bridge::connections::{ConnectionStore, TokenCipher, TokenSet};
use biometric_bridge::event::Vendor;
use biometric_bridge::secret::Secret;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, ProcessorGuard, TestTopology};
use super::vendor_sim::{SimVendor, VendorSim};

pub struct Setup {
    /// This test's TOKEN_ENCRYPTION_KEY (64 hex chars). Tests share one database; another test's
    /// connections do not decrypt with it, so reconciliation here skips them.
    pub key: String,
    /// This test's DATA_ENCRYPTION_KEY: its processors open what a sealing ingress wrote.
    pub data_key: String,
    pub sim: VendorSim,
    pub topology: TestTopology,
    pub store: ConnectionStore,
}

impl Setup {
    /// A topology whose retry passes are a second apart (instead of 30 s), a simulator, and the
    /// connection store.
    pub async fn new() -> Setup {
        Setup::with_topology(|text| text).await
    }

    /// [`Setup::new`] with a further edit of the topology text.
    pub async fn with_topology(edit: impl FnOnce(String) -> String) -> Setup {
        let topology = TestTopology::create_with(4, |text| {
            edit(text)
                .replace("retry_delay_secs = 30", "retry_delay_secs = 1")
                .replace("max_retry_delay_secs = 3600", "max_retry_delay_secs = 2")
        })
        .await;
        let pool = sqlx::PgPool::connect(&helpers::database_url()).await.unwrap();
        sqlx::migrate!("./migrations").run(&pool).await.unwrap();
        let key = helpers::random_key();
        let store = ConnectionStore::new(pool, TokenCipher::from_secret(&Secret::new(key.clone())).unwrap());
        Setup { key, data_key: helpers::stack_data_key(), sim: VendorSim::start(), topology, store }
    }

    /// The environment that points a processor (or `reconcile`) at the simulator.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TOKEN_ENCRYPTION_KEY".into(), self.key.clone()),
            ("DATA_ENCRYPTION_KEY".into(), self.data_key.clone()),
            ("OURA_CLIENT_ID".into(), self.sim.client_id(SimVendor::Oura).into()),
            ("OURA_CLIENT_SECRET".into(), self.sim.client_secret(SimVendor::Oura).into()),
            ("WHOOP_CLIENT_ID".into(), self.sim.client_id(SimVendor::Whoop).into()),
            ("WHOOP_CLIENT_SECRET".into(), self.sim.client_secret(SimVendor::Whoop).into()),
            ("OURA_API_BASE".into(), self.sim.oura_base()),
            ("OURA_TOKEN_URL".into(), self.sim.oura_token_url()),
            ("WHOOP_API_BASE".into(), self.sim.whoop_base()),
            ("WHOOP_TOKEN_URL".into(), self.sim.whoop_token_url()),
            ("REDIS_URL".into(), helpers::redis_url()),
            ("FETCH_BACKOFF_MS".into(), "50".into()),
            ("FETCH_MAX_WAIT_MS".into(), "3000".into()),
        ]
    }

    pub fn processor(&self, instance: &str) -> ProcessorGuard {
        let env = self.env();
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        helpers::spawn_processor(&self.topology, instance, &refs)
    }

    /// A user connected at the simulator and in our store; the access token expires in
    /// `expires_in_secs` (as both sides see it).
    pub async fn connect(&self, vendor: SimVendor, vendor_user_id: &str, user_id: &str, expires_in_secs: i64) {
        let (access, refresh) = self.sim.add_user(vendor, vendor_user_id, expires_in_secs);
        let tokens = TokenSet {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new(refresh)),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::seconds(expires_in_secs)),
            scopes: None,
        };
        self.store.upsert(bridge_vendor(vendor), vendor_user_id, user_id, &tokens).await.unwrap();
    }

    pub fn events_topic(&self) -> String {
        self.topology.topic("biometric-events")
    }

    pub fn dlq_topic(&self) -> String {
        self.topology.topic("raw-webhooks.dlq")
    }

    pub fn retry_topic(&self) -> String {
        self.topology.topology.fetch.retry_topic.clone()
    }
}

pub fn bridge_vendor(vendor: SimVendor) -> Vendor {
    match vendor {
        SimVendor::Oura => Vendor::Oura,
        SimVendor::Whoop => Vendor::Whoop,
    }
}

/// Writes a webhook body to `raw-webhooks` as the ingress does (key and headers).
pub async fn send_webhook(topology: &TestTopology, vendor: Vendor, vendor_user_id: &str, body: &[u8]) {
    send_webhooks(topology, &[(vendor, vendor_user_id.to_owned(), body.to_vec())]).await;
}

/// [`send_webhook`] for many, through one producer, in order.
pub async fn send_webhooks(topology: &TestTopology, webhooks: &[(Vendor, String, Vec<u8>)]) {
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).set("linger.ms", "5").create().unwrap();
    let topic = topology.topic("raw-webhooks");
    let mut deliveries = Vec::with_capacity(webhooks.len());
    for (vendor, vendor_user_id, body) in webhooks {
        let key = format!("{}:{vendor_user_id}", vendor.slug());
        let received_at = chrono::Utc::now().timestamp_millis().to_string();
        let delivery = uuid::Uuid::new_v4().to_string();
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vendor", value: Some(vendor.slug()) })
            .insert(Header { key: "received-at", value: Some(&received_at) })
            .insert(Header { key: "delivery-id", value: Some(&delivery) })
            .insert(Header { key: "trace-id", value: Some(&trace) });
        let record = FutureRecord::to(&topic).key(&key).payload(body).headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(error, _)| error).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
}

pub fn oura_notification(event_type: &str, data_type: &str, object_id: &str, user: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event_type": event_type, "data_type": data_type, "object_id": object_id,
        "event_time": "2026-11-20T09:00:00+00:00", "user_id": user
    }))
    .unwrap()
}

pub fn whoop_notification(kind: &str, id: &str, user: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"user_id": user, "id": id, "type": kind, "trace_id": uuid::Uuid::new_v4().to_string()})).unwrap()
}

pub fn rand_u16() -> u16 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16
}
