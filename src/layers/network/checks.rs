//! Layer 5, part 7: the checks (what they gather first is in `gather.rs`).
//!
//! Inside checks run in the probe, which has joined the container's network
//! namespace; host checks run in lab. After exit, the host's links, routes,
//! iptables rules and `ip_forward` are compared with a snapshot taken before.

use super::bridge::*;
use super::gather::{in_netns, ProbeNet};
use super::iptables::*;
use super::ping::*;
use super::syscalls::IP_FORWARD;
use super::BRIDGE;
use crate::engine::check::{Before, Check, Kind, Outcome, Probe};
use crate::netlink::Netlink;
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

// ── The checks ─────────────────────────────────────────────────────────────────

pub(super) fn checks(_step: u8) -> Vec<Check> {
    vec![
        super::LAYER.check(
            "only lo and eth0 are visible inside",
            "Other interfaces are visible: the container shares the host's network namespace. Compare `ip link` inside and on the host.",
            Kind::Inside(only_lo_and_eth0),
        ),
        super::LAYER.check(
            "none of the host's interfaces is visible inside",
            "A host interface is visible inside: no network namespace (unshare --net). Compare `ip link` inside and on the host.",
            Kind::Inside(host_links_invisible),
        ),
        super::LAYER.check(
            "eth0 is up with the container's address and a default route via the gateway",
            "eth0 is missing, down, or has no address: the veth end was not moved in (ip link set PEER netns PID) or not configured. Look with `ip addr` and `ip route` inside.",
            Kind::Inside(eth0_configured),
        ),
        super::LAYER.check(
            "the gateway answers ping (lab0 on the host, for lab's)",
            "No answer from the gateway: lab0 is down, has no address, or the host's end of the veth is not on the bridge. Look with `ip -br link` and `bridge link` on the host.",
            Kind::Confined(gateway_answers),
        ),
        super::LAYER.check(
            "other containers on lab0 answer ping",
            "Another container does not answer: with br_netfilter loaded, bridged traffic passes iptables FORWARD, and Docker's DROP policy stops it unless LAB-FORWARD accepts it. Look with `iptables -S FORWARD`.",
            Kind::Confined(others_answer),
        ),
        super::LAYER.check(
            "/etc/hosts inside is the container's own; the root filesystem's is unchanged",
            "The container's /etc/hosts is missing or the root filesystem's was changed: the bind mount did not happen in the container's own mount table. Compare `cat /etc/hosts` inside with the root filesystem's.",
            Kind::Inside(own_etc_hosts),
        ),
        super::LAYER.check(
            "from the host, the container's address answers ping",
            "The host cannot reach the container: lab0 has no route to the subnet, or eth0 is down inside. Look with `ip route` on the host.",
            Kind::Host(container_answers),
        ),
        super::LAYER.check(
            "a published port reaches a server in the container",
            "The published port does not lead into the container: look at the DNAT rule (`iptables -t nat -S LAB-DNAT`) and the FORWARD rules (`iptables -S LAB-FORWARD`).",
            Kind::Host(published_port_reaches),
        ),
        super::LAYER.check(
            "after exit, the veth pair is gone",
            "A veth interface of lab is left on the host: remove it with `sudo ip link del lab-vethN`.",
            Kind::AfterExit(veth_gone),
        ),
        super::LAYER.check(
            "after exit, the host's links, routes, iptables rules and ip_forward are as before",
            "Something lab made is left on the host (while another container still runs, lab0 and its rules stay, as they should). `sudo lab clean` removes what lab left.",
            Kind::AfterExit(host_network_restored),
        ),
    ]
}

/// Without root, the network layer's part (a namespace with only lo, up).
pub(super) fn without_root() -> Vec<Check> {
    vec![super::LAYER.check(
        "without root: only lo inside, and it is up",
        "lo is down, or the container shares the host's network namespace: `ip link set lo up` did not run inside (without root, in the user namespace that owns the network namespace). Look with `ip link` inside.",
        Kind::Inside(only_lo_up),
    )]
}

fn only_lo_up(_p: &Probe) -> Outcome {
    match Netlink::open().and_then(|mut nl| nl.links()) {
        Ok(links) => {
            let seen: Vec<String> = links
                .iter()
                .map(|l| format!("{} {}", l.name, if l.up { "up" } else { "down" }))
                .collect();
            Outcome::from(seen == ["lo up"], format!("inside: {}", seen.join(", ")))
        }
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

fn net(p: &Probe) -> Result<&ProbeNet, Outcome> {
    p.data(super::LAYER.number)
}

fn only_lo_and_eth0(p: &Probe) -> Outcome {
    let foreign = p.maker.is_other();
    match Netlink::open().and_then(|mut nl| nl.links()) {
        Ok(links) => {
            let mut names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            names.sort();
            let detail = format!("inside: {}", names.join(", "));
            match foreign {
                // Another runtime names its link as it likes (eth0, host0):
                // lo and one way out.
                true => Outcome::from(
                    names.len() == 2 && names.contains(&"lo"),
                    match names.len() {
                        1 => {
                            format!("{detail}: no interface to the outside, as with --network none")
                        }
                        _ => detail,
                    },
                ),
                false => Outcome::from(names == ["eth0", "lo"], detail),
            }
        }
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

fn host_links_invisible(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
    if n.host_netns.is_some() && crate::engine::check::ns_inode("self", "net") == n.host_netns {
        return Outcome::Fail("the container is in the host's network namespace".into());
    }
    match Netlink::open().and_then(|mut nl| nl.links()) {
        Ok(links) => {
            let seen: Vec<&str> = links
                .iter()
                .filter(|l| {
                    n.host_links
                        .iter()
                        .any(|(name, mac)| *name == l.name && *mac == l.mac)
                })
                .map(|l| l.name.as_str())
                .collect();
            Outcome::from(
                seen.is_empty(),
                if seen.is_empty() {
                    format!(
                        "the host has {} interfaces besides lo; none of them is here",
                        n.host_links.len()
                    )
                } else {
                    format!("visible inside: {}", seen.join(", "))
                },
            )
        }
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

fn eth0_configured(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let wanted = match &n.foreign {
        Some(link) if link.is_empty() => {
            return Outcome::Fail("no default route inside: no way out".into())
        }
        Some(link) => link.as_str(),
        None => "eth0",
    };
    let result = (|| -> Result<Outcome> {
        let mut nl = Netlink::open()?;
        let Some(eth0) = nl.link(wanted)? else {
            return Ok(Outcome::Fail(format!("no {wanted} inside")));
        };
        let addr = nl.addresses()?.into_iter().find(|a| a.index == eth0.index);
        let route = nl.routes()?.into_iter().find(|r| r.prefix == 0);
        let via = route.as_ref().and_then(|r| r.gateway);
        let detail = format!(
            "{wanted} {}, {}, default via {}",
            if eth0.up { "up" } else { "down" },
            addr.as_ref()
                .map_or("no address".into(), |a| format!("{}/{}", a.ip, a.prefix)),
            via.map_or("nothing".into(), |g| g.to_string())
        );
        let in_subnet = match (&addr, n.gateway) {
            (Some(a), Some(gw)) => Subnet {
                network: Ipv4Addr::from(u32::from(gw) & mask(a.prefix)),
                prefix: a.prefix,
            }
            .contains(a.ip),
            _ => false,
        };
        Ok(Outcome::from(
            eth0.up && in_subnet && via.is_some() && via == n.gateway,
            detail,
        ))
    })();
    result.unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")))
}

fn gateway_answers(p: &Probe) -> Outcome {
    match net(p) {
        Ok(ProbeNet {
            gateway: Some(gw), ..
        }) => ping_outcome(*gw, "the gateway"),
        Ok(ProbeNet {
            foreign: Some(_), ..
        }) => Outcome::Fail("its default route names no gateway".into()),
        Ok(_) => Outcome::Fail(format!("the host has no {BRIDGE} with an address")),
        Err(o) => o,
    }
}

fn others_answer(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
    if n.foreign.is_some() {
        return Outcome::Skip(format!(
            "lab's own containers on {BRIDGE}: this container's neighbours are its runtime's"
        ));
    }
    if n.others.is_empty() {
        return Outcome::Skip("no other container is running: start one in a second terminal (sudo lab step 5) and run lab verify 5".into());
    }
    let mut lines = Vec::new();
    let mut ok = true;
    for (name, ip) in &n.others {
        match ping(*ip) {
            Ok(ms) => lines.push(format!("{name} {ip} answered in {ms:.1} ms")),
            Err(e) => {
                ok = false;
                lines.push(format!("{name} {ip}: {e:#}"));
            }
        }
    }
    Outcome::from(ok, lines.join("; "))
}

fn own_etc_hosts(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let inside = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let Some((ip, _)) = n.address else {
        return Outcome::Fail(match n.foreign {
            Some(_) => "no address on a way out".into(),
            None => "eth0 has no address".into(),
        });
    };
    let own = inside
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&ip.to_string()));
    let untouched = !n.rootfs_hosts.contains(&ip.to_string());
    Outcome::from(
        own && untouched,
        format!(
            "inside: {}; root filesystem's: {}",
            inside.lines().last().unwrap_or("(empty)"),
            if untouched {
                "without it"
            } else {
                "has it too"
            }
        ),
    )
}

fn container_answers(p: &Probe) -> Outcome {
    match net(p) {
        Ok(ProbeNet {
            address: Some((ip, _)),
            ..
        }) => ping_outcome(*ip, "the container"),
        Ok(ProbeNet {
            foreign: Some(_), ..
        }) => Outcome::Fail("no address on a way out".into()),
        Ok(_) => Outcome::Fail("the container's eth0 has no address".into()),
        Err(o) => o,
    }
}

fn published_port_reaches(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
    if n.foreign.is_some() {
        return Outcome::Skip(
            "lab knows only the ports it published itself (`docker port NAME` lists Docker's)"
                .into(),
        );
    }
    let Some(port) = n.publish.first() else {
        return Outcome::Skip("no port published: try sudo lab step 5 --publish 8080:80".into());
    };
    let Some(host) = n.host_address else {
        return Outcome::Fail("the host has no address to connect to".into());
    };
    let result = (|| -> Result<String> {
        use std::io::{Read, Write};
        // A server in the container, listening on the container's port for a moment.
        let listener = in_netns(p.target.as_raw(), |_| {
            std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port.container)).with_context(
                || {
                    format!(
                        "listening on port {} inside (is the command already using it?)",
                        port.container
                    )
                },
            )
        })?;
        let timeout = std::time::Duration::from_secs(3);
        let mut client = std::net::TcpStream::connect_timeout(&(host, port.host).into(), timeout)
            .with_context(|| format!("connecting to {host}:{}", port.host))?;
        client.write_all(b"hello container\n")?;
        listener.set_nonblocking(false)?;
        let (mut conn, from) = listener.accept()?;
        conn.set_read_timeout(Some(timeout))?;
        let mut got = [0u8; 16];
        conn.read_exact(&mut got)?;
        anyhow::ensure!(
            &got == b"hello container\n",
            "the server got something else"
        );
        Ok(format!(
            "{host}:{} -> the container's port {} (the server saw the client as {})",
            port.host,
            port.container,
            from.ip()
        ))
    })();
    match result {
        Ok(d) => Outcome::Pass(d),
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

/// The host's network before or after a container, with that container's address.
pub(super) struct HostNetwork {
    pub(super) address: Option<String>,
    pub(super) snapshot: Snapshot,
}

fn compared(b: &Before) -> Result<(&HostNetwork, &HostNetwork), Outcome> {
    b.compare(super::LAYER.number)
        .ok_or_else(|| Outcome::Fail("the host's network was not recorded".into()))
}

fn veth_gone(b: &Before) -> Outcome {
    let (was, now) = match compared(b) {
        Ok(c) => c,
        Err(o) => return o,
    };
    // Other containers' veths may come and go meanwhile: only this one's counts.
    let left: Vec<&String> = match was.address.as_deref().and_then(own_veth) {
        Some(own) => now.snapshot.links.iter().filter(|l| **l == own).collect(),
        None => now
            .snapshot
            .links
            .iter()
            .filter(|l| l.starts_with("lab-veth") && !was.snapshot.links.contains(l))
            .collect(),
    };
    match (left.is_empty(), was.address.as_deref().and_then(own_veth)) {
        (true, Some(own)) => Outcome::Pass(format!("{own} is gone")),
        (true, None) => Outcome::Pass("no lab-veth interface is left".into()),
        (false, _) => Outcome::Fail(format!("left: {left:?}")),
    }
}

fn host_network_restored(b: &Before) -> Outcome {
    let (before, after) = match compared(b) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let others = b.others();
    let (mut was, mut now) = (before.snapshot.clone(), after.snapshot.clone());
    if !others.is_empty() {
        // lab0, its rules and ip_forward are shared: while other containers run,
        // they stay, and they may come or go with the others. What names this
        // container's own address (its published ports) must still be gone.
        let ip = before.address.as_deref().and_then(|a| a.split('/').next());
        let own = |l: &str| {
            ip.is_some_and(|a| l.contains(&format!("{a}/")) || l.contains(&format!("{a}:")))
        };
        let shared = |l: &str| {
            !own(l) && (l.contains("LAB-") || l.contains(BRIDGE) || l.contains("lab-veth"))
        };
        for s in [&mut was, &mut now] {
            s.links.retain(|l| !shared(l));
            s.routes.retain(|r| !shared(r));
            s.iptables = s
                .iptables
                .lines()
                .filter(|l| !shared(l))
                .map(|l| format!("{l}\n"))
                .collect();
            s.ip_forward.clear();
        }
    }
    let mut differs = Vec::new();
    if was.links != now.links {
        differs.push(format!("links {:?} -> {:?}", was.links, now.links));
    }
    if was.routes != now.routes {
        differs.push(format!("routes {:?} -> {:?}", was.routes, now.routes));
    }
    if was.iptables != now.iptables {
        let gone: Vec<&str> = was
            .iptables
            .lines()
            .filter(|l| !now.iptables.contains(l))
            .collect();
        let new: Vec<&str> = now
            .iptables
            .lines()
            .filter(|l| !was.iptables.contains(l))
            .collect();
        differs.push(format!("iptables rules: new {new:?}, gone {gone:?}"));
    }
    if was.ip_forward != now.ip_forward {
        differs.push(format!(
            "ip_forward {} -> {}",
            was.ip_forward, now.ip_forward
        ));
    }
    let aside = match others.len() {
        0 => String::new(),
        _ => format!(
            " (lab0, its shared rules and ip_forward left out: {} ran too)",
            others.join(", ")
        ),
    };
    Outcome::from(
        differs.is_empty(),
        if differs.is_empty() {
            format!(
                "{} links, {} routes, {} iptables lines, ip_forward={}{aside}",
                after.snapshot.links.len(),
                after.snapshot.routes.len(),
                after.snapshot.iptables.lines().count(),
                after.snapshot.ip_forward
            )
        } else {
            format!("changed: {}{aside}", differs.join("; "))
        },
    )
}

fn ping_outcome(ip: Ipv4Addr, who: &str) -> Outcome {
    match ping(ip) {
        Ok(ms) => Outcome::Pass(format!("{who} {ip} answered in {ms:.1} ms")),
        Err(e) => Outcome::Fail(format!("{who} {ip}: {e:#}")),
    }
}

/// The host's network as lab compares it before and after a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Snapshot {
    pub links: Vec<String>,
    pub routes: Vec<String>,
    /// iptables-save without counters and comments.
    pub iptables: String,
    pub ip_forward: String,
}

pub(super) fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    if let Ok(mut nl) = Netlink::open() {
        let links = nl.links().unwrap_or_default();
        let name = |index: Option<u32>| {
            links
                .iter()
                .find(|l| Some(l.index) == index)
                .map_or("?".to_string(), |l| l.name.clone())
        };
        s.routes = nl
            .routes()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                format!("{}/{}{via} dev {}", r.dst, r.prefix, name(r.oif))
            })
            .collect();
        s.links = links.iter().map(|l| l.name.clone()).collect();
        s.links.sort();
        s.routes.sort();
    }
    if let Ok(path) = iptables_path() {
        let save = path.with_file_name("iptables-save");
        if let Ok(out) = std::process::Command::new(save).output() {
            // Rules and chains, without counters; a built-in chain with its default
            // policy is left out (iptables lists a table's chains once it is used).
            s.iptables = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| match l.find(" [") {
                    Some(i) if l.starts_with(':') => Some(&l[..i]),
                    _ if l.starts_with("-A ") => Some(l),
                    _ => None,
                })
                .filter(|l| !(l.starts_with(':') && l.ends_with(" ACCEPT")))
                .map(|l| format!("{l}\n"))
                .collect();
        }
    }
    s.ip_forward = std::fs::read_to_string(IP_FORWARD)
        .unwrap_or_default()
        .trim()
        .to_string();
    s
}
