//! Which addresses are not the public internet. Pure: an `IpAddr` in, a class out.
//!
//! The list is what a tenant could use to make the shared worker reach its own network:
//! loopback, private and unique-local ranges, link-local (where cloud metadata lives), CGNAT,
//! multicast and broadcast, reserved and documentation ranges, and every IPv6 form that embeds
//! an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo), whose embedded address is
//! classified too, so `::ffff:169.254.169.254` is named for what it reaches.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused; `as_str` is the stable code used in errors and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Forbidden {
    /// 169.254.169.254 (AWS, GCP, Azure, OpenStack), fd00:ec2::254 (AWS IPv6),
    /// 100.100.100.200 (Alibaba), 168.63.129.16 (Azure wire server).
    CloudMetadata,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// fc00::/7.
    UniqueLocal,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// fec0::/10, deprecated but still routed inside some networks.
    SiteLocal,
    /// 100.64/10, carrier-grade NAT.
    SharedAddressSpace,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// 198.18/15.
    Benchmarking,
    /// 240/4, 192.0.0/24 (protocol assignments), 100::/64 (discard).
    Reserved,
    /// ::ffff:0:0/96 with a public IPv4 inside: no tenant needs to write one.
    Ipv4Mapped,
    /// ::/96 (deprecated IPv4-compatible) with a public IPv4 inside.
    Ipv4Compatible,
    /// 2001::/32: the tunnelled peer is not knowable from the address alone.
    Teredo,
}

impl Forbidden {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CloudMetadata => "cloud_metadata",
            Self::Loopback => "loopback",
            Self::Unspecified => "unspecified",
            Self::Private => "private",
            Self::UniqueLocal => "unique_local",
            Self::LinkLocal => "link_local",
            Self::SiteLocal => "site_local",
            Self::SharedAddressSpace => "shared_address_space",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
            Self::Ipv4Mapped => "ipv4_mapped",
            Self::Ipv4Compatible => "ipv4_compatible",
            Self::Teredo => "teredo",
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `None` for a public address golos may connect to; otherwise why not.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

pub fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    const METADATA: [Ipv4Addr; 3] =
        [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(100, 100, 100, 200), Ipv4Addr::new(168, 63, 129, 16)];
    let [a, b, c, _] = ip.octets();
    let class = if METADATA.contains(&ip) {
        Forbidden::CloudMetadata
    } else if a == 127 {
        Forbidden::Loopback
    } else if a == 0 {
        Forbidden::Unspecified
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        Forbidden::Private
    } else if a == 169 && b == 254 {
        Forbidden::LinkLocal
    } else if a == 100 && (64..=127).contains(&b) {
        Forbidden::SharedAddressSpace
    } else if ip == Ipv4Addr::BROADCAST {
        Forbidden::Broadcast
    } else if (224..=239).contains(&a) {
        Forbidden::Multicast
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) {
        Forbidden::Reserved
    } else if (a == 192 && b == 0 && c == 2) || (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113) {
        Forbidden::Documentation
    } else if a == 198 && (18..=19).contains(&b) {
        Forbidden::Benchmarking
    } else {
        return None;
    };
    Some(class)
}

pub fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
    let s = ip.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if ip == AWS_METADATA_V6 {
        return Some(Forbidden::CloudMetadata);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    // ::ffff:a.b.c.d and ::a.b.c.d: the socket connects to the IPv4 address inside.
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some(classify_v4(embedded).unwrap_or(Forbidden::Ipv4Mapped));
    }
    if s[..6] == [0; 6] {
        return Some(classify_v4(embedded).unwrap_or(Forbidden::Ipv4Compatible));
    }
    // 64:ff9b::/96 (NAT64) reaches the IPv4 address inside; on an IPv6-only network public
    // hosts resolve to it, so only the embedded address decides. 64:ff9b:1::/48 (local-use
    // NAT64) embeds it the same way in its last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1) {
        return classify_v4(embedded);
    }
    // 2002:AABB:CCDD::/48 (6to4) tunnels to AA.BB.CC.DD.
    if s[0] == 0x2002 {
        let relay = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return classify_v4(relay);
    }
    let class = match s[0] {
        _ if s[0] == 0x2001 && s[1] == 0 => Forbidden::Teredo,
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => Forbidden::Documentation,
        _ if s[0] == 0x0100 && s[1..4] == [0; 3] => Forbidden::Reserved,
        first if first & 0xfe00 == 0xfc00 => Forbidden::UniqueLocal,
        first if first & 0xffc0 == 0xfe80 => Forbidden::LinkLocal,
        first if first & 0xffc0 == 0xfec0 => Forbidden::SiteLocal,
        first if first & 0xff00 == 0xff00 => Forbidden::Multicast,
        _ => return None,
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class(text: &str) -> Option<Forbidden> {
        classify(text.parse().unwrap())
    }

    #[test]
    fn names_each_refused_range() {
        for (address, expected) in [
            ("169.254.169.254", Forbidden::CloudMetadata),
            ("100.100.100.200", Forbidden::CloudMetadata),
            ("168.63.129.16", Forbidden::CloudMetadata),
            ("fd00:ec2::254", Forbidden::CloudMetadata),
            ("127.0.0.1", Forbidden::Loopback),
            ("127.255.0.9", Forbidden::Loopback),
            ("::1", Forbidden::Loopback),
            ("0.0.0.0", Forbidden::Unspecified),
            ("0.1.2.3", Forbidden::Unspecified),
            ("::", Forbidden::Unspecified),
            ("10.1.2.3", Forbidden::Private),
            ("172.16.0.1", Forbidden::Private),
            ("172.31.255.255", Forbidden::Private),
            ("192.168.1.1", Forbidden::Private),
            ("fc00::1", Forbidden::UniqueLocal),
            ("fdab::1", Forbidden::UniqueLocal),
            ("169.254.1.1", Forbidden::LinkLocal),
            ("fe80::1", Forbidden::LinkLocal),
            ("febf::1", Forbidden::LinkLocal),
            ("fec0::1", Forbidden::SiteLocal),
            ("100.64.0.1", Forbidden::SharedAddressSpace),
            ("100.127.255.255", Forbidden::SharedAddressSpace),
            ("224.0.0.1", Forbidden::Multicast),
            ("ff02::1", Forbidden::Multicast),
            ("255.255.255.255", Forbidden::Broadcast),
            ("240.0.0.1", Forbidden::Reserved),
            ("192.0.0.8", Forbidden::Reserved),
            ("100::1", Forbidden::Reserved),
            ("192.0.2.1", Forbidden::Documentation),
            ("2001:db8::1", Forbidden::Documentation),
            ("198.18.0.1", Forbidden::Benchmarking),
            ("::ffff:127.0.0.1", Forbidden::Loopback),
            ("::ffff:169.254.169.254", Forbidden::CloudMetadata),
            ("::ffff:8.8.8.8", Forbidden::Ipv4Mapped),
            ("::127.0.0.1", Forbidden::Loopback),
            ("::8.8.8.8", Forbidden::Ipv4Compatible),
            ("64:ff9b::10.0.0.1", Forbidden::Private),
            ("64:ff9b::169.254.169.254", Forbidden::CloudMetadata),
            ("64:ff9b:1::7f00:1", Forbidden::Loopback),
            ("2002:7f00:1::", Forbidden::Loopback),
            ("2002:a9fe:a9fe::1", Forbidden::CloudMetadata),
            ("2001:0:4136:e378::1", Forbidden::Teredo),
        ] {
            assert_eq!(class(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "2a00:1450:4001:81b::200e",
            "2606:4700::1111",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert_eq!(class(address), None, "{address}");
        }
    }

    fn v4_in(net: &'static str) -> impl Strategy<Value = Ipv4Addr> {
        let net: ipnet::Ipv4Net = net.parse().unwrap();
        let (base, span) = (u32::from(net.network()), u32::MAX >> net.prefix_len());
        (0..=span).prop_map(move |offset| Ipv4Addr::from(base | offset))
    }

    fn forbidden_v4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            v4_in("127.0.0.0/8"),
            v4_in("10.0.0.0/8"),
            v4_in("172.16.0.0/12"),
            v4_in("192.168.0.0/16"),
            v4_in("169.254.0.0/16"),
            v4_in("100.64.0.0/10"),
            v4_in("0.0.0.0/8"),
            v4_in("224.0.0.0/4"),
            v4_in("240.0.0.0/4"),
        ]
    }

    /// Every IPv6 form whose socket reaches this IPv4 address.
    fn embeddings(v4: Ipv4Addr) -> Vec<Ipv6Addr> {
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        vec![
            v4.to_ipv6_mapped(),
            v4.to_ipv6_compatible(),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
        ]
    }

    proptest! {
        #[test]
        fn every_embedded_form_of_a_forbidden_v4_is_forbidden(v4 in forbidden_v4()) {
            let direct = classify_v4(v4);
            prop_assert!(direct.is_some(), "{v4}");
            for v6 in embeddings(v4) {
                // Named for what it reaches (the zero-prefixed forms of 0.0.0.0/8 are `::`
                // itself or IPv4-compatible, both refused).
                let embedded = classify_v6(v6);
                prop_assert!(embedded.is_some(), "{v6} embeds {v4}");
                if !matches!(direct, Some(Forbidden::Unspecified)) {
                    prop_assert_eq!(embedded, direct, "{} embeds {}", v6, v4);
                }
            }
        }

        #[test]
        fn a_mapped_or_compatible_address_is_never_allowed(v4 in any::<u32>().prop_map(Ipv4Addr::from)) {
            prop_assert!(classify_v6(v4.to_ipv6_mapped()).is_some());
            prop_assert!(classify_v6(v4.to_ipv6_compatible()).is_some());
        }

        #[test]
        fn unique_local_and_link_local_v6_are_forbidden(low in any::<u128>()) {
            let ula = Ipv6Addr::from((0xfc00_u128 << 112) | (low >> 7));
            let link = Ipv6Addr::from((0xfe80_u128 << 112) | (low >> 10));
            prop_assert_eq!(classify_v6(ula), Some(Forbidden::UniqueLocal));
            prop_assert_eq!(classify_v6(link), Some(Forbidden::LinkLocal));
        }
    }
}
