//! Where webhooks may go: public addresses only, unless the operator allows more.
//!
//! The check runs where the connection is made: the webhook client resolves names through
//! [`PolicyResolver`], which refuses a name if any of its addresses is not allowed, and connects
//! only to the addresses it checked (so DNS cannot answer differently between the check and the
//! connection). Literal addresses in URLs, which are never resolved, are checked by
//! [`EgressPolicy::check_url`] before the request is made, and already when a subscription is
//! set. The `url` crate parses hosts the way browsers do, so `0x7f000001`, `2130706433` and
//! `127.1` all arrive here as 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{DeliveryConfig, WebhookConfig};

/// Why an address is refused: a metric label and part of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Unspecified,
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    Metadata,
    Multicast,
    Documentation,
    Reserved,
    Ipv4Translated,
}

impl Range {
    pub fn as_str(self) -> &'static str {
        match self {
            Range::Unspecified => "unspecified",
            Range::Loopback => "loopback",
            Range::Private => "private",
            Range::SharedAddressSpace => "shared_address_space",
            Range::LinkLocal => "link_local",
            Range::Metadata => "cloud_metadata",
            Range::Multicast => "multicast",
            Range::Documentation => "documentation",
            Range::Reserved => "reserved",
            Range::Ipv4Translated => "ipv4_translated",
        }
    }
}

/// The range `ip` belongs to when it is not a public unicast address.
pub fn non_public_range(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<Range> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => Range::Metadata,
        (0, _, _) => Range::Unspecified,
        (127, _, _) => Range::Loopback,
        (10, _, _) | (192, 168, _) => Range::Private,
        (172, b, _) if (16..=31).contains(&b) => Range::Private,
        (100, b, _) if (64..=127).contains(&b) => Range::SharedAddressSpace,
        (169, 254, _) => Range::LinkLocal,
        (224..=239, _, _) => Range::Multicast,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Range::Documentation,
        (192, 0, 0) | (198, 18..=19, _) | (240..=255, _, _) => Range::Reserved,
        _ => return None,
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<Range> {
    // Forms that carry an IPv4 address reach that address: judge them by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_range(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if ip == Ipv6Addr::UNSPECIFIED {
        return Some(Range::Unspecified);
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Some(Range::Loopback);
    }
    Some(match s[0] {
        // IPv4-compatible (deprecated) ::a.b.c.d and NAT64 64:ff9b::a.b.c.d.
        0 if s[1..6].iter().all(|x| *x == 0) => v4_range(embedded(s[6], s[7])).unwrap_or(Range::Ipv4Translated),
        0x64 if s[1] == 0xff9b => v4_range(embedded(s[6], s[7])).unwrap_or(Range::Ipv4Translated),
        // 6to4 and Teredo tunnel to IPv4 hosts that this check cannot see.
        0x2002 => Range::Ipv4Translated,
        0x2001 if s[1] == 0 => Range::Ipv4Translated,
        0x2001 if s[1] == 0x0db8 => Range::Documentation,
        0xfd00 if s[1] == 0x0ec2 => Range::Metadata,
        x if x & 0xfe00 == 0xfc00 => Range::Private,
        x if x & 0xffc0 == 0xfe80 || x & 0xffc0 == 0xfec0 => Range::LinkLocal,
        x if x & 0xff00 == 0xff00 => Range::Multicast,
        0x0100 if s[1..4].iter().all(|x| *x == 0) => Range::Reserved,
        _ => return None,
    })
}

/// An address a webhook may not reach.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {ip}, a {} address, which webhooks may not reach (allow it in webhooks.allow_cidrs if it must)", .range.as_str().replace('_', " "))]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub range: Range,
}

/// The operator's rules for webhook destinations.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// `make run` and tests: loopback is allowed (and `http:`).
    development: bool,
    allowed: Arc<Vec<IpNet>>,
}

impl EgressPolicy {
    pub fn from_config(delivery: &DeliveryConfig, webhooks: &WebhookConfig) -> anyhow::Result<EgressPolicy> {
        let allowed = webhooks
            .allow_cidrs
            .iter()
            .map(|c| {
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| anyhow::anyhow!("webhooks.allow_cidrs: {c:?} is not an address or a CIDR range"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(EgressPolicy { development: delivery.development_mode, allowed: Arc::new(allowed) })
    }

    /// Whether plain `http:` endpoints are allowed.
    pub fn allows_http(&self) -> bool {
        self.development
    }

    /// Whether `ip` may be reached; the refusal names the range.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let Some(range) = non_public_range(ip) else { return Ok(()) };
        if self.allowed.iter().any(|net| net.contains(&ip) || to_v4(ip).is_some_and(|v4| net.contains(&v4))) {
            return Ok(());
        }
        if self.development && range == Range::Loopback {
            return Ok(());
        }
        Err(Refused { host: host.to_owned(), ip, range })
    }

    /// Checks a URL whose host is a literal address (names are checked when resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(&format!("[{ip}]"), IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }
}

fn to_v4(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// Resolves names for the webhook client, refusing any name with an address the policy does
/// not allow.
pub struct PolicyResolver {
    pub policy: EgressPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check_ip(&host, addr.ip()).map_err(|refused| {
                    crate::metrics::ADDRESSES_REFUSED.with_label_values(&[refused.range.as_str()]).inc();
                    Box::new(refused) as Box<dyn std::error::Error + Send + Sync>
                })?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal somewhere in `err`'s causes, if the policy is why a request failed.
pub fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(development: bool, allow: &[&str]) -> EgressPolicy {
        EgressPolicy { development, allowed: Arc::new(allow.iter().map(|c| c.parse().unwrap()).collect()) }
    }

    fn range_of(url: &str) -> Option<Range> {
        let url = url::Url::parse(url).unwrap();
        policy(false, &[]).check_url(&url).err().map(|r| r.range)
    }

    #[test]
    fn every_non_public_form_is_refused() {
        for (url, range) in [
            ("http://169.254.169.254/latest/meta-data/", Range::Metadata),
            ("http://100.100.100.200/", Range::Metadata),
            ("http://[fd00:ec2::254]/", Range::Metadata),
            ("http://127.0.0.1:6379/", Range::Loopback),
            ("http://0x7f000001/", Range::Loopback),
            ("http://2130706433/", Range::Loopback),
            ("http://127.1/", Range::Loopback),
            ("http://0177.0.0.1/", Range::Loopback),
            ("http://[::1]/", Range::Loopback),
            ("http://[::ffff:127.0.0.1]/", Range::Loopback),
            ("http://[::ffff:7f00:1]/", Range::Loopback),
            ("http://[::127.0.0.1]/", Range::Loopback),
            ("http://[64:ff9b::a9fe:a9fe]/", Range::Metadata),
            ("http://0.0.0.0/", Range::Unspecified),
            ("http://[::]/", Range::Unspecified),
            ("http://10.1.2.3/", Range::Private),
            ("http://172.16.0.1/", Range::Private),
            ("http://192.168.1.1/", Range::Private),
            ("http://[fc00::1]/", Range::Private),
            ("http://100.64.0.1/", Range::SharedAddressSpace),
            ("http://169.254.1.1/", Range::LinkLocal),
            ("http://[fe80::1]/", Range::LinkLocal),
            ("http://224.0.0.1/", Range::Multicast),
            ("http://[ff02::1]/", Range::Multicast),
            ("http://255.255.255.255/", Range::Reserved),
            ("http://[2002:7f00:1::]/", Range::Ipv4Translated),
            ("http://192.0.2.10/", Range::Documentation),
        ] {
            assert_eq!(range_of(url), Some(range), "{url}");
        }
        for public in
            ["https://93.184.215.14/", "https://[2606:4700::1111]/", "https://example.com/", "https://172.32.0.1/"]
        {
            assert_eq!(range_of(public), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_and_development_mode_open_only_what_they_name() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let private: IpAddr = "10.20.0.5".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.20.0.5".parse().unwrap();
        let strict = policy(false, &["10.20.0.0/16"]);
        assert!(strict.check_ip("h", private).is_ok());
        assert!(strict.check_ip("h", mapped).is_ok(), "the mapped form of an allowed address is allowed");
        assert!(strict.check_ip("h", "10.21.0.1".parse().unwrap()).is_err());
        assert_eq!(strict.check_ip("h", loopback).unwrap_err().range, Range::Loopback);
        let dev = policy(true, &[]);
        assert!(dev.check_ip("h", loopback).is_ok());
        assert!(dev.check_ip("h", "::1".parse().unwrap()).is_ok());
        assert_eq!(dev.check_ip("h", "169.254.169.254".parse().unwrap()).unwrap_err().range, Range::Metadata);
        assert_eq!(dev.check_ip("h", private).unwrap_err().range, Range::Private);
    }
}
