//! The addresses of `IpAddress`/`NotIpAddress`: IPv4 or IPv6, a plain address meaning a /32
//! or /128. Plain integer masks, so a match is two instructions.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                // `u8::from_str` would take a leading `+`; a prefix is digits only.
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (a, Some(p.parse::<u32>().ok()?))
            }
            None => (s, None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let p = prefix.unwrap_or(32);
                if p > 32 {
                    return None;
                }
                let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
                Some(Cidr::V4 { net: u32::from(a) & mask, mask })
            }
            IpAddr::V6(a) => {
                let p = prefix.unwrap_or(128);
                if p > 128 {
                    return None;
                }
                let mask = u128::MAX.checked_shl(128 - p).unwrap_or(0);
                Some(Cidr::V6 { net: u128::from(a) & mask, mask })
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

/// A request's address. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack
/// socket reports for an IPv4 peer) counts as the IPv4 address it carries.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(a) => Some(a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)),
        v4 => Some(v4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_v4_and_v6() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        let ip = |s: &str| parse_ip(s).unwrap();
        assert!(c("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(!c("127.0.0.2/32").contains(ip("127.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(c("10.1.2.3/8").contains(ip("10.9.9.9")), "host bits are masked off");
        assert!(c("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!c("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(!c("2001:db8::/32").contains(ip("10.0.0.1")));
        assert!(c("::/0").contains(ip("::1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        for bad in ["10.0.0.300/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "::/129", "x", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
