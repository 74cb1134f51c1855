//! Layer 5, part 4: what every container shares, and its addresses.
//!
//! lab0, its subnet, lab's iptables chains and `ip_forward` belong to no single
//! container: the first container makes them, the last one removes them
//! (`teardown.rs`). Each container's address is reserved in its state directory
//! under a lock before anything is made, so two containers never take the same
//! one, and the last to leave knows that it is the last. Next: `teardown.rs`.

use super::iptables::*;
use super::{Options, BRIDGE, FIRST_SUBNET};
use crate::netlink::Netlink;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// An IPv4 subnet: its first address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let usage = || format!("{s:?} is not a subnet: write it like 10.200.0.0/24");
        let (ip, prefix) = s.split_once('/').ok_or_else(usage)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| usage())?;
        let prefix: u8 = prefix.parse().map_err(|_| usage())?;
        if !(8..=29).contains(&prefix) {
            return Err(format!(
                "{s}: use a prefix from /8 to /29 (a gateway and a few containers must fit)"
            ));
        }
        let net = Subnet {
            network: Ipv4Addr::from(u32::from(ip) & mask(prefix)),
            prefix,
        };
        if net.network != ip {
            return Err(format!(
                "{s} has host bits set: did you mean {}/{prefix}?",
                net.network
            ));
        }
        Ok(net)
    }
    /// The Nth address of the subnet (1: the gateway, 2 and up: containers).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }
    /// How many container addresses it holds (without network, gateway, broadcast).
    fn capacity(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 3
    }
    pub(super) fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }
    fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(p) == u32::from(other.network) & mask(p)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

pub(super) fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// A host port forwarded to a container port (TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    pub host: u16,
    pub container: u16,
}

impl Publish {
    pub fn parse(s: &str) -> Result<Publish, String> {
        let usage = || format!("{s:?}: write HOSTPORT:CONTAINERPORT, like 8080:80");
        let (h, c) = s.split_once(':').ok_or_else(usage)?;
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(usage);
        Ok(Publish {
            host: port(h)?,
            container: port(c)?,
        })
    }
}

pub(super) fn default_subnet() -> Subnet {
    let [a, b, c] = FIRST_SUBNET;
    Subnet {
        network: Ipv4Addr::new(a, b, c, 0),
        prefix: 24,
    }
}

// ── Addresses and shared state ─────────────────────────────────────────────────

/// lab's network lock: held while reserving an address and while changing what
/// containers share, so that the last container leaving never takes lab0 away
/// from one arriving.
pub(super) fn lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    crate::engine::state::lock("network")
}

/// Is lab0 used by anything but the container being torn down: another running
/// container of lab (its address is reserved), or a port still on the bridge
/// (a container made by `lab script`)? The veths of containers that have just
/// left are on it for a few more milliseconds, until the kernel has removed
/// their namespaces: they are waited for (at most 2 s), but for `own`, the
/// leaving container's, which is not counted.
pub(super) fn in_use(nl: &mut Netlink, leaving: &str, own: Option<&str>) -> Result<bool> {
    if !crate::engine::state::any_live(|d| {
        (!d.ends_with(leaving) || leaving.is_empty()) && reserved(d).is_some()
    }) {
        let Some(bridge) = nl.link(BRIDGE)? else {
            return Ok(false);
        };
        let others = |l: &str| l.starts_with("lab-veth") && Some(l) != own;
        wait_until_gone(nl, others)?;
        return Ok(nl
            .links()?
            .iter()
            .any(|l| l.master == Some(bridge.index) && Some(l.name.as_str()) != own));
    }
    Ok(true)
}

/// Wait until no link whose name matches is left (at most 2 s). Returns whether
/// they went.
pub(super) fn wait_until_gone(nl: &mut Netlink, matches: impl Fn(&str) -> bool) -> Result<bool> {
    let start = std::time::Instant::now();
    while nl.links()?.iter().any(|l| matches(&l.name)) {
        if start.elapsed() >= std::time::Duration::from_secs(2) {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    Ok(true)
}

/// After exit, for the checks: wait until the kernel has removed the veth of the
/// container that had `address` (at most 2 s).
pub(super) fn wait_for_veth_gone(address: &str) {
    if let (Some(veth), Ok(mut nl)) = (own_veth(address), Netlink::open()) {
        let _ = wait_until_gone(&mut nl, |l| l == veth);
    }
}

/// The address a container's state holds, with its subnet.
pub(super) fn reserved(dir: &Path) -> Option<(Ipv4Addr, Subnet)> {
    // One read: a start reads this of every running container.
    let text = crate::sys::read_small(&dir.join("address"))?;
    let (ip, prefix) = text.trim().split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    Some((
        ip,
        Subnet {
            network: Ipv4Addr::from(u32::from(ip) & mask(prefix)),
            prefix,
        },
    ))
}

/// Before a container of step 5 is built: make sure it can be (iptables, the
/// bridge, the subnet, the ports), then reserve its address in its state
/// directory. Nothing is made on the host yet.
pub(super) fn reserve(options: &mut Options, claim: &crate::engine::state::Claim) -> Result<()> {
    let claim_dir = &claim.dir;
    iptables_path()?;
    let _lock = lock()?;
    let mut nl = Netlink::open()?;
    let existing = bridge_subnet_with(&mut nl)?;
    let subnet = match (options.subnet, existing) {
        (Some(asked), Some(has)) if asked != has => bail!(
            "{BRIDGE} already uses subnet {has}, not {asked}: leave out --subnet, or stop lab's containers and run sudo lab clean first"
        ),
        (_, Some(has)) => has,
        (Some(asked), None) => {
            if let Some(r) = colliding_route(&mut nl, &asked)? {
                bail!("subnet {asked} is taken: the host has a route to {r}. Choose another --subnet");
            }
            asked
        }
        (None, None) => free_subnet(Some(&mut nl))?,
    };
    let others = crate::engine::state::containers_holding_addresses(&claim.seen_running);
    for p in &options.publish {
        if options.publish.iter().filter(|q| q.host == p.host).count() > 1 {
            bail!("port {} is published twice", p.host);
        }
        for dir in &others {
            let theirs = std::fs::read_to_string(dir.join("published")).unwrap_or_default();
            if theirs
                .lines()
                .filter_map(|l| Publish::parse(l).ok())
                .any(|q| q.host == p.host)
            {
                let name = dir.file_name().unwrap_or_default().to_string_lossy();
                bail!(
                    "port {} is already published by container {name}: choose another host port",
                    p.host
                );
            }
        }
        // A program of the host listening on it would lose its traffic to the DNAT rule.
        if std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, p.host)).is_err() {
            bail!(
                "port {} is in use on the host (a program listens on it): choose another host port",
                p.host
            );
        }
    }
    let address = free_address(&mut nl, subnet, &others, claim_dir)?
        .with_context(|| format!("no free address left in {subnet}"))?;
    std::fs::write(
        claim_dir.join("address"),
        format!("{address}/{}\n", subnet.prefix),
    )?;
    let ports: String = options
        .publish
        .iter()
        .map(|p| format!("{}:{}\n", p.host, p.container))
        .collect();
    std::fs::write(claim_dir.join("published"), ports)?;
    options.subnet = Some(subnet);
    options.address = Some(address);
    Ok(())
}

/// The first container address of `subnet` that no running container of lab
/// holds and whose veth is not on the host (without reserving it).
pub(super) fn first_free_address(subnet: Subnet) -> Ipv4Addr {
    let others = crate::engine::state::live_containers();
    Netlink::open()
        .and_then(|mut nl| free_address(&mut nl, subnet, &others, Path::new("")))
        .ok()
        .flatten()
        .unwrap_or(subnet.host(2))
}

/// The first container address of `subnet` that none of the containers `others`
/// (but the one in `own_dir`) holds, and whose veth is not on the host: a
/// container that has just left keeps it until the kernel has removed its
/// namespace.
fn free_address(
    nl: &mut Netlink,
    subnet: Subnet,
    others: &[PathBuf],
    own_dir: &Path,
) -> Result<Option<Ipv4Addr>> {
    let taken: Vec<Ipv4Addr> = others
        .iter()
        .filter(|d| d.as_path() != own_dir)
        .filter_map(|d| reserved(d).map(|(a, _)| a))
        .collect();
    // Asked by name, one address at a time: usually the first free one has no
    // veth left, and a dump of every link grows with the containers running.
    for a in (2..2 + subnet.capacity()).map(|n| subnet.host(n)) {
        if !taken.contains(&a) && nl.link(&host_veth(a, subnet))?.is_none() {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

/// The subnet of lab0's address, if lab0 exists and has one.
pub(super) fn bridge_subnet() -> Result<Option<Subnet>> {
    bridge_subnet_with(&mut Netlink::open()?)
}

fn bridge_subnet_with(nl: &mut Netlink) -> Result<Option<Subnet>> {
    let Some(bridge) = nl.link(BRIDGE)? else {
        return Ok(None);
    };
    Ok(nl
        .addresses()?
        .into_iter()
        .find(|a| a.index == bridge.index)
        .map(|a| Subnet {
            network: Ipv4Addr::from(u32::from(a.ip) & mask(a.prefix)),
            prefix: a.prefix,
        }))
}

/// A route of the host that covers part of `subnet` (the default route aside).
fn colliding_route(nl: &mut Netlink, subnet: &Subnet) -> Result<Option<Subnet>> {
    Ok(nl
        .routes()?
        .into_iter()
        .filter(|r| r.prefix > 0)
        .map(|r| Subnet {
            network: r.dst,
            prefix: r.prefix,
        })
        .find(|r| r.overlaps(subnet)))
}

/// The first of 10.200.0.0/24, 10.200.1.0/24, ... that no route of the host covers
/// (a VM with Docker has 172.17.0.0/16 on docker0, a VPN may have 10.0.0.0/8).
pub(super) fn free_subnet(nl: Option<&mut Netlink>) -> Result<Subnet> {
    let mut own;
    let nl = match nl {
        Some(nl) => nl,
        None => {
            own = Netlink::open()?;
            &mut own
        }
    };
    for third in 0..=255u8 {
        let [a, b, _] = FIRST_SUBNET;
        let candidate = Subnet {
            network: Ipv4Addr::new(a, b, third, 0),
            prefix: 24,
        };
        if colliding_route(nl, &candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    bail!("every subnet from 10.200.0.0/24 to 10.200.255.0/24 is taken by a route: choose one with --subnet")
}

/// The interface of the host's default route: where NAT sends packets out.
pub(super) fn uplink() -> Result<Option<String>> {
    let mut nl = Netlink::open()?;
    let Some(index) = nl
        .routes()?
        .into_iter()
        .find(|r| r.prefix == 0)
        .and_then(|r| r.oif)
    else {
        return Ok(None);
    };
    Ok(nl
        .links()?
        .into_iter()
        .find(|l| l.index == index)
        .map(|l| l.name))
}

/// The host end of the veth pair of the container with this address
/// (`10.200.0.2/24` has lab-veth2).
pub(super) fn own_veth(address: &str) -> Option<String> {
    let (ip, prefix) = address.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let network = Ipv4Addr::from(u32::from(ip) & mask(prefix));
    Some(host_veth(ip, Subnet { network, prefix }))
}

/// The host's end of the veth pair of the container with this address, named
/// after its host number (10.200.0.2 has lab-veth2).
pub(super) fn host_veth(address: Ipv4Addr, subnet: Subnet) -> String {
    let n = u32::from(address) - u32::from(subnet.network);
    format!("lab-veth{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn subnets_parse_and_refuse_host_bits() {
        let s = Subnet::parse("10.200.3.0/24").unwrap();
        assert_eq!(s.host(1), Ipv4Addr::new(10, 200, 3, 1));
        assert_eq!(s.capacity(), 253);
        assert!(Subnet::parse("10.200.3.7/24")
            .unwrap_err()
            .contains("10.200.3.0/24"));
        assert!(Subnet::parse("10.200.3.0/31").is_err());
        assert!(Subnet::parse("banana").is_err());
    }

    #[test]
    fn overlapping_subnets_are_found_both_ways() {
        let docker = Subnet::parse("172.17.0.0/16").unwrap();
        assert!(docker.overlaps(&Subnet::parse("172.17.5.0/24").unwrap()));
        assert!(Subnet::parse("172.17.5.0/24").unwrap().overlaps(&docker));
        assert!(!docker.overlaps(&Subnet::parse("10.200.0.0/24").unwrap()));
    }

    #[test]
    fn publish_parses_two_ports() {
        assert_eq!(
            Publish::parse("8080:80"),
            Ok(Publish {
                host: 8080,
                container: 80
            })
        );
        assert!(Publish::parse("8080").is_err());
        assert!(Publish::parse("0:80").is_err());
        assert!(Publish::parse("70000:80").is_err());
    }
}
