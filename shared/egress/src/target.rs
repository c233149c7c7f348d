//! The checks a URL must pass before anything connects to it. Pure, so agent validation runs
//! them at write time; the `net` client runs them again before every request (the operator's
//! allowlist may have changed since), and the resolver checks every resolved address.

use crate::allow::{EgressAllowlist, HostRule};
use crate::classify::classify;
use crate::EgressError;
use url::{Host, Url};

/// Which schemes a URL may use: `https`/`wss` always, `http`/`ws` only to destinations the
/// operator allows (a tenant's plain-text traffic leaving the platform would be readable and
/// forgeable on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `https`, `http`: tools, LLM and TTS APIs, webhooks.
    Http,
    /// `wss`, `ws`: streaming STT.
    WebSocket,
    /// Either (a provider endpoint whose protocol the tier decides).
    Any,
}

impl Protocol {
    /// The scheme's protocol and whether it is encrypted; `None` for other schemes.
    fn of(scheme: &str) -> Option<(Self, bool)> {
        match scheme {
            "https" => Some((Self::Http, true)),
            "http" => Some((Self::Http, false)),
            "wss" => Some((Self::WebSocket, true)),
            "ws" => Some((Self::WebSocket, false)),
            _ => None,
        }
    }

    fn accepts(self, other: Self) -> bool {
        self == Self::Any || self == other
    }
}

/// Parses `url` and checks it against the policy: scheme, no userinfo, and a host that is not
/// an address of a forbidden class (unless the operator allows it). Names are not resolved
/// here; the connect-time resolver checks what they resolve to.
pub fn check_url(url: &str, protocol: Protocol, allow: &EgressAllowlist) -> Result<Url, EgressError> {
    let parsed = Url::parse(url).map_err(|e| EgressError::InvalidUrl(e.to_string()))?;
    check_parsed(&parsed, protocol, allow)?;
    Ok(parsed)
}

/// [`check_url`] on an already parsed URL.
pub fn check_parsed(url: &Url, protocol: Protocol, allow: &EgressAllowlist) -> Result<(), EgressError> {
    let scheme = url.scheme();
    let (_, encrypted) = Protocol::of(scheme)
        .filter(|(kind, _)| protocol.accepts(*kind))
        .ok_or_else(|| EgressError::Scheme(scheme.to_owned()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressError::Userinfo);
    }
    let port = url.port_or_known_default().ok_or_else(|| EgressError::InvalidUrl("no port".into()))?;
    let operator_allowed = match url.host().ok_or_else(|| EgressError::InvalidUrl("no host".into()))? {
        Host::Ipv4(ip) => check_ip(ip.into(), allow)?,
        Host::Ipv6(ip) => check_ip(ip.into(), allow)?,
        Host::Domain(name) => match allow.host_rule(name, port) {
            HostRule::Allowed => true,
            HostRule::NotListed => false,
            HostRule::OtherPortsOnly => return Err(EgressError::PortNotAllowed { host: name.to_owned(), port }),
        },
    };
    if !encrypted && !operator_allowed {
        return Err(EgressError::PlainText(scheme.to_owned()));
    }
    Ok(())
}

/// Whether the operator's allowlist covers the URL's destination itself: an allowed address
/// literal, or a name it lists on this port. Public destinations are not "operator allowed";
/// this is the test for what may carry the platform's own credentials or plain text.
pub fn is_operator_allowed(url: &Url, allow: &EgressAllowlist) -> bool {
    let port = url.port_or_known_default().unwrap_or_default();
    match url.host() {
        Some(Host::Ipv4(ip)) => allow.allows_ip(ip.into()),
        Some(Host::Ipv6(ip)) => allow.allows_ip(ip.into()),
        Some(Host::Domain(name)) => allow.host_rule(name, port) == HostRule::Allowed,
        None => false,
    }
}

/// Whether the operator allows the address explicitly (`true`), it is public (`false`), or
/// it is refused.
fn check_ip(ip: std::net::IpAddr, allow: &EgressAllowlist) -> Result<bool, EgressError> {
    if allow.allows_ip(ip) {
        return Ok(true);
    }
    match classify(ip) {
        Some(class) => Err(EgressError::Forbidden { destination: ip.to_string(), class }),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Forbidden;

    fn check(url: &str) -> Result<(), EgressError> {
        check_url(url, Protocol::Any, &EgressAllowlist::none()).map(|_| ())
    }

    #[test]
    fn public_https_and_wss_pass() {
        for url in
            ["https://api.openai.com/v1", "wss://api.deepgram.com", "https://8.8.8.8/x", "https://[2606:4700::1111]/"]
        {
            assert_eq!(check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn forbidden_literals_in_any_spelling_are_refused() {
        for (url, class) in [
            ("https://[::ffff:127.0.0.1]:8080/", Forbidden::Loopback),
            ("https://[::ffff:7f00:1]/", Forbidden::Loopback),
            ("http://169.254.169.254/latest/meta-data/", Forbidden::CloudMetadata),
            ("https://127.1/", Forbidden::Loopback),
            ("https://2130706433/", Forbidden::Loopback),
            ("https://0x7f.0.0.1/", Forbidden::Loopback),
            ("https://0/", Forbidden::Unspecified),
            ("wss://[fd00:ec2::254]/", Forbidden::CloudMetadata),
            ("https://10.0.0.1/", Forbidden::Private),
            ("https://[64:ff9b::a9fe:a9fe]/", Forbidden::CloudMetadata),
        ] {
            assert!(
                matches!(check(url), Err(EgressError::Forbidden { class: c, .. }) if c == class),
                "{url}: {:?}",
                check(url)
            );
        }
    }

    #[test]
    fn schemes_userinfo_and_plain_text() {
        assert_eq!(check("file:///etc/passwd"), Err(EgressError::Scheme("file".into())));
        assert_eq!(check("gopher://x.example/"), Err(EgressError::Scheme("gopher".into())));
        assert_eq!(
            check_url("wss://x.example/", Protocol::Http, &EgressAllowlist::none()).map(|_| ()),
            Err(EgressError::Scheme("wss".into()))
        );
        assert_eq!(check("https://user:pw@x.example/"), Err(EgressError::Userinfo));
        assert_eq!(check("https://user@x.example/"), Err(EgressError::Userinfo));
        assert_eq!(check("http://x.example/"), Err(EgressError::PlainText("http".into())));
        assert_eq!(check("ws://8.8.8.8/"), Err(EgressError::PlainText("ws".into())));
        assert!(matches!(check("not a url"), Err(EgressError::InvalidUrl(_))));
    }

    proptest::proptest! {
        /// However a tenant spells an address the URL parser reads as loopback, private or
        /// link-local (dotted, one integer, hex, mapped or compatible IPv6), it is refused.
        #[test]
        fn every_spelling_of_a_forbidden_address_is_refused(
            net in proptest::sample::select(vec![(127u32 << 24, 8u32), (10 << 24, 8), (0xa9fe_0000, 16), (0xc0a8_0000, 16), (0xac10_0000, 12)]),
            offset in proptest::prelude::any::<u32>(),
            spelling in 0usize..5,
        ) {
            let (base, prefix) = net;
            let ip = std::net::Ipv4Addr::from(base | (offset >> prefix));
            let host = match spelling {
                0 => ip.to_string(),
                1 => u32::from(ip).to_string(),
                2 => format!("0x{:x}", u32::from(ip)),
                3 => format!("[{}]", ip.to_ipv6_mapped()),
                _ => format!("[::ffff:{:x}:{:x}]", u32::from(ip) >> 16, u32::from(ip) & 0xffff),
            };
            let url = format!("https://{host}:8443/hook");
            let refused = check(&url);
            proptest::prop_assert!(matches!(refused, Err(EgressError::Forbidden { .. })), "{} {:?}", url, refused);
        }
    }

    #[test]
    fn the_operator_allowlist_opens_addresses_names_and_plain_text() {
        let allow = EgressAllowlist::parse("127.0.0.1/32,localhost:11434").unwrap();
        let check = |url: &str| check_url(url, Protocol::Any, &allow).map(|_| ());
        assert_eq!(check("http://127.0.0.1:9000/v1"), Ok(()));
        assert_eq!(check("ws://127.0.0.1:9000"), Ok(()));
        assert_eq!(check("http://localhost:11434/v1"), Ok(()));
        assert_eq!(
            check("https://localhost:22/"),
            Err(EgressError::PortNotAllowed { host: "localhost".into(), port: 22 })
        );
        // The mapped form of an allowed address is not that address.
        assert!(matches!(check("http://[::ffff:127.0.0.1]:9000/"), Err(EgressError::Forbidden { .. })));
        assert!(matches!(check("http://127.0.0.2/"), Err(EgressError::Forbidden { .. })));
    }
}
