//! TLS for the broker's listener (rustls with ring, through tonic's `tls-ring`): a server
//! certificate and key, and with a client CA, mutual TLS (every client must present a
//! certificate that CA signed).

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file (certificate, key, client CA).
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate, key or CA did not load (rustls' reason).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// The server side's PEM material.
#[derive(Clone)]
pub struct ServerTls {
    /// The certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Its private key, PEM.
    pub key_pem: Vec<u8>,
    /// Set: clients must present a certificate this CA (PEM) signed (mTLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("key_pem", &"<redacted>")
            .field("mtls", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl ServerTls {
    /// Reads the certificate, key and optional client CA from PEM files.
    ///
    /// Errors: [`TlsError::Read`].
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            cert_pem: read("certificate", cert)?,
            key_pem: read("key", key)?,
            client_ca_pem: client_ca.map(|ca| read("client CA", ca)).transpose()?,
        })
    }

    /// Whether clients must present certificates.
    pub fn is_mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// tonic's server configuration for this material.
    pub fn server_config(&self) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            self.cert_pem.clone(),
            self.key_pem.clone(),
        ));
        if let Some(ca) = &self.client_ca_pem {
            config = config
                .client_ca_root(Certificate::from_pem(ca.clone()))
                .client_auth_optional(false);
        }
        config
    }

    /// Checks that rustls accepts the material, so that a bad file fails when the node opens
    /// rather than on the first connection.
    ///
    /// Errors: [`TlsError::Config`].
    pub fn validate(&self) -> Result<(), TlsError> {
        tonic::transport::Server::builder()
            .tls_config(self.server_config())
            .map(drop)
            .map_err(|e| TlsError::Config(source_chain(&e)))
    }
}

/// An error with its sources, for messages that must say what rustls disliked.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
