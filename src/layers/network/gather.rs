//! Layer 5, part 6: what the network checks gather on the host before the
//! probe joins the container (its address, its way out, the host's links),
//! and, for `lab inspect`, a network namespace in words. Next: `checks.rs`.

use super::bridge::*;
use super::BRIDGE;
use crate::netlink::Netlink;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;

/// What the network checks know, gathered on the host before the probe joins.
pub(super) struct ProbeNet {
    /// The host's interfaces: name and hardware address.
    pub host_links: Vec<(String, Vec<u8>)>,
    /// The container's address and prefix, read in its namespace.
    pub address: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    /// Other containers on lab0: name and address.
    pub others: Vec<(String, Ipv4Addr)>,
    pub publish: Vec<Publish>,
    /// The root filesystem's /etc/hosts as the host sees it.
    pub rootfs_hosts: String,
    /// The host's address a client would use to reach a published port.
    pub host_address: Option<Ipv4Addr>,
    /// The host's network namespace (lab's own), by inode.
    pub host_netns: Option<u64>,
    /// Another runtime's container: its way out is its default route's
    /// interface and gateway (not eth0 and lab0), and lab knows nothing of its
    /// neighbours or published ports.
    pub foreign: Option<String>,
}

/// Gather [`ProbeNet`] for the container of process `pid`.
pub(super) fn probe_net(
    pid: i32,
    name: Option<&str>,
    root: &Path,
    foreign: bool,
) -> Result<ProbeNet> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let addresses = nl.addresses()?;
    let bridge = links.iter().find(|l| l.name == BRIDGE);
    let mut gateway =
        bridge.and_then(|b| addresses.iter().find(|a| a.index == b.index).map(|a| a.ip));
    let address = in_netns(pid, |nl| {
        let eth0 = nl.index("eth0")?;
        Ok(nl
            .addresses()?
            .into_iter()
            .find(|a| a.index == eth0)
            .map(|a| (a.ip, a.prefix)))
    })
    .ok()
    .flatten();
    let (mut address, mut way_out) = (address, None);
    if foreign {
        // Its way out, read inside: the default route's interface and gateway.
        let out = in_netns(pid, |nl| {
            let Some(route) = nl.routes()?.into_iter().find(|r| r.prefix == 0) else {
                return Ok(None);
            };
            let link = nl.links()?.into_iter().find(|l| Some(l.index) == route.oif);
            let addr = nl
                .addresses()?
                .into_iter()
                .find(|a| Some(a.index) == route.oif)
                .map(|a| (a.ip, a.prefix));
            Ok(Some((link.map(|l| l.name), addr, route.gateway)))
        })
        .ok()
        .flatten();
        (address, gateway, way_out) = match out {
            Some((link, addr, via)) => (addr, via, link),
            None => (None, None, None),
        };
    }
    let mut others = Vec::new();
    let mut publish = Vec::new();
    let lab_containers = match foreign {
        true => vec![],
        false => crate::engine::state::live_containers(),
    };
    for dir in lab_containers {
        let theirs = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((ip, _)) = reserved(&dir) else {
            continue;
        };
        if Some(theirs.as_str()) == name || Some(ip) == address.map(|a| a.0) {
            if let Ok(t) = std::fs::read_to_string(dir.join("published")) {
                publish = t.lines().filter_map(|l| Publish::parse(l).ok()).collect();
            }
        } else {
            others.push((theirs, ip));
        }
    }
    // A client reaches a published port at one of the host's addresses: the
    // uplink's, else the gateway's.
    let uplink_index = nl
        .routes()?
        .into_iter()
        .find(|r| r.prefix == 0)
        .and_then(|r| r.oif);
    let host_address = uplink_index
        .and_then(|i| addresses.iter().find(|a| a.index == i).map(|a| a.ip))
        .or(gateway);
    Ok(ProbeNet {
        host_links: links
            .iter()
            .filter(|l| l.name != "lo")
            .map(|l| (l.name.clone(), l.mac.clone()))
            .collect(),
        address,
        gateway,
        others,
        publish,
        rootfs_hosts: std::fs::read_to_string(root.join("etc/hosts")).unwrap_or_default(),
        host_address,
        host_netns: crate::engine::check::ns_inode("self", "net"),
        foreign: foreign.then(|| way_out.unwrap_or_default()),
    })
}

/// For `lab inspect`: the interfaces of the network namespace of `pid` (name
/// and address), and its way out (the default route), in words.
pub fn links_and_way_out(pid: i32) -> (Vec<String>, Option<String>) {
    in_netns(pid, |nl| {
        let links = nl.links()?;
        let addresses = nl.addresses()?;
        let name = |i: Option<u32>| {
            links
                .iter()
                .find(|l| Some(l.index) == i)
                .map_or("?".to_string(), |l| l.name.clone())
        };
        let words = links
            .iter()
            .map(|l| {
                match addresses
                    .iter()
                    .find(|a| a.index == l.index && l.name != "lo")
                {
                    Some(a) => format!("{} {}/{}", l.name, a.ip, a.prefix),
                    None => l.name.clone(),
                }
            })
            .collect();
        let out = nl.routes()?.into_iter().find(|r| r.prefix == 0).map(|r| {
            format!(
                "default route via {} on {}",
                r.gateway.map_or("no gateway".into(), |g| g.to_string()),
                name(r.oif)
            )
        });
        Ok((words, out))
    })
    .unwrap_or_default()
}

/// Run `f` in the network namespace of process `pid`, on a thread of its own
/// (setns changes only the calling thread; lab's main thread stays on the host).
/// The thread is joined before this returns, so lab is single-threaded again.
pub(super) fn in_netns<T: Send>(
    pid: i32,
    f: impl FnOnce(&mut Netlink) -> Result<T> + Send,
) -> Result<T> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("opening /proc/{pid}/ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns into the container's network namespace")?;
            f(&mut Netlink::open()?)
        })
        .join()
        .unwrap_or_else(|_| bail!("the thread in the container's namespace panicked"))
    })
}
