//! `biometric-bridge keys rotate`: rewraps every data key under the current
//! `DATA_ENCRYPTION_KEY`, unwrapping each under it or `DATA_ENCRYPTION_KEY_PREVIOUS`. The data
//! keys themselves do not change, so nothing in Kafka is re-encrypted.
//!
//! The order that keeps every record readable: give every process the new key as
//! `DATA_ENCRYPTION_KEY` and the old one as `DATA_ENCRYPTION_KEY_PREVIOUS`; run this; remove the
//! previous key once it reports nothing left under it. Each row is rewritten only if it still
//! holds the bytes that were read (an erase racing the rotation wins).

use sqlx::PgPool;

use super::kek::Kek;
use crate::audit::{self, Action, Actor, Entry};
use crate::config::DatabaseArgs;
use crate::keyring::OpenedWith;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Rewrap every per-user data key under DATA_ENCRYPTION_KEY, reading under it or
    /// DATA_ENCRYPTION_KEY_PREVIOUS (give every process both keys first; drop the previous one
    /// after this reports none left under it).
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub rewrapped: u64,
    pub current: u64,
    /// Key ids neither key-encryption key unwraps: the records sealed under them are lost.
    pub unreadable: Vec<uuid::Uuid>,
}

pub async fn rotate(pool: &PgPool, kek: &Kek) -> sqlx::Result<Rotation> {
    let rows: Vec<(uuid::Uuid, Vec<u8>)> = sqlx::query_as("SELECT key_id, wrapped FROM data_keys ORDER BY key_id").fetch_all(pool).await?;
    let mut rotation = Rotation::default();
    for (id, wrapped) in rows {
        match kek.unwrap(id, &wrapped) {
            Ok((_, OpenedWith::Current)) => rotation.current += 1,
            Ok((key, OpenedWith::Previous)) => {
                let swapped = sqlx::query("UPDATE data_keys SET wrapped = $2, rotated_at = now() WHERE key_id = $1 AND wrapped = $3")
                    .bind(id)
                    .bind(kek.wrap(id, &key))
                    .bind(&wrapped)
                    .execute(pool)
                    .await?
                    .rows_affected();
                // 0: erased meanwhile (a key is never rewrapped by anything else).
                rotation.rewrapped += swapped;
            }
            Err(_) => rotation.unreadable.push(id),
        }
    }
    Ok(rotation)
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Rotate { database } = command;
    let kek = Kek::from_env()?.ok_or_else(|| anyhow::anyhow!("DATA_ENCRYPTION_KEY (or DATA_ENCRYPTION_KEY_FILE) is not set"))?;
    let pool = database.migrated_pool().await?;
    let result = rotate(&pool, &kek).await;
    let entry = Entry::new(Actor::operator(), Action::KeyRotate).target("DATA_ENCRYPTION_KEY");
    let entry = match &result {
        Ok(rotation) => {
            let entry = entry.detail("rewrapped", rotation.rewrapped).detail("current", rotation.current);
            let entry = entry.detail("unreadable", rotation.unreadable.len());
            if rotation.unreadable.is_empty() { entry } else { entry.failed("unreadable_data_keys") }
        }
        Err(_) => entry.failed("rotation_failed"),
    };
    audit::record_or_warn(&pool, &entry).await?;
    let rotation = result?;
    println!("{} data key(s) rewrapped under the current key, {} already were", rotation.rewrapped, rotation.current);
    for id in &rotation.unreadable {
        println!("unwraps under neither key: data key {id}");
    }
    anyhow::ensure!(rotation.unreadable.is_empty(), "{} data key(s) unwrap under neither key", rotation.unreadable.len());
    Ok(())
}
