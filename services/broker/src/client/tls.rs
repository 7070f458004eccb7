//! [`Tls`]: what the client trusts for `https://` brokers, and for mutual TLS what it
//! presents.

use std::path::PathBuf;

use courier_traits::error::InvalidInput;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Pem {
    fn read(&self, what: &'static str) -> Result<Vec<u8>, InvalidInput> {
        match self {
            Pem::Bytes(bytes) => Ok(bytes.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                InvalidInput::new(
                    what,
                    &path.display().to_string(),
                    format!("cannot read: {e}"),
                )
            }),
        }
    }
}

/// TLS settings of a [`BrokerClient`](super::BrokerClient): the CA that signed the brokers'
/// certificates (else the client trusts no one) and, for brokers requiring mutual TLS, the
/// client's certificate and key. Files are read when the client is built.
///
/// ```no_run
/// use courier_broker::client::Tls;
/// let tls = Tls::ca("ca.pem").identity("client.pem", "client.key");
/// # drop(tls);
/// ```
#[derive(Clone, Default)]
pub struct Tls {
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    domain: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

impl Tls {
    /// Trust brokers whose certificates the CA in the PEM file `path` signed.
    pub fn ca(path: impl Into<PathBuf>) -> Tls {
        Tls {
            ca: Some(Pem::File(path.into())),
            ..Tls::default()
        }
    }

    /// Trust brokers whose certificates this CA (PEM) signed.
    pub fn ca_pem(pem: impl Into<Vec<u8>>) -> Tls {
        Tls {
            ca: Some(Pem::Bytes(pem.into())),
            ..Tls::default()
        }
    }

    /// Present this certificate and key (PEM files) to brokers requiring mutual TLS.
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Tls {
        self.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Present this certificate and key (PEM) to brokers requiring mutual TLS.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Tls {
        self.identity = Some((Pem::Bytes(cert.into()), Pem::Bytes(key.into())));
        self
    }

    /// Check the brokers' certificates for this name instead of each URL's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Tls {
        self.domain = Some(name.into());
        self
    }

    /// tonic's client configuration, the files read.
    pub(crate) fn client_config(&self) -> Result<ClientTlsConfig, InvalidInput> {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(ca.read("TLS CA")?));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(
                cert.read("TLS client certificate")?,
                key.read("TLS client key")?,
            ));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}
