//! HTTPS for the vendor APIs: reqwest on rustls with the `ring` provider.
//!
//! reqwest is built with `rustls-no-provider` (no aws-lc build, no system OpenSSL), so a rustls
//! `CryptoProvider` must be installed in the process before the first client is built, or
//! building one panics. `main` calls [`install_tls_provider`] first thing; library code that
//! builds clients calls it too, since tests and embedders do not go through `main`.

use std::time::Duration;

/// Installs rustls's `ring` provider as the process default. Idempotent: a provider that is
/// already installed (by an earlier call, or by the embedding program) is kept.
pub fn install_tls_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for calls to a vendor's token endpoint or API: every call bounded by `timeout`.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    install_tls_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("biometric-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
}
