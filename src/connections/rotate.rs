//! `connections rotate-key`: re-encrypts every stored OAuth token under the current
//! `TOKEN_ENCRYPTION_KEY`, reading each under it or `TOKEN_ENCRYPTION_KEY_PREVIOUS`.
//!
//! The order that keeps every token readable: give every process (ingress, processors, CLI)
//! the new key as `TOKEN_ENCRYPTION_KEY` and the old one as `TOKEN_ENCRYPTION_KEY_PREVIOUS`;
//! run this; remove the previous key once it reports nothing left under it. A refresh racing
//! the rotation is never overwritten: each row is rewritten only if its tokens are still the
//! bytes that were read (compare-and-set), else read again.

use sqlx::PgPool;

use super::cipher::{OpenedWith, TokenCipher, row_aad};
use super::store::vendor_of;

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rows re-encrypted from the previous key to the current one.
    pub rewrapped: usize,
    /// Rows already under the current key.
    pub current: usize,
    /// Rows neither key opens (`<VENDOR>:<vendor user id>`): tokens lost, to be reconnected.
    pub unreadable: Vec<String>,
}

/// A row's sealed tokens: access, refresh.
type Sealed = (Vec<u8>, Option<Vec<u8>>);

pub async fn rotate(pool: &PgPool, cipher: &TokenCipher) -> anyhow::Result<Rotation> {
    let keys: Vec<(String, String)> =
        sqlx::query_as("SELECT vendor, vendor_user_id FROM vendor_connections ORDER BY vendor, vendor_user_id").fetch_all(pool).await?;
    let mut rotation = Rotation::default();
    for (vendor, vendor_user) in keys {
        let aad = row_aad(vendor_of(&vendor)?, &vendor_user);
        for attempt in 0.. {
            let row: Option<Sealed> =
                sqlx::query_as("SELECT access_token, refresh_token FROM vendor_connections WHERE vendor = $1 AND vendor_user_id = $2")
                    .bind(&vendor)
                    .bind(&vendor_user)
                    .fetch_optional(pool)
                    .await?;
            let Some((access, refresh)) = row else { break }; // deleted meanwhile
            let opened = cipher.open(&aad, &access).and_then(|(token, with)| {
                let refresh = refresh.as_deref().map(|sealed| cipher.open(&aad, sealed)).transpose()?;
                Ok((token, with, refresh))
            });
            let (token, with, refresh_token) = match opened {
                Ok(opened) => opened,
                Err(_) => {
                    rotation.unreadable.push(aad.clone());
                    break;
                }
            };
            let refresh_current = refresh_token.as_ref().is_none_or(|(_, with)| *with == OpenedWith::Current);
            if with == OpenedWith::Current && refresh_current {
                rotation.current += 1;
                break;
            }
            let new_access = cipher.encrypt(&aad, token.expose());
            let new_refresh = refresh_token.map(|(token, _)| cipher.encrypt(&aad, token.expose()));
            let swapped = sqlx::query(
                "UPDATE vendor_connections SET access_token = $3, refresh_token = $4
                 WHERE vendor = $1 AND vendor_user_id = $2 AND access_token = $5 AND refresh_token IS NOT DISTINCT FROM $6",
            )
            .bind(&vendor)
            .bind(&vendor_user)
            .bind(&new_access)
            .bind(&new_refresh)
            .bind(&access)
            .bind(&refresh)
            .execute(pool)
            .await?
            .rows_affected();
            if swapped == 1 {
                rotation.rewrapped += 1;
                break;
            }
            anyhow::ensure!(attempt < 5, "the connection {aad} kept changing during the rotation; run it again");
        }
    }
    Ok(rotation)
}
