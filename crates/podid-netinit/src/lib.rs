//! `podid agent init`: puts the agent's link-local addresses on the node (a dummy link
//! `pod-id-link0` with `169.254.170.23/32` and `fd00:ec2::23/128`), as the stock agent's init does.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

/// The link the stock agent uses.
pub const LINK_NAME: &str = "pod-id-link0";
/// The agent's IPv4 address.
pub const IPV4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 170, 23));
/// The agent's IPv6 address, `fd00:ec2::23`.
pub const IPV6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23));

const EPERM: i32 = 1;
const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;

/// Why the addresses could not be put in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The process may not change the network configuration.
    #[error("permission denied: changing links and addresses needs CAP_NET_ADMIN (run as root or add the NET_ADMIN capability to the init container)")]
    PermissionDenied,
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("{what} failed")]
    Netlink {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// The link to hold the addresses is missing after all.
    #[error("link {0} not found")]
    LinkMissing(String),
}

/// What one address's set-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressOutcome {
    /// It was already there.
    Present,
    /// It was added now.
    Added,
    /// It could not be added (IPv6 only; the reason is given).
    Failed(String),
}

/// What `init` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The link holding the addresses (`pod-id-link0`, or `lo` as a fallback).
    pub link: String,
    /// Whether the link was created now.
    pub link_created: bool,
    /// Whether the dummy driver was missing and `lo` was used instead.
    pub fell_back_to_loopback: bool,
    /// Each address and what happened to it.
    pub addresses: Vec<(IpAddr, AddressOutcome)>,
}

impl InitReport {
    /// Whether anything was changed.
    pub fn changed(&self) -> bool {
        self.link_created
            || self
                .addresses
                .iter()
                .any(|(_, o)| *o == AddressOutcome::Added)
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn failed(what: impl Into<String>, source: rtnetlink::Error) -> InitError {
    if errno(&source) == Some(EPERM) {
        InitError::PermissionDenied
    } else {
        InitError::Netlink {
            what: what.into(),
            source,
        }
    }
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, InitError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers ENODEV for an unknown name.
        Err(e) if errno(&e) == Some(19) => Ok(None),
        Err(e) => Err(failed(format!("looking up link {name}"), e)),
    }
}

async fn addresses_on(handle: &Handle, index: u32) -> Result<Vec<IpAddr>, InitError> {
    let mut found = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| failed("listing addresses", e))?
    {
        if msg.header.index != index {
            continue;
        }
        for attr in msg.attributes {
            if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = attr {
                found.push(ip);
            }
        }
    }
    Ok(found)
}

/// Puts [`IPV4`] and [`IPV6`] on `pod-id-link0` (created as a dummy link if
/// needed, or `lo` without a dummy driver) and brings the link up.
///
/// Idempotent: what is already there is left alone, so a second run changes
/// nothing. Where the kernel has no dummy driver the addresses go on `lo`
/// instead. IPv6 failures are reported but not fatal (nodes without IPv6).
/// Without CAP_NET_ADMIN it fails with [`InitError::PermissionDenied`].
pub async fn ensure_agent_addresses() -> Result<InitReport, InitError> {
    ensure_addresses(LINK_NAME, &[IPV4, IPV6]).await
}

/// As [`ensure_agent_addresses`], for any link name and addresses (host
/// routes: /32 and /128).
pub async fn ensure_addresses(
    link_name: &str,
    addresses: &[IpAddr],
) -> Result<InitReport, InitError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(InitError::Socket)?;
    let conn = tokio::spawn(connection);
    let result = ensure_with(&handle, link_name, addresses).await;
    conn.abort();
    result
}

async fn ensure_with(
    handle: &Handle,
    link_name: &str,
    addresses: &[IpAddr],
) -> Result<InitReport, InitError> {
    let mut report = InitReport {
        link: link_name.to_owned(),
        link_created: false,
        fell_back_to_loopback: false,
        addresses: Vec::new(),
    };
    let index = match link_index(handle, link_name).await? {
        Some(i) => i,
        None => match handle
            .link()
            .add(LinkDummy::new(link_name).build())
            .execute()
            .await
        {
            Ok(()) => {
                report.link_created = true;
                link_index(handle, link_name)
                    .await?
                    .ok_or_else(|| InitError::LinkMissing(link_name.to_owned()))?
            }
            Err(e) if errno(&e) == Some(EEXIST) => link_index(handle, link_name)
                .await?
                .ok_or_else(|| InitError::LinkMissing(link_name.to_owned()))?,
            Err(e) if errno(&e) == Some(EOPNOTSUPP) => {
                tracing::warn!(
                    link = link_name,
                    "the kernel has no dummy link driver: putting the addresses on lo"
                );
                report.link = "lo".to_owned();
                report.fell_back_to_loopback = true;
                link_index(handle, "lo")
                    .await?
                    .ok_or_else(|| InitError::LinkMissing("lo".to_owned()))?
            }
            Err(e) => return Err(failed(format!("creating dummy link {link_name}"), e)),
        },
    };
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| failed(format!("bringing {} up", report.link), e))?;

    let present = addresses_on(handle, index).await?;
    for ip in addresses {
        if present.contains(ip) {
            report.addresses.push((*ip, AddressOutcome::Present));
            continue;
        }
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        match handle.address().add(index, *ip, prefix).execute().await {
            Ok(()) => report.addresses.push((*ip, AddressOutcome::Added)),
            Err(e) if errno(&e) == Some(EEXIST) => {
                report.addresses.push((*ip, AddressOutcome::Present))
            }
            Err(e) if ip.is_ipv6() && errno(&e) != Some(EPERM) => {
                // Nodes without IPv6 still serve IPv4: report, do not fail.
                tracing::warn!(address = %ip, error = %e, "could not add the IPv6 address");
                report
                    .addresses
                    .push((*ip, AddressOutcome::Failed(e.to_string())));
            }
            Err(e) => {
                return Err(failed(
                    format!("adding {ip}/{prefix} to {}", report.link),
                    e,
                ))
            }
        }
    }
    Ok(report)
}
