//! The audit log through the real binary and PostgreSQL: operator commands leave a record naming
//! the person only by pseudonym, `audit list --user` finds them, the table refuses rewrites, and
//! the history retention job deletes old rows and audits the sweep.

use biometric_bridge::audit::Pseudonymizer;
use biometric_bridge::config::DatabaseArgs;
use biometric_bridge::secret::Secret;

use crate::helpers;

async fn pool() -> sqlx::PgPool {
    helpers::require_stack();
    let database = DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 2 };
    database.migrated_pool().await.expect("PostgreSQL")
}

/// Runs `biometric-bridge <args>` as operator `audit-test-operator`.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    helpers::run_cli(args, &[&[("USER", "audit-test-operator")], env].concat(), stdin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_are_audited_by_pseudonym_and_the_log_cannot_be_rewritten() {
    let pool = pool().await;
    let (pseudonym_key, token_key) = (helpers::random_key(), helpers::random_key());
    let (user, vendor_user) = (helpers::unique("audited-user"), helpers::unique("audited-oura"));
    let env = [("PSEUDONYM_KEY", pseudonym_key.as_str()), ("TOKEN_ENCRYPTION_KEY", token_key.as_str())];

    let (ok, issued, err) = run(&["tokens", "issue", "--user", &user], &env, "");
    assert!(ok, "tokens issue: {err}");
    let token_id = issued.lines().find_map(|line| line.strip_prefix("token_id: ")).unwrap().trim().to_owned();
    let (ok, _, err) = run(&["tokens", "revoke", "--user", &user], &env, "");
    assert!(ok, "tokens revoke: {err}");
    let json = r#"{"access_token":"at-audit","refresh_token":"rt-audit","expires_in":86400}"#;
    let (ok, _, err) = run(&["connections", "add", "--vendor", "oura", "--user", &user, "--vendor-user", &vendor_user], &env, json);
    assert!(ok, "connections add: {err}");
    // Without the token key the vendor cannot be told: revoked here (audited), pending there.
    let (ok, _, _) = run(&["connections", "revoke", "--vendor", "oura", "--vendor-user", &vendor_user], &env[..1], "");
    assert!(!ok, "the vendor revocation stays pending without TOKEN_ENCRYPTION_KEY");

    let (ok, listed, err) = run(&["audit", "list", "--user", &user, "--json"], &env[..1], "");
    assert!(ok, "audit list: {err}");
    let rows: Vec<serde_json::Value> = listed.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let actions: Vec<&str> = rows.iter().map(|row| row["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["token.issue", "token.revoke", "connection.add", "connection.revoke"], "{listed}");
    let pseudonym = Pseudonymizer::from_secret(&Secret::new(pseudonym_key.clone())).unwrap().user(&user);
    for row in &rows {
        assert_eq!(row["subject"], pseudonym.as_str());
        assert_eq!((row["actor_kind"].as_str(), row["actor"].as_str()), (Some("operator"), Some("audit-test-operator")));
        assert_eq!(row["outcome"], "ok");
    }
    assert_eq!(rows[0]["target"], token_id.as_str(), "the token is named by its id");
    assert_eq!(rows[1]["detail"]["revoked"], 1);
    assert_eq!(rows[2]["target"], "oura");
    assert_eq!(rows[3]["detail"]["step"], "revoked_here");

    // Text output, and a filter by action.
    let (ok, text, _) = run(&["audit", "list", "--user", &user, "--action", "token.issue"], &env[..1], "");
    assert!(ok && text.lines().count() == 1 && text.contains("token.issue") && text.contains(&pseudonym), "{text}");
    // --user without the key cannot look anyone up, and says why.
    let (ok, _, err) = run(&["audit", "list", "--user", &user], &[], "");
    assert!(!ok && err.contains("PSEUDONYM_KEY"), "{err}");

    // No row anywhere in the log holds the user id, the vendor user id or a token.
    let leaks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE audit_log::text LIKE '%' || $1 || '%' OR audit_log::text LIKE '%' || $2 || '%'
            OR audit_log::text LIKE '%at-audit%' OR audit_log::text LIKE '%rt-audit%'",
    )
    .bind(&user)
    .bind(&vendor_user)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaks, 0, "the audit log holds a raw id or token");

    // Append-only, even for the application's own role.
    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM audit_log WHERE subject = $1").bind(&pseudonym).fetch_one(&pool).await.unwrap();
    for statement in ["UPDATE audit_log SET outcome = 'failed' WHERE id = $1", "DELETE FROM audit_log WHERE id = $1"] {
        let error = sqlx::query(statement).bind(id).execute(&pool).await.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    let error = sqlx::query("TRUNCATE audit_log").execute(&pool).await.expect_err("TRUNCATE").to_string();
    assert!(error.contains("append-only"), "TRUNCATE: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_retention_job_deletes_old_rows_and_audits_the_sweep() {
    use biometric_bridge::sink::postgres::retention;
    let pool = pool().await;
    let user = helpers::unique("retained-user");
    // Far older than any other test's data (the database is shared): measured in 1870 and in 1990.
    for measured in ["1870-01-01T00:00:00Z", "1870-06-01T00:00:00Z", "1990-01-01T00:00:00Z"] {
        helpers::insert_history_row(&pool, &user, measured).await;
    }
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM audit_log").fetch_one(&pool).await.unwrap();

    let keep = retention::parse_retention(&format!("{}d", 100 * 365)).unwrap(); // the longest accepted: 100 years
    let deleted = retention::sweep(&pool, keep, "audit-test-sink").await.unwrap();
    assert!(deleted >= 2, "the two 1870 rows, and any other as old: {deleted}");
    let left: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT measured_at FROM biometric_events WHERE user_id = $1").bind(&user).fetch_all(&pool).await.unwrap();
    assert_eq!(left.len(), 1, "only the row inside the retention is kept");
    assert_eq!(left[0].format("%Y").to_string(), "1990");

    let (actor, detail): (String, serde_json::Value) = sqlx::query_as(
        "SELECT actor, detail FROM audit_log WHERE id > $1 AND action = 'retention.delete' AND actor = 'audit-test-sink' ORDER BY id LIMIT 1",
    )
    .bind(before)
    .fetch_one(&pool)
    .await
    .expect("the sweep is audited");
    assert_eq!(actor, "audit-test-sink");
    assert_eq!(detail["deleted"].as_u64(), Some(deleted));
    // A second sweep finds nothing, and records nothing.
    assert_eq!(retention::sweep(&pool, keep, "audit-test-sink").await.unwrap(), 0);
    let sweeps: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE id > $1 AND actor = 'audit-test-sink'")
        .bind(before)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sweeps, 1);
    sqlx::query("DELETE FROM biometric_events WHERE user_id = $1").bind(&user).execute(&pool).await.unwrap();
}
