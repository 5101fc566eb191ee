//! Which addresses the host refuses to connect to: the special-purpose
//! ranges of the IANA IPv4 and IPv6 registries, including IPv6 forms that
//! embed an IPv4 address (mapped, compatible, translated `64:ff9b::/96`,
//! 6to4). Pure functions, no I/O.
//!
//! IP literals in URLs (decimal `2130706433`, hex `0x7f.1`, octal `0177.1`,
//! short `127.1`, bracketed IPv6) are normalised by the WHATWG URL parser
//! before they get here, so every spelling meets the same check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is refused, or `None` if it is a public unicast address.
pub(crate) fn blocked(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

/// Whether the `width`-bit address `ip` lies in `net/prefix`.
fn in_prefix(ip: u128, net: u128, prefix: u32, width: u32) -> bool {
    let shift = width - prefix;
    prefix == 0 || (ip >> shift) == (net >> shift)
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    in_prefix(
        u128::from(ip.to_bits()),
        u128::from(Ipv4Addr::from(net).to_bits()),
        prefix,
        32,
    )
}

/// IPv4 special-purpose ranges (RFC 6890 and the IANA registry).
const V4: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "this network (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
    (
        [100, 64, 0, 0],
        10,
        "shared address space, CGNAT (100.64.0.0/10)",
    ),
    ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
    (
        [169, 254, 0, 0],
        16,
        "link-local and cloud metadata (169.254.0.0/16)",
    ),
    ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
    // Azure's WireServer (host agent and metadata, reachable from every
    // Azure VM) sits on a public-looking address.
    (
        [168, 63, 129, 16],
        32,
        "cloud metadata, Azure WireServer (168.63.129.16/32)",
    ),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
    ([192, 31, 196, 0], 24, "AS112 (192.31.196.0/24)"),
    ([192, 52, 193, 0], 24, "AMT (192.52.193.0/24)"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
    ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
    ([192, 175, 48, 0], 24, "AS112 (192.175.48.0/24)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
    ([240, 0, 0, 0], 4, "reserved and broadcast (240.0.0.0/4)"),
];

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    V4.iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    in_prefix(ip.to_bits(), net.to_bits(), prefix, 128)
}

/// `a:b::` with the rest zero.
const fn v6(a: u16, b: u16, c: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some("unspecified (::/128)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1/128)");
    }
    // Forms that embed an IPv4 address: the embedded address decides, and
    // any blocked one is refused under its IPv6 spelling too.
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
        return blocked_v4(low_v4).map(|_| "IPv4-mapped form of a blocked address (::ffff:0:0/96)");
    }
    if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) {
        return Some("IPv4-compatible (::/96, deprecated)");
    }
    if in_v6(ip, v6(0x64, 0xff9b, 0), 96) {
        return blocked_v4(low_v4)
            .map(|_| "IPv4-translated form of a blocked address (64:ff9b::/96)");
    }
    if in_v6(ip, v6(0x2002, 0, 0), 16) {
        let embedded = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return blocked_v4(embedded).map(|_| "6to4 form of a blocked address (2002::/16)");
    }
    const V6: &[(Ipv6Addr, u32, &str)] = &[
        (
            v6(0x64, 0xff9b, 1),
            48,
            "local-use IPv4/IPv6 translation (64:ff9b:1::/48)",
        ),
        (v6(0x100, 0, 0), 64, "discard-only (100::/64)"),
        // Teredo (2001::/32) lies inside; its embedded addresses are
        // obfuscated, so the whole block is refused.
        (
            v6(0x2001, 0, 0),
            23,
            "IETF protocol assignments and Teredo (2001::/23)",
        ),
        (v6(0x2001, 0xdb8, 0), 32, "documentation (2001:db8::/32)"),
        (v6(0x3fff, 0, 0), 20, "documentation (3fff::/20)"),
        (v6(0x5f00, 0, 0), 16, "segment routing SIDs (5f00::/16)"),
        (v6(0xfc00, 0, 0), 7, "unique local, private (fc00::/7)"),
        (v6(0xfe80, 0, 0), 10, "link-local (fe80::/10)"),
        (v6(0xfec0, 0, 0), 10, "site-local, deprecated (fec0::/10)"),
        (v6(0xff00, 0, 0), 8, "multicast (ff00::/8)"),
    ];
    if let Some((_, _, why)) = V6.iter().find(|(net, prefix, _)| in_v6(ip, *net, *prefix)) {
        return Some(why);
    }
    if !in_v6(ip, v6(0x2000, 0, 0), 3) {
        return Some("not global unicast (outside 2000::/3)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::blocked;
    use std::net::IpAddr;

    fn is_blocked(s: &str) -> bool {
        blocked(s.parse::<IpAddr>().expect(s)).is_some()
    }

    #[test]
    fn ipv4_special_purpose_ranges_are_blocked() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "168.63.129.16",
            "::ffff:168.63.129.16",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_ipv4_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "168.63.129.15",
            "168.63.129.17",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!is_blocked(ip), "{ip} must pass");
        }
    }

    #[test]
    fn ipv6_special_purpose_ranges_are_blocked() {
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "3fff::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
        ] {
            assert!(is_blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_ipv6_and_embedded_public_ipv4_pass() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_blocked(ip), "{ip} must pass");
        }
    }
}
