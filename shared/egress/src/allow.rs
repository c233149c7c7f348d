//! The operator's exceptions (`GOLOS_EGRESS_ALLOW`): self-hosted models beside the worker,
//! a VPC endpoint, test simulators. Pure: parsed from a string, asked about addresses and names.

use crate::EgressError;
use ipnet::IpNet;
use std::net::IpAddr;

/// Comma-separated entries, each one of:
/// - a network (`127.0.0.1/32`, `10.20.0.0/16`, `fd12::/64`) or a single address: golos may
///   connect to these addresses, whatever name led there;
/// - a host name (`localhost`, `llm.internal`): that name may resolve to any address;
/// - `host:port` (`localhost:11434`): the same, on that port only.
///
/// Names are matched exactly (case-insensitive, without a trailing dot); no wildcards, so an
/// entry never covers names a tenant can create below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressAllowlist {
    networks: Vec<IpNet>,
    hosts: Vec<(String, Option<u16>)>,
}

/// What the allowlist says about a name and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRule {
    /// Not named: the policy applies to whatever it resolves to.
    NotListed,
    /// Named (on this port, or on any): it may resolve to any address.
    Allowed,
    /// Named, but only on other ports.
    OtherPortsOnly,
}

impl EgressAllowlist {
    /// Nothing allowed beyond the public internet.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn parse(list: &str) -> Result<Self, EgressError> {
        let mut allow = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || EgressError::InvalidAllowEntry(entry.to_owned());
            if let Ok(net) = entry.parse::<IpNet>() {
                allow.networks.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                allow.networks.push(IpNet::from(ip));
            } else {
                let (host, port) = match entry.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| invalid())?)),
                    None => (entry, None),
                };
                let host = normalize_host(host);
                if !is_dns_name(&host) {
                    return Err(invalid());
                }
                allow.hosts.push((host, port));
            }
        }
        Ok(allow)
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.hosts.is_empty()
    }

    /// Whether the operator allows this address (it is inside one of the networks).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// What the allowlist says about `host` (a name, not an address) on `port`.
    pub fn host_rule(&self, host: &str, port: u16) -> HostRule {
        let host = normalize_host(host);
        let mut listed = false;
        for (name, only_port) in &self.hosts {
            if *name == host {
                listed = true;
                if only_port.is_none_or(|p| p == port) {
                    return HostRule::Allowed;
                }
            }
        }
        if listed {
            HostRule::OtherPortsOnly
        } else {
            HostRule::NotListed
        }
    }

    /// Whether the name is listed at all (the resolver, which never sees the port, lets its
    /// addresses through; the pre-send check has already held the port to the entry).
    pub fn names_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.hosts.iter().any(|(name, _)| *name == host)
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_networks_addresses_hosts_and_ports() {
        let allow = EgressAllowlist::parse(
            " 127.0.0.1/32, 10.20.0.0/16 ,fd12::/64, 192.168.1.7, localhost:11434, LLM.internal. ,",
        )
        .unwrap();
        assert!(allow.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(!allow.allows_ip("127.0.0.2".parse().unwrap()));
        assert!(allow.allows_ip("10.20.3.4".parse().unwrap()));
        assert!(allow.allows_ip("fd12::9".parse().unwrap()));
        assert!(allow.allows_ip("192.168.1.7".parse().unwrap()));
        // A network of one family never covers the other family's forms of it.
        assert!(!allow.allows_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(allow.host_rule("localhost", 11434), HostRule::Allowed);
        assert_eq!(allow.host_rule("LOCALHOST.", 11434), HostRule::Allowed);
        assert_eq!(allow.host_rule("localhost", 22), HostRule::OtherPortsOnly);
        assert_eq!(allow.host_rule("llm.internal", 8000), HostRule::Allowed);
        assert_eq!(allow.host_rule("x.llm.internal", 8000), HostRule::NotListed);
        assert!(allow.names_host("localhost"));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["10.0.0.0/33", "localhost:http", "*.internal", "exa mple", "host:70000", "a..b"] {
            assert_eq!(EgressAllowlist::parse(bad), Err(EgressError::InvalidAllowEntry(bad.to_owned())), "{bad}");
        }
        assert!(EgressAllowlist::parse("").unwrap().is_empty());
    }
}
