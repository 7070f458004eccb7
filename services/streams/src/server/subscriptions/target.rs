//! Which webhook URLs the server will call: [`WebhookTarget`].
//!
//! A webhook must not turn the server into a probe of its own network (SSRF). A URL is refused
//! when its host, or any address its name resolves to, is not a public unicast address:
//! unspecified (`0.0.0.0/8`, `::`), private (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`),
//! shared (`100.64/10`), link-local (`169.254/16`, `fe80::/10`), multicast, broadcast,
//! documentation and benchmarking ranges, IPv4-mapped or NAT64 forms of any of those, and
//! loopback (`127/8`, `::1`) unless the server allows loopback webhooks (tests, local
//! development). Plain `http` is only accepted for allowed loopback targets. The check runs
//! when the subscription is created and again for every delivery, which connects only to the
//! addresses that passed (a name re-pointed at a private address is refused then).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::Uri;

/// How long resolving a webhook host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed webhook URL.
#[derive(Clone, Debug)]
pub(crate) struct WebhookTarget {
    pub(crate) uri: Uri,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) https: bool,
}

impl WebhookTarget {
    /// Parses `url` (`http` or `https`, a host, no user info).
    pub(crate) fn parse(url: &str) -> Result<WebhookTarget, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| "webhook.url must be a valid URL".to_owned())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("webhook.url must use https".into()),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| "webhook.url must name a host".to_owned())?;
        if authority.as_str().contains('@') {
            return Err("webhook.url must not carry user info".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("webhook.url must name a host".into());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(WebhookTarget {
            uri,
            host,
            port,
            https,
        })
    }

    /// The addresses to call, all of them checked; an error says why the URL is refused.
    pub(crate) async fn resolve(&self, allow_loopback: bool) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(found)) => found.collect(),
                    Ok(Err(_)) | Err(_) => {
                        return Err(format!("webhook host {:?} does not resolve", self.host));
                    }
                }
            }
        };
        if addrs.is_empty() {
            return Err(format!("webhook host {:?} does not resolve", self.host));
        }
        for addr in &addrs {
            match classify(addr.ip()) {
                Reach::Public => {
                    if !self.https {
                        return Err("webhook.url must use https".into());
                    }
                }
                Reach::Loopback if allow_loopback => {}
                Reach::Loopback => {
                    return Err("webhook.url must not target loopback hosts on this server".into());
                }
                Reach::Internal => {
                    return Err(
                        "webhook.url must not target private, link-local or unspecified hosts"
                            .into(),
                    );
                }
            }
        }
        Ok(addrs)
    }
}

/// Where an address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A public unicast address.
    Public,
    /// This host.
    Loopback,
    /// Anything else a webhook must not reach.
    Internal,
}

/// Classifies `ip` (see the module docs).
pub(crate) fn classify(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    if a == 127 {
        return Reach::Loopback;
    }
    let internal = a == 0                                  // "this network", unspecified
        || a == 10                                         // private
        || (a == 100 && (64..=127).contains(&b))           // shared address space (CGNAT)
        || (a == 169 && b == 254)                          // link-local
        || (a == 172 && (16..=31).contains(&b))            // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // documentation
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (18..=19).contains(&b))            // benchmarking
        || (a == 198 && b == 51 && c == 100)               // documentation
        || (a == 203 && b == 0 && c == 113)                // documentation
        || a >= 224; // multicast, reserved, broadcast
    if internal {
        Reach::Internal
    } else {
        Reach::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Reach {
    if ip.is_loopback() {
        return Reach::Loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let o = ip.octets();
        return classify_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    let first = segments[0];
    let internal = ip.is_unspecified()
        || segments[..7] == [0; 7] // IPv4-compatible (deprecated) and other ::/96 forms
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first & 0xff00) == 0xff00 // multicast
        || first == 0x2001 && segments[1] == 0x0db8 // documentation
        || first == 0x0100 && segments[1..4] == [0, 0, 0]; // discard-only
    if internal {
        Reach::Internal
    } else {
        Reach::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(text: &str) -> Reach {
        classify(text.parse().expect("an IP address"))
    }

    #[test]
    fn addresses_are_classified() {
        for internal in [
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert_eq!(reach(internal), Reach::Internal, "{internal}");
        }
        for loopback in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(reach(loopback), Reach::Loopback, "{loopback}");
        }
        for public in [
            "1.1.1.1",
            "172.32.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert_eq!(reach(public), Reach::Public, "{public}");
        }
    }

    async fn check(url: &str, allow_loopback: bool) -> Result<Vec<SocketAddr>, String> {
        WebhookTarget::parse(url)?.resolve(allow_loopback).await
    }

    #[tokio::test]
    async fn unsafe_urls_are_refused() {
        for url in [
            "http://10.0.0.1/hook",
            "https://10.0.0.1/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "https://0.0.0.0/hook",
            "ftp://example.com/hook",
            "https://user@1.1.1.1/hook",
            "not a url",
        ] {
            assert!(
                check(url, true).await.is_err(),
                "{url} with loopback allowed"
            );
        }
        for url in [
            "http://127.0.0.1:9/hook",
            "https://[::1]/hook",
            "http://localhost:9/x",
        ] {
            assert!(check(url, false).await.is_err(), "{url}");
            assert!(
                check(url, true).await.is_ok(),
                "{url} with loopback allowed"
            );
        }
        // Public addresses need https.
        assert!(check("http://1.1.1.1/hook", true).await.is_err());
        assert!(check("https://1.1.1.1/hook", false).await.is_ok());
    }
}
