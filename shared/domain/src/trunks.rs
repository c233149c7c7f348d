//! SIP trunks as the operator writes them: where an org's phone calls come from (source
//! networks, or digest credentials) and which of its numbers they carry. The rules here are
//! what a trunk must satisfy before it is stored; the SIP edge identifies an INVITE's trunk
//! by them.

use crate::agent::ValidationIssue;
use crate::PhoneNumber;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Most source networks one trunk lists.
pub const MAX_SOURCE_NETWORKS: usize = 50;
/// Most numbers one trunk carries.
pub const MAX_TRUNK_NUMBERS: usize = 1_000;
/// Most trunks a platform holds: the SIP edge keeps them all in memory.
pub const MAX_TRUNKS: usize = 1_000;

/// A network in CIDR form (`185.71.76.0/27`, `2a02:5180::/32`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceNetwork {
    address: IpAddr,
    prefix: u8,
}

impl SourceNetwork {
    /// Parses `addr/prefix` or a bare address. A network of every address (`/0`) is refused:
    /// a trunk open to the internet would let anyone place calls billed to its org.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (address, prefix) = match raw.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| format!("{raw:?} is not an IP address or network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{raw:?}: bad prefix length"))?
            }
        };
        if prefix == 0 {
            return Err(format!("{raw:?} is every address; list the trunk provider's networks"));
        }
        Ok(Self { address: canonical(address), prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The port a SIP address without one means (RFC 3261 §19.1.2, UDP and TCP).
pub const DEFAULT_SIP_PORT: u16 = 5060;
/// Longest SIP address accepted: a full DNS name (253) and a port.
pub const MAX_SIP_ADDRESS_LEN: usize = 260;

/// Where a trunk takes SIP requests, `host` or `host:port` (an IPv6 address in brackets when
/// a port follows): golos sends the trunk's OPTIONS health checks there. The host is an IP
/// address or a DNS name; there is no scheme, user part or parameter, because the address is
/// only ever a transport destination, never a URI golos would forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipAddress {
    host: String,
    port: u16,
}

impl SipAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_SIP_ADDRESS_LEN {
            return Err(format!("1-{MAX_SIP_ADDRESS_LEN} characters"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("no spaces or control characters".into());
        }
        if raw.contains('@') {
            return Err("no user part: write host or host:port".into());
        }
        if raw.contains("://")
            || ["sip:", "sips:"].iter().any(|s| raw.len() > s.len() && raw[..s.len()].eq_ignore_ascii_case(s))
        {
            return Err("no scheme: write host or host:port".into());
        }
        if raw.contains(['/', '?', ';', '#']) {
            return Err("no path or parameters: write host or host:port".into());
        }
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or("an IPv6 address in brackets needs its closing ]")?;
            let v6: Ipv6Addr = v6.parse().map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("after ] comes :port or nothing")?),
            };
            (v6.to_string(), port)
        } else if raw.matches(':').count() > 1 {
            // A bare IPv6 address: it cannot carry a port without brackets.
            let v6: Ipv6Addr =
                raw.parse().map_err(|_| "an IPv6 address with a port goes in brackets: [2001:db8::1]:5060")?;
            (v6.to_string(), None)
        } else {
            match raw.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (raw.to_owned(), None),
            }
        };
        let port = match port {
            None => DEFAULT_SIP_PORT,
            Some(p) => {
                p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{p:?} is not a port (1-65535)"))?
            }
        };
        match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                return Err(format!("{ip} is not an address a trunk answers on"));
            }
            Ok(_) => {}
            Err(_) if is_dns_name(&host) => {}
            Err(_) => return Err(format!("{host:?} is not an IP address or a DNS name")),
        }
        Ok(Self { host: host.to_ascii_lowercase(), port })
    }

    /// The IP address or DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub const fn port(&self) -> u16 {
        self.port
    }
}

/// `host:port`, brackets around an IPv6 address: what `parse` takes back and a resolver reads.
impl fmt::Display for SipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A DNS name as RFC 1123 writes one: dot-separated labels of letters, digits and inner
/// hyphens, at most 63 characters each and 253 in all; not all digits (that would be a
/// mistyped IPv4 address).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A digest username: what a trunk sends in `Authorization: Digest username=…`.
pub fn is_digest_username(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// What the operator sends for a trunk, checked field by field.
#[derive(Debug, Clone, Default)]
pub struct TrunkSpec<'a> {
    pub name: &'a str,
    pub source_networks: &'a [String],
    pub digest_username: Option<&'a str>,
    /// Whether a digest password is (or stays) set.
    pub has_digest_password: bool,
    pub numbers: &'a [String],
    /// Where golos sends OPTIONS health checks; `None`: the trunk is not probed.
    pub sip_address: Option<&'a str>,
}

impl TrunkSpec<'_> {
    /// Every problem, with its field; the parsed numbers when there is none.
    pub fn validate(&self) -> Result<Vec<PhoneNumber>, Vec<ValidationIssue>> {
        let mut issues = Vec::new();
        let mut issue = |field: String, code: &'static str, message: String| {
            issues.push(ValidationIssue { field, code, message });
        };
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            issue("name".into(), "invalid_length", "name must be 1-100 characters".into());
        }
        if self.source_networks.len() > MAX_SOURCE_NETWORKS {
            issue("source_networks".into(), "too_many", format!("at most {MAX_SOURCE_NETWORKS} networks"));
        }
        for (i, network) in self.source_networks.iter().enumerate().take(MAX_SOURCE_NETWORKS) {
            if let Err(message) = SourceNetwork::parse(network) {
                issue(format!("source_networks[{i}]"), "invalid_network", message);
            }
        }
        match self.digest_username {
            Some(name) if !is_digest_username(name) => {
                issue("digest_username".into(), "invalid_username", "1-64 of [A-Za-z0-9._+-]".into());
            }
            Some(_) if !self.has_digest_password => {
                issue("digest_password".into(), "required", "a digest username needs its password".into());
            }
            _ => {}
        }
        if self.source_networks.is_empty() && self.digest_username.is_none() {
            issue(
                "source_networks".into(),
                "no_identification",
                "a trunk is identified by its source networks, its digest credentials, or both".into(),
            );
        }
        if let Some(Err(message)) = self.sip_address.map(SipAddress::parse) {
            issue("sip_address".into(), "invalid_sip_address", message);
        }
        if self.numbers.len() > MAX_TRUNK_NUMBERS {
            issue("numbers".into(), "too_many", format!("at most {MAX_TRUNK_NUMBERS} numbers"));
        }
        let mut numbers = Vec::new();
        for (i, raw) in self.numbers.iter().enumerate().take(MAX_TRUNK_NUMBERS) {
            match PhoneNumber::parse(raw) {
                Ok(number) if !numbers.contains(&number) => numbers.push(number),
                Ok(_) => issue(format!("numbers[{i}]"), "duplicate", "listed twice".into()),
                // The message does not repeat the number: validation answers are logged.
                Err(_) => issue(format!("numbers[{i}]"), "invalid_phone_number", "not an E.164 number".into()),
            }
        }
        if issues.is_empty() {
            Ok(numbers)
        } else {
            Err(issues)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_contain() {
        let net = SourceNetwork::parse("185.71.76.0/27").unwrap();
        assert!(net.contains("185.71.76.31".parse().unwrap()));
        assert!(!net.contains("185.71.76.32".parse().unwrap()));
        assert!(net.contains("::ffff:185.71.76.1".parse().unwrap()), "IPv4-mapped counts");
        let host = SourceNetwork::parse("10.0.0.7").unwrap();
        assert!(host.contains("10.0.0.7".parse().unwrap()) && !host.contains("10.0.0.8".parse().unwrap()));
        let v6 = SourceNetwork::parse("2a02:5180::/32").unwrap();
        assert!(v6.contains("2a02:5180::1".parse().unwrap()));
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.0/33", "example.org", "10.0.0.0/x", ""] {
            assert!(SourceNetwork::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trunk_needs_a_way_to_be_identified_and_valid_fields() {
        let networks = vec!["185.71.76.0/27".to_owned()];
        let numbers = vec!["+74951234567".to_owned()];
        let ok = TrunkSpec { name: "Exolve", source_networks: &networks, numbers: &numbers, ..Default::default() };
        assert_eq!(ok.validate().unwrap().len(), 1);
        let none = TrunkSpec { name: "x", ..Default::default() };
        assert_eq!(none.validate().unwrap_err()[0].code, "no_identification");
        let digest_only =
            TrunkSpec { name: "x", digest_username: Some("golos"), has_digest_password: true, ..Default::default() };
        assert!(digest_only.validate().is_ok());
        let no_password = TrunkSpec { name: "x", digest_username: Some("golos"), ..Default::default() };
        assert_eq!(no_password.validate().unwrap_err()[0].field, "digest_password");
        let twice = vec!["+74951234567".to_owned(), "+7 495 123-45-67".to_owned(), "12".to_owned()];
        let issues = TrunkSpec { name: "x", source_networks: &networks, numbers: &twice, ..Default::default() }
            .validate()
            .unwrap_err();
        assert_eq!(issues.iter().map(|i| i.code).collect::<Vec<_>>(), ["duplicate", "invalid_phone_number"]);
        let probed = TrunkSpec { sip_address: Some("sip.exolve.ru"), ..ok.clone() };
        assert!(probed.validate().is_ok());
        let bad = TrunkSpec { sip_address: Some("user@sip.exolve.ru"), ..ok };
        let issues = bad.validate().unwrap_err();
        assert_eq!((issues[0].field.as_str(), issues[0].code), ("sip_address", "invalid_sip_address"));
    }

    #[test]
    fn sip_addresses_are_hosts_with_an_optional_port() {
        let text = |raw: &str| SipAddress::parse(raw).map(|a| a.to_string());
        assert_eq!(text("185.71.76.10").unwrap(), "185.71.76.10:5060", "the default port");
        assert_eq!(text("185.71.76.10:5080").unwrap(), "185.71.76.10:5080");
        assert_eq!(text("SIP.Exolve.ru").unwrap(), "sip.exolve.ru:5060", "names are case-insensitive");
        assert_eq!(text("trunk-1.example.org.:5061").unwrap(), "trunk-1.example.org.:5061");
        assert_eq!(text("[2a02:5180::1]:5062").unwrap(), "[2a02:5180::1]:5062");
        assert_eq!(text("2a02:5180::1").unwrap(), "[2a02:5180::1]:5060");
        assert_eq!(text("[::1]").unwrap(), "[::1]:5060");
        let address = SipAddress::parse("10.0.0.7:5070").unwrap();
        assert_eq!((address.host(), address.port()), ("10.0.0.7", 5070));
        assert_eq!(SipAddress::parse(&address.to_string()), Ok(address), "its text parses back to it");
        let long = format!("{}.ru", "a".repeat(MAX_SIP_ADDRESS_LEN));
        for bad in [
            "",
            " sip.exolve.ru",
            "sip.exolve .ru",
            "golos@sip.exolve.ru",
            "sip:sip.exolve.ru",
            "sips:x.ru",
            "udp://x.ru",
            "x.ru;transport=tcp",
            "x.ru/path",
            "x.ru:0",
            "x.ru:65536",
            "x.ru:port",
            "x.ru:",
            "0.0.0.0",
            "[::]:5060",
            "224.0.0.1",
            "2a02::1:5060:x",
            "[2a02::1",
            "[2a02::1]5060",
            "-x.ru",
            "x_y.ru",
            "1.2.3",
            "..",
            &long,
        ] {
            assert!(SipAddress::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
