//! Layer 5: a network namespace, wired to the host like Docker's default bridge.
//!
//! A new network namespace holds its own interfaces, addresses, routes, firewall
//! rules and sysctls, and starts with nothing but a `lo` that is down. To connect
//! it, lab does what Docker does for its `docker0` network:
//!
//! ```text
//!   container (netns)            host
//!   eth0 10.200.0.2 ──veth pair── lab-veth2 ──┐
//!                                              lab0 (bridge, 10.200.0.1) ── routing,
//!   another container ──veth──────────────────┘      NAT (MASQUERADE) ── uplink
//! ```
//!
//! - a bridge `lab0` on the host, a virtual switch with the gateway's address;
//! - per container a veth pair (two interfaces joined like the ends of a cable):
//!   one end on the bridge, the other made right inside the container as eth0;
//! - routing and NAT on the host: `ip_forward` on, MASQUERADE for the subnet, and
//!   ACCEPT rules of lab's own in the FORWARD chain (Docker sets its policy to
//!   DROP); `--publish` adds DNAT from a host port to the container.
//!
//! Links, addresses and routes go through rtnetlink (netlink.rs), as `ip` does.
//! Firewall rules go through the `iptables` program: its kernel interface (an
//! nftables or xtables ruleset blob) is impractical to build by hand. Everything
//! iptables gets from lab lives in lab's own chains (LAB-POSTROUTING, LAB-DNAT,
//! LAB-FORWARD), so taking them down removes exactly what lab added.
//!
//! The layer reads as a chapter, in this order:
//! - this file: the idea, and the commands a person types;
//! - `syscalls.rs`: the same commands done with system calls and rtnetlink;
//! - `iptables.rs`: the firewall rules, through the iptables program;
//! - `bridge.rs`: what containers share (lab0, its subnet and addresses);
//! - `teardown.rs`: who takes it down, when, and what a killed run left;
//! - `gather.rs`, `checks.rs` (and `ping.rs`): what the checks gather on the host,
//!   and the checks that prove the layer works.

mod bridge;
mod checks;
mod gather;
mod iptables;
mod options;
mod ping;
mod syscalls;
mod teardown;

pub use bridge::{Publish, Subnet};
pub use gather::links_and_way_out;
pub use iptables::iptables_path;
pub use options::Options;

/// The host's end of the veth pair of the container with this address
/// (`10.200.0.2/24`), for `lab show`.
pub fn host_end_of(address: &str) -> Option<String> {
    bridge::own_veth(address)
}

use super::Layer;
use crate::engine::plan::{Action, Command, MakeDirs, Namespace, Phase, Spec};
use bridge::*;
use iptables::*;
use std::any::Any;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use syscalls::*;
use teardown::*;

pub const LAYER: Layer = Layer {
    number: 5,
    title: "network namespace, veth pair, bridge, NAT",
    idea: "the container gets its own network stack, cabled to a bridge on the host, with NAT to the outside",
    look: "ip addr: lo and eth0 only; ip route: the way out through the gateway; ping -c 1 with the gateway's address.",
    elsewhere: "`--network host` shares the host's network stack, `--network none` leaves only lo; a runtime's bridge network gives the container eth0 and a default route. Look with `sudo nsenter -t PID -n ip addr` and `sudo nsenter -t PID -n ip route`.",
    namespaces: &[Namespace::Net],
    commands,
    note: |_| None,
    checks: checks::checks,
    hooks: &NetworkHooks,
};

/// What the engine asks of this layer besides its commands and checks.
struct NetworkHooks;

impl super::Hooks for NetworkHooks {
    fn preflight(&self, _spec: &Spec) -> anyhow::Result<()> {
        iptables_path().map(|_| ())
    }
    /// The container's address, reserved before anything is made.
    fn reserve(&self, spec: &mut Spec, claim: &crate::engine::state::Claim) -> anyhow::Result<()> {
        let mut options = spec.options.get::<Options>();
        bridge::reserve(&mut options, claim)?;
        spec.options.set(options);
        crate::engine::state::fault_point("the address reserved")
    }
    fn probe_data(
        &self,
        p: &crate::engine::check::Probe,
    ) -> anyhow::Result<Option<super::Gathered>> {
        super::gathered(gather::probe_net(
            p.target.as_raw(),
            p.name.as_deref(),
            &p.root_path,
            p.maker.is_other(),
        ))
    }
    fn host_before(&self, state: &Path) -> Option<Box<dyn Any>> {
        let address = std::fs::read_to_string(state.join("address"))
            .ok()
            .map(|a| a.trim().to_string());
        Some(Box::new(checks::HostNetwork {
            address,
            snapshot: checks::snapshot(),
        }))
    }
    fn host_after(&self, before: &dyn Any) -> Option<Box<dyn Any>> {
        let address = before
            .downcast_ref::<checks::HostNetwork>()?
            .address
            .clone();
        if let Some(address) = &address {
            // The kernel removes the veth pair with the namespace, in the
            // background: look once it has.
            bridge::wait_for_veth_gone(address);
        }
        // And lab0, when it was the last container's, after lab's own process
        // has removed it.
        teardown::settle_removal();
        Some(Box::new(checks::HostNetwork {
            address,
            snapshot: checks::snapshot(),
        }))
    }
    /// The published ports' rules of a container whose run was killed.
    fn forget(&self, state: &Path) {
        teardown::forget(state);
    }
    fn remove_shared_if_unused(&self) -> anyhow::Result<Option<String>> {
        Ok(teardown::remove_shared_if_unused()?.then(|| {
            format!("removed what containers shared, now that none is left: bridge {BRIDGE}, lab's iptables chains, ip_forward as it was")
        }))
    }
    fn run_files(&self) -> &'static [&'static str] {
        &["network.lock", "network-rules", "lab0-removal"]
    }
    fn without_root(&self) -> Option<&'static str> {
        Some("the bridge lab0, the veth pair and NAT need root on the host (rootless Podman runs a helper, slirp4netns or pasta, for that): the container gets a network namespace with only lo, brought up")
    }
    fn without_root_commands(&self, _spec: &Spec) -> Vec<Command> {
        // Root of the user namespace that owns this network namespace may: its
        // capabilities hold there until the last line.
        vec![LAYER.at(
            Phase::Enter,
            "without root, no cable to the host: only the loopback interface, which starts down",
            Inside::LoUp,
        )]
    }
    fn without_root_checks(&self, _step: u8) -> Vec<crate::engine::check::Check> {
        checks::without_root()
    }
}

/// The bridge every container is attached to.
pub const BRIDGE: &str = "lab0";
/// Where lab looks for a free subnet: 10.200.0.0/24, 10.200.1.0/24, ...
const FIRST_SUBNET: [u8; 3] = [10, 200, 0];

/// Everything the commands of one container need, worked out once.
struct Net {
    subnet: Subnet,
    gateway: Ipv4Addr,
    address: Ipv4Addr,
    /// The host's end of the veth pair (the container's is eth0).
    veth: String,
    /// The interface of the host's default route, if it has one.
    uplink: Option<String>,
    /// Where the container's own /etc/hosts, /etc/hostname, /etc/resolv.conf are made.
    etc: PathBuf,
    /// The host's resolver configuration to copy (without loopback nameservers).
    resolv: PathBuf,
    publish: Vec<Publish>,
    name: String,
}

impl Net {
    fn of(spec: &Spec) -> Net {
        let options = spec.options.get::<Options>();
        let subnet = options
            .subnet
            .or_else(|| bridge_subnet().ok().flatten())
            .unwrap_or_else(|| free_subnet(None).unwrap_or(default_subnet()));
        // lab step reserved one; for lab explain and lab script, the first that no
        // running container holds, so that the printed commands work as they are.
        let address = options
            .address
            .unwrap_or_else(|| first_free_address(subnet));
        let veth = host_veth(address, subnet);
        // systemd-resolved listens on 127.0.0.53, which the container cannot reach:
        // take the upstream servers it lists instead, as Docker does.
        let resolved = Path::new("/run/systemd/resolve/resolv.conf");
        Net {
            subnet,
            gateway: subnet.host(1),
            address,
            veth,
            uplink: uplink().ok().flatten(),
            etc: spec.files_dir().join("etc"),
            resolv: if resolved.exists() {
                resolved.into()
            } else {
                "/etc/resolv.conf".into()
            },
            publish: options.publish,
            name: spec.name.clone(),
        }
    }
}

fn default_subnet() -> Subnet {
    let [a, b, c] = FIRST_SUBNET;
    Subnet {
        network: Ipv4Addr::new(a, b, c, 0),
        prefix: 24,
    }
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> anyhow::Result<Vec<Command>> {
    let net = Net::of(spec);
    let host = |why: &str, a: Box<dyn Action>| Command {
        layer: LAYER.number,
        phase: Phase::Host,
        why: why.into(),
        action: a,
    };
    let at = |phase: Phase, why: &str, a: Box<dyn Action>| Command {
        layer: LAYER.number,
        phase,
        why: why.into(),
        action: a,
    };
    let masquerade_out = match &net.uplink {
        Some(up) => format!("-o {up}"),
        None => format!("! -o {BRIDGE}"),
    };
    let mut c = vec![
        host(
            "a bridge: a virtual switch on the host that every container is cabled to (made once, shared). Its MAC address is fixed (02:00 and the gateway's address): left alone, a bridge takes the lowest MAC of its ports and changes it as containers come and go, and a container that learned the old one loses its gateway",
            Box::new(Bridge::Add(bridge_mac(net.gateway))),
        ),
        host(
            "the bridge's address is the containers' gateway; the kernel adds the route to the subnet",
            Box::new(Bridge::Address(net.gateway, net.subnet.prefix)),
        ),
        host("switch the bridge on", Box::new(Bridge::Up)),
        host(
            "let the host route packets between lab0 and its other interfaces (a setting of each network namespace), noting what it was: the teardown puts back only a 0",
            Box::new(Forwarding::On),
        ),
    ];
    // Printed one by one; applied together, by the first (iptables.rs: batch).
    let shared = shared_rules(&net.subnet, &masquerade_out);
    for (why, iptables) in grouped(shared.into_iter().map(|r| (r.why, r.iptables))) {
        c.push(host(why, Box::new(iptables)));
    }
    // A container's published ports: printed one by one, applied together.
    let own: Vec<Rule> = net
        .publish
        .iter()
        .flat_map(|p| publish_rules(&net, p))
        .collect();
    for (why, iptables) in grouped(own.into_iter().map(|r| (r.why, r.iptables))) {
        c.push(host(why, Box::new(iptables)));
    }
    c.push(host(
        "a place on the host for the container's own /etc files: the root filesystem stays as it is",
        Box::new(MakeDirs(vec![net.etc.clone()])),
    ));
    for (file, why) in [
        ("hosts", "the container's /etc/hosts: its name and address"),
        ("hostname", "the container's /etc/hostname"),
        (
            "resolv.conf",
            "the container's /etc/resolv.conf: the host's nameservers, without loopback ones (127.0.0.53 of systemd-resolved is the host's own loopback, unreachable from the container). Where systemd-resolved runs (Ubuntu), the real ones are in /run/systemd/resolve/resolv.conf, else in /etc/resolv.conf: lab explain 5 prints the one of your machine",
        ),
    ] {
        c.push(host(why, Box::new(EtcFile::new(&net, file))));
    }

    // On the host, once the container's first process exists: it needs its PID.
    c.push(at(
        Phase::Connect,
        "a veth pair: two interfaces joined like the ends of a cable. One end stays on the host; the other is made right inside the container's network namespace, as its eth0 (moving an interface there afterwards costs the kernel about 20 ms: it waits until no CPU can still be using it). Its MAC address is made of its IP address, as Docker does: a later container with this address has the same MAC, so what the host learned of it (ARP) stays true",
        Box::new(Veth::Add(
            net.veth.clone(),
            net.name.clone(),
            bridge_mac(net.address),
        )),
    ));
    c.push(at(
        Phase::Connect,
        "plug the host's end into the bridge",
        Box::new(Veth::Master(net.veth.clone())),
    ));
    c.push(at(
        Phase::Connect,
        "switch the host's end on; then back to the first terminal",
        Box::new(Veth::Up(net.veth.clone())),
    ));

    // Inside: the namespace starts with a lo that is down and nothing else.
    c.push(at(
        Phase::Enter,
        "the loopback interface of the new namespace starts down",
        Box::new(Inside::LoUp),
    ));
    c.push(at(
        Phase::Enter,
        "wait until the host has made the container's end, eth0 (lab script does that in the background)",
        Box::new(Inside::WaitForEth0),
    ));
    c.push(at(
        Phase::Enter,
        "the container's address in the bridge's subnet",
        Box::new(Inside::Address(net.address, net.subnet.prefix)),
    ));
    c.push(at(Phase::Enter, "switch it on", Box::new(Inside::Up)));
    c.push(at(
        Phase::Enter,
        "everything that is not on the subnet goes to the gateway: the host's end of lab0",
        Box::new(Inside::DefaultRoute(net.gateway)),
    ));
    // After the root changed, while the host's tree is still stacked on / (as /..): the
    // target resolves in the container, so an image whose /etc/resolv.conf is a
    // symbolic link (to /run/systemd/resolve/stub-resolv.conf, say) gets the file
    // where its link leads inside, and never covers a file of the host's.
    for file in ["hosts", "hostname", "resolv.conf"] {
        c.push(at(
            Phase::FromOldRoot,
            "mount the container's own file (on the host, named through /.. until the host's tree is detached) over the root filesystem's, in the container's mount table only",
            Box::new(BindFile {
                from: super::mount::in_old_root(&net.etc.join(file)),
                to: Path::new("/etc").join(file),
            }),
        ));
    }

    // After exit: the container's own pieces, then what it shared, if it was the last.
    let own = net.publish.iter().flat_map(|p| publish_rules(&net, p));
    let undo = own.map(|r| ("remove the published port's rule", r.iptables.undo()));
    for (why, iptables) in grouped(undo) {
        c.push(at(Phase::Teardown, why, Box::new(iptables)));
    }
    c.push(at(
        Phase::Teardown,
        "nothing to delete by hand: when the container's last process exits, the kernel removes its network namespace, and with it both ends of the veth pair, in the background. This waits until the host's end is gone (lab does not wait: its next container takes another address while this name is taken, and when the last container leaves, the process that removes lab0 deletes its veth)",
        Box::new(Veth::Gone(net.veth.clone())),
    ));
    c.push(at(
        Phase::Teardown,
        "remove the container's /etc files",
        Box::new(RemoveDir(net.etc.clone())),
    ));
    for (why, action) in shared_teardown(&net.subnet, &masquerade_out, &net.name) {
        c.push(at(Phase::Teardown, why, action));
    }
    Ok(c)
}
