//! One process-wide TLS crypto provider (ring), installed before any client is built.

/// Install ring as rustls' default provider; later calls do nothing.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
