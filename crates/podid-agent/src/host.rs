//! The DNS-rebinding guard: a request's `Host` must name one of the agent's
//! own addresses (any port, or none, like the stock agent).

use std::net::IpAddr;

/// The addresses a `Host` header may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGuard {
    allowed: Vec<IpAddr>,
}

impl HostGuard {
    /// Allows these addresses.
    pub fn new(allowed: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut allowed: Vec<IpAddr> = allowed.into_iter().collect();
        allowed.sort();
        allowed.dedup();
        HostGuard { allowed }
    }

    /// Whether `host` (a `Host` header's value) names an allowed address:
    /// `1.2.3.4`, `1.2.3.4:80`, `[fd00::23]`, `[fd00::23]:80` (an unbracketed
    /// IPv6 literal is tolerated, as the stock agent does).
    pub fn allows(&self, host: &str) -> bool {
        parse_host(host).is_some_and(|ip| self.allowed.contains(&ip))
    }
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// The IP address a `Host` value names, if it names one.
pub fn parse_host(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let (addr, port) = host.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> HostGuard {
        HostGuard::new([
            "169.254.170.23".parse().unwrap(),
            "fd00:ec2::23".parse().unwrap(),
        ])
    }

    #[test]
    fn own_addresses_pass_with_or_without_port() {
        let g = guard();
        assert!(g.allows("169.254.170.23"));
        assert!(g.allows("169.254.170.23:80"));
        assert!(g.allows("169.254.170.23:8080"));
        assert!(g.allows("[fd00:ec2::23]"));
        assert!(g.allows("[fd00:ec2::23]:80"));
        assert!(g.allows("[FD00:EC2:0::23]:80"));
        assert!(g.allows("fd00:ec2::23"));
    }

    #[test]
    fn other_hosts_fail() {
        let g = guard();
        for host in [
            "",
            "attacker.example",
            "attacker.example:80",
            "169.254.170.2",
            "169.254.170.23:",
            "169.254.170.23:99999",
            "169.254.170.23:80x",
            "169.254.170.23.nip.io",
            "[fd00:ec2::24]:80",
            "[fd00:ec2::23]x",
            "[fd00:ec2::23:80",
            "[169.254.170.23]",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(!g.allows(host), "{host} must be refused");
        }
        let loopback = HostGuard::new(["127.0.0.1".parse().unwrap()]);
        assert!(loopback.allows("127.0.0.1:41234"));
        assert!(!loopback.allows("localhost:41234"));
    }
}
