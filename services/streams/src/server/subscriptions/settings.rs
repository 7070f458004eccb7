//! [`SubscriptionSettings`]: how the subscription APIs behave on this server.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use courier_impls::retry::{ExponentialBackoff, Jitter};
use courier_traits::clock::{Clock, system_clock};
use courier_traits::retry::RetryPolicy;

/// Settings of the subscription APIs (`{root}/__ds/...`), enabled by
/// [`ServerConfig::subscriptions`](super::super::ServerConfig::subscriptions).
#[derive(Clone)]
pub struct SubscriptionSettings {
    /// Accept webhook URLs on loopback (`127.0.0.0/8`, `::1`, names resolving there), over
    /// plain `http`. For tests and local development: on a server others can reach, a
    /// loopback webhook lets a client make the server call its own local services. Private,
    /// link-local and unspecified targets are refused regardless.
    pub allow_loopback_webhooks: bool,
    /// How long one webhook delivery attempt may take (connect, send, answer).
    pub webhook_timeout: Duration,
    /// When to try a failed delivery again. A wake whose deliveries all fail is delivered
    /// afresh (a new generation) when its lease expires, as long as data is pending.
    pub webhook_retry: Arc<dyn RetryPolicy>,
    /// Root certificates (DER) trusted for `https` receivers besides the system's (a private
    /// CA; tests).
    pub webhook_root_certificates: Vec<Vec<u8>>,
    /// How often leases are checked for expiry.
    pub lease_check_interval: Duration,
    /// The clock leases are measured on (a test moves a manual one).
    pub clock: Arc<dyn Clock>,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        SubscriptionSettings {
            allow_loopback_webhooks: false,
            webhook_timeout: Duration::from_secs(10),
            webhook_retry: Arc::new(
                ExponentialBackoff::new(Duration::from_secs(1))
                    .cap(Duration::from_secs(60))
                    .jitter(Jitter::Equal)
                    .max_attempts(8),
            ),
            webhook_root_certificates: Vec::new(),
            lease_check_interval: Duration::from_millis(250),
            clock: system_clock(),
        }
    }
}

impl fmt::Debug for SubscriptionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionSettings")
            .field("allow_loopback_webhooks", &self.allow_loopback_webhooks)
            .field("webhook_timeout", &self.webhook_timeout)
            .field(
                "webhook_root_certificates",
                &self.webhook_root_certificates.len(),
            )
            .field("lease_check_interval", &self.lease_check_interval)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}
