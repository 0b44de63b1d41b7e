//! Who the client is behind a load balancer. `X-Forwarded-For` and `X-Forwarded-Proto` are
//! believed only on connections from a configured trusted proxy (`trusted_proxies`); from
//! anyone else they are ignored, so a client cannot claim another `aws:SourceIp` or TLS.

use std::net::IpAddr;

use axum::http::HeaderMap;
use berth_iam::Cidr;

/// The client as every surface sees it: its address and the scheme it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub scheme: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Addresses or CIDR blocks (`10.0.0.0/8`, `::1`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                Cidr::parse(e.trim()).ok_or_else(|| format!("trusted_proxies: {e:?} is not an address or CIDR block"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request that arrived from `peer` over `scheme`. From a trusted proxy:
    /// the right-most `X-Forwarded-For` address that is not itself a trusted proxy (each proxy
    /// appends the address it was reached from, so what lies left of an untrusted hop is the
    /// client's own claim), and the last `X-Forwarded-Proto`.
    pub fn client(&self, peer: IpAddr, scheme: &'static str, headers: &HeaderMap) -> Client {
        if !self.trusts(peer) {
            return Client { ip: peer, scheme };
        }
        let hops: Vec<&str> = list_values(headers, "x-forwarded-for").collect();
        let mut ip = peer;
        for hop in hops.iter().rev() {
            let Some(addr) = parse_hop(hop) else { break };
            ip = addr;
            if !self.trusts(addr) {
                break;
            }
        }
        let proto = list_values(headers, "x-forwarded-proto").next_back();
        let scheme = match proto {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            _ => scheme,
        };
        Client { ip, scheme }
    }
}

/// The comma-separated values of every `name` header, in order.
fn list_values<'a>(headers: &'a HeaderMap, name: &'static str) -> impl DoubleEndedIterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// One `X-Forwarded-For` entry: an address, `[v6]`, or either with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), "http", &h), Client { ip: ip("203.0.113.7"), scheme: "https" });
        assert_eq!(proxies.client(ip("192.0.2.1"), "http", &h), Client { ip: ip("192.0.2.1"), scheme: "http" });
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), "http", &h).ip, ip("127.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), "https", &HeaderMap::new()),
            Client { ip: ip("10.1.2.3"), scheme: "https" }
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        // A client claiming 1.1.1.1, reaching an inner proxy 10.0.0.5 through the edge.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.9"), ("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), "http", &h).ip, ip("198.51.100.9"));
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.5")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), "http", &h).ip, ip("10.0.0.9"));
        let h = headers(&[("x-forwarded-for", "garbage, 198.51.100.9:4431"), ("x-forwarded-proto", "http, https")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), "http", &h), Client { ip: ip("198.51.100.9"), scheme: "https" });
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), "http", &h).ip, ip("2001:db8::1"));
        let h = headers(&[("x-forwarded-for", "198.51.100.9, nonsense")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), "http", &h).ip, ip("127.0.0.1"), "an unreadable hop stops the walk");
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
    }
}
