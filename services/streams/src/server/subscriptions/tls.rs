//! TLS for `https` webhook receivers: rustls on the `ring` provider, trusting the system's
//! root certificates plus any the settings add (a private CA, tests).

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::delivery_error::DeliveryError;

/// The system's roots, loaded once per process (reading the store is slow).
fn system_roots() -> &'static Vec<CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "cannot read a system root certificate");
        }
        found.certs
    })
}

/// The client configuration: the system's roots plus `extra` (DER certificates).
pub(crate) fn client_config(extra: &[Vec<u8>]) -> Result<Arc<ClientConfig>, DeliveryError> {
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    for der in extra {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| DeliveryError::Refused(format!("a configured root certificate: {e}")))?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::Refused(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS over `stream` to `host`, its certificate checked against the roots.
pub(crate) async fn connect(
    config: Arc<ClientConfig>,
    stream: TcpStream,
    host: &str,
) -> Result<TlsStream<TcpStream>, DeliveryError> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| DeliveryError::Refused(format!("webhook host {host:?}: {e}")))?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| DeliveryError::Unreachable(format!("TLS with {host}: {e}")))
}
