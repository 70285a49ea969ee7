//! Schema evolution guarded by the registry: every released schema (`schemas/history/`),
//! registered in order under a subject held to BACKWARD, and then the working schema checked
//! against the latest through the registry's compatibility API. An incompatible change fails here.

use biometric_bridge::config::RegistryArgs;

use super::helpers;

/// The released schemas, oldest first.
fn history() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/history");
    let mut files: Vec<(u32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let version = name.strip_prefix("biometric_event.v")?.strip_suffix(".avsc")?.parse().ok()?;
            Some((version, name))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, name)| (name.clone(), std::fs::read_to_string(format!("{dir}/{name}")).unwrap())).collect()
}

async fn post(url: String, schema: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_working_schema_is_backward_compatible_with_every_release() {
    helpers::require_stack();
    let registry = helpers::registry_url();
    let subject = helpers::unique("compat-biometric-events-value");
    biometric_bridge::event::avro::set_compatibility(&RegistryArgs::plain(registry.clone()).http().unwrap(), &subject).await.unwrap();
    let config: serde_json::Value = reqwest::get(format!("{registry}/config/{subject}")).await.unwrap().json().await.unwrap();
    assert_eq!(config["compatibilityLevel"], "BACKWARD", "{config}");

    let released = history();
    assert!(released.len() >= 5, "schemas/history holds the released schemas");
    for (name, schema) in &released {
        let registered = post(format!("{registry}/subjects/{subject}/versions"), schema).await;
        assert!(registered["id"].is_number(), "{name} could not be registered after its predecessors: {registered}");
    }

    let working = biometric_bridge::event::avro::SCHEMA_JSON;
    let verdict = post(format!("{registry}/compatibility/subjects/{subject}/versions/latest"), working).await;
    assert_eq!(verdict["is_compatible"], true, "schemas/biometric_event.avsc breaks BACKWARD compatibility with the last release");

    // The check can fail: a new field without a default cannot read the old events.
    let mut broken: serde_json::Value = serde_json::from_str(working).unwrap();
    broken["fields"].as_array_mut().unwrap().push(serde_json::json!({ "name": "coach_note", "type": "string" }));
    let verdict = post(format!("{registry}/compatibility/subjects/{subject}/versions/latest"), &broken.to_string()).await;
    assert_eq!(verdict["is_compatible"], false, "{verdict}");
    let refused = post(format!("{registry}/subjects/{subject}/versions"), &broken.to_string()).await;
    assert_eq!(refused["error_code"], 409, "the registry refuses to register it: {refused}");
}
