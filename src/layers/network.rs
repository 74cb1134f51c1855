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

use super::Layer;
use crate::check::{Before, Check, Kind, Outcome, Probe};
use crate::netlink::Netlink;
use crate::plan::{quote_path, Action, Command, MakeDirs, Namespace, Phase, Spec};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const LAYER: Layer = Layer {
    number: 5,
    title: "network namespace, veth pair, bridge, NAT",
    idea: "the container gets its own network stack, cabled to a bridge on the host, with NAT to the outside",
    namespaces: &[Namespace::Net],
    commands,
    note: |_| None,
    checks,
};

/// The bridge every container is attached to.
pub const BRIDGE: &str = "lab0";
/// Where lab looks for a free subnet: 10.200.0.0/24, 10.200.1.0/24, ...
const FIRST_SUBNET: [u8; 3] = [10, 200, 0];

/// What the student chose for the network (flags), and what lab reserved.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--subnet`: the bridge's subnet [default: the one lab0 has, else the first free].
    pub subnet: Option<Subnet>,
    /// `--publish HOSTPORT:CONTAINERPORT`, TCP.
    pub publish: Vec<Publish>,
    /// The container's address, once reserved (lab step); lab explain shows the first.
    pub address: Option<Ipv4Addr>,
}

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
    fn contains(&self, ip: Ipv4Addr) -> bool {
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

fn mask(prefix: u8) -> u32 {
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
    root: PathBuf,
}

impl Net {
    fn of(spec: &Spec) -> Net {
        let subnet = spec
            .network
            .subnet
            .or_else(|| bridge_subnet().ok().flatten())
            .unwrap_or_else(|| free_subnet(None).unwrap_or(default_subnet()));
        // lab step reserved one; for lab explain and lab script, the first that no
        // running container holds, so that the printed commands work as they are.
        let address = spec
            .network
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
            etc: crate::state::run_dir()
                .join("containers")
                .join(&spec.name)
                .join("etc"),
            resolv: if resolved.exists() {
                resolved.into()
            } else {
                "/etc/resolv.conf".into()
            },
            publish: spec.network.publish.clone(),
            name: spec.name.clone(),
            root: spec.new_root(),
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

fn commands(spec: &Spec) -> Vec<Command> {
    let net = Net::of(spec);
    let host = |why: &str, a: Box<dyn Action>| Command {
        layer: 5,
        phase: Phase::Host,
        why: why.into(),
        action: a,
    };
    let at = |phase: Phase, why: &str, a: Box<dyn Action>| Command {
        layer: 5,
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
            "let the host route packets between lab0 and its other interfaces (a setting of each network namespace; lab puts back the old value when it is done)",
            Box::new(Forwarding::On),
        ),
    ];
    for rule in shared_rules(&net.subnet, &masquerade_out) {
        c.push(host(rule.why, Box::new(rule.iptables)));
    }
    for p in &net.publish {
        for rule in publish_rules(&net, p) {
            c.push(host(rule.why, Box::new(rule.iptables)));
        }
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
            "the container's /etc/resolv.conf: the host's nameservers, without loopback ones (127.0.0.53 of systemd-resolved is the host's own loopback, unreachable from the container)",
        ),
    ] {
        c.push(host(why, Box::new(EtcFile::new(&net, file))));
    }

    // On the host, once the container's first process exists: it needs its PID.
    c.push(at(
        Phase::Connect,
        "in a second terminal on the host: the PID of unshare, which is in the new network namespace",
        Box::new(FindPid),
    ));
    c.push(at(
        Phase::Connect,
        "a veth pair: two interfaces joined like the ends of a cable. One end stays on the host; the other is made right inside the container's network namespace, as its eth0 (moving an interface there afterwards costs the kernel about 20 ms: it waits until no CPU can still be using it)",
        Box::new(Veth::Add(net.veth.clone(), net.name.clone())),
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
    // In the container's own mount table (private by now), before the root changes.
    for file in ["hosts", "hostname", "resolv.conf"] {
        c.push(at(
            Phase::Root,
            "mount the container's own file over the root filesystem's, in the container's mount table only",
            Box::new(BindFile {
                from: net.etc.join(file),
                to: net.root.join("etc").join(file),
            }),
        ));
    }

    // After exit: the container's own pieces, then what it shared, if it was the last.
    for p in &net.publish {
        for rule in publish_rules(&net, p) {
            c.push(at(
                Phase::Teardown,
                "remove the published port's rule",
                Box::new(rule.iptables.undo()),
            ));
        }
    }
    c.push(at(
        Phase::Teardown,
        "nothing to delete by hand: when the container's last process exits, the kernel removes its network namespace, and with it both ends of the veth pair, in the background. This waits until the host's end is gone (lab waits only when it is the last container, before it removes lab0)",
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
    c
}

/// An iptables line of the plan, and why.
struct Rule {
    why: &'static str,
    iptables: Iptables,
}

/// The rules every container shares: lab's chains, and the jumps into them.
fn shared_rules(subnet: &Subnet, masquerade_out: &str) -> Vec<Rule> {
    let s = subnet.to_string();
    let r = |why, table, op, chain: &str, rule: String| Rule {
        why,
        iptables: Iptables::new(table, op, chain, &rule, true),
    };
    vec![
        r("lab's own chain for NAT on the way out (Docker has DOCKER chains)", Some("nat"), Op::NewChain, "LAB-POSTROUTING", String::new()),
        r("every packet leaving the host passes through it", Some("nat"), Op::Append, "POSTROUTING", "-j LAB-POSTROUTING".into()),
        r("packets from the containers leave with the host's address (found on the default route's interface)", Some("nat"), Op::Append, "LAB-POSTROUTING", format!("-s {s} {masquerade_out} -j MASQUERADE")),
        r("lab's own chain for published ports", Some("nat"), Op::NewChain, "LAB-DNAT", String::new()),
        r("packets arriving for one of the host's addresses look there first", Some("nat"), Op::Append, "PREROUTING", "-m addrtype --dst-type LOCAL -j LAB-DNAT".into()),
        r("and so do the host's own, except to 127.0.0.0/8", Some("nat"), Op::Append, "OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j LAB-DNAT".into()),
        r("lab's own chain of forwarding rules", None, Op::NewChain, "LAB-FORWARD", String::new()),
        r("first in FORWARD: Docker sets the FORWARD policy to DROP, and with br_netfilter even traffic between two containers on lab0 passes FORWARD", None, Op::Insert, "FORWARD", "-j LAB-FORWARD".into()),
        r("let everything from the containers through", None, Op::Append, "LAB-FORWARD", format!("-i {BRIDGE} -j ACCEPT")),
        r("and the answers to it", None, Op::Append, "LAB-FORWARD", format!("-o {BRIDGE} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")),
    ]
}

/// The two rules of one published port.
fn publish_rules(net: &Net, p: &Publish) -> Vec<Rule> {
    let a = net.address;
    vec![
        Rule {
            why: "publish a port: what arrives for the host's port goes to the container's",
            iptables: Iptables::new(
                Some("nat"),
                Op::Append,
                "LAB-DNAT",
                &format!(
                    "-p tcp --dport {} -j DNAT --to-destination {a}:{}",
                    p.host, p.container
                ),
                false,
            ),
        },
        Rule {
            why: "and let it through to the container",
            iptables: Iptables::new(
                None,
                Op::Append,
                "LAB-FORWARD",
                &format!(
                    "-d {a}/32 -o {BRIDGE} -p tcp --dport {} -j ACCEPT",
                    p.container
                ),
                false,
            ),
        },
    ]
}

/// Taking down what containers share, in reverse; each line only when no other
/// container is attached to lab0 (lab does them all at once: see [`sweep`]).
fn shared_teardown(
    subnet: &Subnet,
    masquerade_out: &str,
    leaving: &str,
) -> Vec<(&'static str, Box<dyn Action>)> {
    let mut out: Vec<(&'static str, Box<dyn Action>)> = Vec::new();
    for mut rule in shared_undo_rules(subnet, masquerade_out) {
        let why = match rule.op {
            Op::Flush => "when no other container uses lab0: empty lab's chain",
            Op::DeleteChain => "and delete it",
            _ => "when no other container uses lab0: remove the jump into lab's chain",
        };
        rule.leaving = leaving.to_string();
        out.push((why, Box::new(rule)));
    }
    out.push((
        "when no other container uses lab0: remove the bridge",
        Box::new(Bridge::Delete(leaving.to_string())),
    ));
    out.push((
        "when no other container uses lab0, and lab switched forwarding on: switch it back off",
        Box::new(Forwarding::Restore(leaving.to_string())),
    ));
    out
}

/// The iptables lines that undo [`shared_rules`]: the jumps into lab's chains are
/// deleted, the chains emptied and deleted (their own rules go with them).
fn shared_undo_rules(subnet: &Subnet, masquerade_out: &str) -> Vec<Iptables> {
    let mut out = Vec::new();
    for rule in shared_rules(subnet, masquerade_out).into_iter().rev() {
        if rule.iptables.op == Op::NewChain {
            out.push(Iptables {
                op: Op::Flush,
                ..rule.iptables.clone()
            });
            out.push(rule.iptables.undo());
        } else if !rule.iptables.chain.starts_with("LAB-") {
            out.push(rule.iptables.undo());
        }
    }
    out
}

/// Take down everything containers share, in one go under the network lock, if no
/// container but `leaving` uses lab0. Every line of the shared teardown calls this;
/// the first decides for all of them. Two containers leaving at the same moment
/// never both leave lab0 to the other: the first to take the lock gives up its
/// address, so the second finds lab0 unused.
fn sweep(leaving: &str) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DECIDED: AtomicBool = AtomicBool::new(false);
    if DECIDED.load(Ordering::SeqCst) {
        return Ok(());
    }
    sweep_now(leaving)?;
    DECIDED.store(true, Ordering::SeqCst);
    Ok(())
}

/// [`sweep`], every time it is called. Returns whether it took things down.
fn sweep_now(leaving: &str) -> Result<bool> {
    let _lock = lock()?;
    if !leaving.is_empty() {
        // Give up this container's address first, under the lock: of several
        // containers leaving at once, each sees the others still holding theirs,
        // except the last to get here, which then finds lab0 unused.
        let _ = std::fs::remove_file(crate::state::container_dir(leaving).join("address"));
    }
    let mut nl = Netlink::open()?;
    if in_use(&mut nl, leaving)? {
        return Ok(false);
    }
    // First the record, then the rules: a run stopped between the two leaves
    // rules that the next container checks again, never a record of missing ones.
    match std::fs::remove_file(rules_record()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context("removing the record of lab's iptables rules")
        }
        _ => {}
    }
    if iptables_path().is_ok() {
        // Which subnet does not matter here: the MASQUERADE rule goes with its chain.
        for rule in shared_undo_rules(&default_subnet(), "") {
            rule.now()?;
        }
    }
    if let Some(l) = nl.link(BRIDGE)? {
        // Only a bridge: an interface of another kind by that name is not lab's.
        if l.kind.as_deref() == Some("bridge") {
            nl.delete_link(l.index)?;
        }
    }
    if forwarding_record().exists() {
        std::fs::write(IP_FORWARD, "0").with_context(|| format!("writing {IP_FORWARD}"))?;
        let _ = std::fs::remove_file(forwarding_record());
    }
    Ok(true)
}

/// `ip link add lab0 type bridge`, `ip addr add ... dev lab0`, `ip link set lab0 up`,
/// `ip link del lab0`.
enum Bridge {
    Add([u8; 6]),
    Address(Ipv4Addr, u8),
    Up,
    /// Unless a container other than this one uses it.
    Delete(String),
}
/// `sysctl -w net.ipv4.ip_forward=1`, and back (unless a container other than this
/// one still needs it).
enum Forwarding {
    On,
    Restore(String),
}
/// The veth pair, on the host.
enum Veth {
    /// Its host end, and the container whose namespace gets the other end, eth0.
    Add(String, String),
    Master(String),
    Up(String),
    /// Wait for the kernel to remove it with the namespace.
    Gone(String),
    Delete(String),
}
/// One file of the container's own /etc, made on the host.
struct EtcFile {
    file: PathBuf,
    content: EtcContent,
}
enum EtcContent {
    Lines(Vec<String>),
    /// The host's resolv.conf without its loopback nameservers.
    Resolv(PathBuf),
}
/// `PID=$(pgrep -nx unshare)`
struct FindPid;
/// What runs in the container's network namespace.
enum Inside {
    LoUp,
    WaitForEth0,
    Address(Ipv4Addr, u8),
    Up,
    DefaultRoute(Ipv4Addr),
}
/// `mount --bind FILE ROOT/etc/FILE`
struct BindFile {
    from: PathBuf,
    to: PathBuf,
}
/// `rm -r DIR`
struct RemoveDir(PathBuf);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    NewChain,
    Append,
    Insert,
    Delete,
    Flush,
    DeleteChain,
}

/// One iptables command. `shared`: part of what every container uses (its undoing
/// waits for the last container).
#[derive(Clone)]
struct Iptables {
    table: Option<&'static str>,
    op: Op,
    chain: String,
    rule: Vec<String>,
    shared: bool,
    /// For undoing a shared line: the container that is leaving (it does not count
    /// as a user of lab0).
    leaving: String,
}

impl EtcFile {
    fn new(net: &Net, file: &str) -> EtcFile {
        let content = match file {
            "hosts" => EtcContent::Lines(vec![
                "127.0.0.1 localhost".into(),
                format!("{} {}", net.address, net.name),
            ]),
            "hostname" => EtcContent::Lines(vec![net.name.clone()]),
            _ => EtcContent::Resolv(net.resolv.clone()),
        };
        EtcFile {
            file: net.etc.join(file),
            content,
        }
    }
}

impl Iptables {
    fn new(table: Option<&'static str>, op: Op, chain: &str, rule: &str, shared: bool) -> Iptables {
        Iptables {
            table,
            op,
            chain: chain.into(),
            rule: rule.split_whitespace().map(String::from).collect(),
            shared,
            leaving: String::new(),
        }
    }
    /// The command that takes this one back.
    fn undo(&self) -> Iptables {
        let op = match self.op {
            Op::NewChain => Op::DeleteChain,
            _ => Op::Delete,
        };
        Iptables { op, ..self.clone() }
    }
    fn args(&self, op: Op) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(t) = self.table {
            a.extend(["-t".to_string(), t.to_string()]);
        }
        let flag = match op {
            Op::NewChain => "-N",
            Op::Append => "-A",
            Op::Insert => "-I",
            Op::Delete => "-D",
            Op::Flush => "-F",
            Op::DeleteChain => "-X",
        };
        a.push(flag.into());
        a.push(self.chain.clone());
        a.extend(self.rule.iter().cloned());
        a
    }
    /// `-C`: does the rule exist? (`-n -L CHAIN` for a chain.)
    fn exists(&self) -> Result<bool> {
        Ok(iptables(&exists_args(self), true)?.is_ok())
    }
}

// ── The system calls ───────────────────────────────────────────────────────────

/// Netlink, under lab's network lock: two lab processes never change lab0 and
/// lab's rules at the same moment.
fn netlink<T>(f: impl FnOnce(&mut Netlink) -> Result<T>) -> Result<T> {
    let _lock = lock()?;
    f(&mut Netlink::open()?)
}

impl Action for Bridge {
    fn shell(&self) -> String {
        match self {
            Bridge::Add(mac) => {
                let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
                format!("ip link add {BRIDGE} address {} type bridge", mac.join(":"))
            }
            Bridge::Address(ip, p) => format!("ip addr add {ip}/{p} dev {BRIDGE}"),
            Bridge::Up => format!("ip link set {BRIDGE} up"),
            Bridge::Delete(_) => format!("ip link del {BRIDGE}"),
        }
    }
    fn script(&self) -> String {
        // Another container (or script) may have made it already.
        match self {
            Bridge::Add(_) => format!("ip link show {BRIDGE} >/dev/null 2>&1 || {}", self.shell()),
            Bridge::Address(ip, _) => format!(
                "[ -n \"$(ip -o addr show dev {BRIDGE} to {ip}/32)\" ] || {}",
                self.shell()
            ),
            Bridge::Up => self.shell(),
            Bridge::Delete(_) => format!("{UNUSED} || {} 2>/dev/null || true", self.shell()),
        }
    }
    fn apply(&self) -> Result<()> {
        match self {
            Bridge::Add(mac) => netlink(|nl| {
                match nl.link(BRIDGE)? {
                Some(l) if l.kind.as_deref() == Some("bridge") => Ok(()),
                Some(_) => bail!("an interface named {BRIDGE} exists and is not a bridge: lab needs that name (look at it with ip -d link show {BRIDGE})"),
                None => match nl.add_bridge(BRIDGE, Some(*mac)) {
                    // Another container made it a moment ago.
                    Err(e) if e.downcast_ref() == Some(&Errno::EEXIST) => Ok(()),
                    other => other,
                },
            }
            }),
            Bridge::Address(ip, p) => netlink(|nl| {
                let index = nl.index(BRIDGE)?;
                let has = nl
                    .addresses()?
                    .iter()
                    .any(|a| a.index == index && a.ip == *ip);
                if has {
                    return Ok(());
                }
                match nl.add_address(index, *ip, *p) {
                    // Another container added it a moment ago.
                    Err(e) if e.downcast_ref() == Some(&Errno::EEXIST) => Ok(()),
                    other => other,
                }
            }),
            Bridge::Up => netlink(|nl| {
                let index = nl.index(BRIDGE)?;
                nl.set_up(index)
            }),
            Bridge::Delete(leaving) => sweep(leaving),
        }
    }
}

/// lab0's MAC address: locally administered (02), then the gateway's IPv4
/// address, as Docker derives its containers' MACs from their addresses.
fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x02, 0x00, a, b, c, d]
}

/// In `lab script`: true while some container is still attached to lab0.
const UNUSED: &str = "[ -n \"$(ip -o link show master lab0 2>/dev/null)\" ]";

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Where lab notes that it switched forwarding on (so that it switches it off).
fn forwarding_record() -> PathBuf {
    crate::state::run_dir().join("ip_forward-was-0")
}

impl Action for Forwarding {
    fn shell(&self) -> String {
        match self {
            Forwarding::On => "sysctl -w net.ipv4.ip_forward=1".into(),
            Forwarding::Restore(_) => "sysctl -w net.ipv4.ip_forward=0".into(),
        }
    }
    fn script(&self) -> String {
        match self {
            Forwarding::On => format!(
                "IP_FORWARD_WAS=$(sysctl -n net.ipv4.ip_forward); {}",
                self.shell()
            ),
            Forwarding::Restore(_) => format!(
                "{UNUSED} || [ \"${{IP_FORWARD_WAS:-1}}\" = 1 ] || {}",
                self.shell()
            ),
        }
    }
    fn apply(&self) -> Result<()> {
        match self {
            Forwarding::On => {
                let _lock = lock()?;
                let now = std::fs::read_to_string(IP_FORWARD)
                    .with_context(|| format!("reading {IP_FORWARD}"))?;
                if now.trim() == "0" {
                    std::fs::write(forwarding_record(), "0\n")?;
                    std::fs::write(IP_FORWARD, "1")
                        .with_context(|| format!("writing {IP_FORWARD}"))?;
                }
                Ok(())
            }
            Forwarding::Restore(leaving) => sweep(leaving),
        }
    }
}

impl Action for Iptables {
    fn shell(&self) -> String {
        format!("iptables {}", self.args(self.op).join(" "))
    }
    fn script(&self) -> String {
        // Runnable again and again: add what is missing, remove what is there.
        let shell = self.shell();
        let check = format!("iptables {} >/dev/null 2>&1", exists_args(self).join(" "));
        let body = match self.op {
            Op::NewChain => format!("{check} || {shell}"),
            Op::Append | Op::Insert => format!("{check} || {shell}"),
            Op::Delete | Op::Flush | Op::DeleteChain => format!("! {check} || {shell}"),
        };
        if self.shared && matches!(self.op, Op::Delete | Op::Flush | Op::DeleteChain) {
            format!("{UNUSED} || {body}")
        } else {
            body
        }
    }
    fn apply(&self) -> Result<()> {
        if self.shared && matches!(self.op, Op::Delete | Op::Flush | Op::DeleteChain) {
            return sweep(&self.leaving);
        }
        let _lock = lock()?;
        if !self.shared {
            return self.now();
        }
        // Like Docker, which sets its rules up once when its daemon starts, lab
        // asks iptables about a shared rule only until it is recorded as in place:
        // each iptables run costs 1-5 ms, and ten of them were most of the time a
        // container took to start. The record goes before the rules do (sweep).
        let line = self.shell();
        let record = rules_record();
        let recorded = std::fs::read_to_string(&record).unwrap_or_default();
        if recorded.lines().any(|l| l == line) {
            return Ok(());
        }
        self.now()?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&record)
            .with_context(|| format!("writing {}", record.display()))?;
        std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())
            .with_context(|| format!("writing {}", record.display()))
    }
}

/// The shared rules lab has made and not yet taken down, one iptables line each.
fn rules_record() -> PathBuf {
    crate::state::run_dir().join("network-rules")
}

impl Iptables {
    /// Add it if missing, remove it if present (the caller holds the lock).
    fn now(&self) -> Result<()> {
        let present = self.exists()?;
        let needed = match self.op {
            Op::NewChain | Op::Append | Op::Insert => !present,
            Op::Delete | Op::Flush | Op::DeleteChain => present,
        };
        if !needed {
            return Ok(());
        }
        iptables(&self.args(self.op), false)?.map_err(|e| anyhow::anyhow!(e))
    }
}

fn exists_args(r: &Iptables) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(t) = r.table {
        a.extend(["-t".to_string(), t.to_string()]);
    }
    match r.op {
        Op::NewChain | Op::DeleteChain | Op::Flush => {
            a.extend(["-n".into(), "-L".into(), r.chain.clone()])
        }
        _ => {
            a.extend(["-C".into(), r.chain.clone()]);
            a.extend(r.rule.iter().cloned());
        }
    }
    a
}

/// Run iptables. Outer error: it could not run at all; inner: it said no.
fn iptables(args: &[String], quiet: bool) -> Result<Result<(), String>> {
    let out = std::process::Command::new(iptables_path()?)
        .args(args)
        // -w: wait for the xtables lock instead of failing when Docker holds it.
        .arg("-w")
        .output()
        .context("running iptables")?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok(Err(if quiet {
        said
    } else {
        format!("iptables {} said: {said}", args.join(" "))
    }))
}

/// The iptables program, or what to install.
pub fn iptables_path() -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join("iptables");
        // (iptables is usually a symlink to xtables-nft-multi: metadata follows it.)
        if p.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(p);
        }
    }
    bail!("iptables not found: step 5 needs it for NAT and published ports (apt-get install iptables)")
}

impl Action for Veth {
    fn shell(&self) -> String {
        match self {
            Veth::Add(a, _) => format!("ip link add {a} type veth peer name eth0 netns \"$PID\""),
            Veth::Master(a) => format!("ip link set {a} master {BRIDGE}"),
            Veth::Up(a) => format!("ip link set {a} up"),
            Veth::Gone(a) => format!(
                "for i in $(seq 100); do ip link show {a} >/dev/null 2>&1 || break; sleep 0.1; done"
            ),
            Veth::Delete(a) => format!("ip link del {a}"),
        }
    }
    fn script(&self) -> String {
        match self {
            // A container that has just left may still have this veth for a few
            // milliseconds, until the kernel has removed its namespace.
            Veth::Add(a, _) => format!(
                "for i in $(seq 100); do ip link show {a} >/dev/null 2>&1 || break; sleep 0.1; done; {}",
                self.shell()
            ),
            _ => self.shell(),
        }
    }
    fn apply(&self) -> Result<()> {
        if let Veth::Gone(a) = self {
            // The kernel removes the pair in the background, after lab has gone,
            // batched with other namespaces: removing it here would cost 15-40 ms,
            // waiting for it about as much. lab waits only when it is the last
            // container (lab0 goes then, see in_use), and its next containers take
            // other addresses until this name is free (reserve).
            if others_running(a)? {
                return Ok(());
            }
            if !wait_until_gone(&mut Netlink::open()?, |l| l == a)? {
                return Veth::Delete(a.clone()).apply();
            }
            return Ok(());
        }
        netlink(|nl| {
            match self {
                Veth::Add(a, container) => {
                    let pid = container_pid(container)?;
                    nl.add_veth(a, "eth0", Some(pid))
                    .with_context(|| format!("{a} exists already: is another container using this address? (sudo lab clean removes what lab left)"))
                }
                Veth::Master(a) => {
                    let (index, bridge) = (nl.index(a)?, nl.index(BRIDGE)?);
                    nl.set_master(index, bridge)
                }
                Veth::Up(a) => {
                    let index = nl.index(a)?;
                    nl.set_up(index)
                }
                Veth::Gone(_) => Ok(()),
                // Gone already when the namespace went first, taking its end with it.
                Veth::Delete(a) => match nl.link(a)? {
                    Some(l) => match nl.delete_link(l.index) {
                        // Gone meanwhile, with the container's namespace.
                        Err(e) if e.downcast_ref() == Some(&nix::errno::Errno::ENODEV) => Ok(()),
                        other => other,
                    },
                    None => Ok(()),
                },
            }
        })
    }
}

impl Action for EtcFile {
    fn shell(&self) -> String {
        let to = quote_path(&self.file);
        match &self.content {
            EtcContent::Lines(lines) => {
                let quoted: Vec<String> = lines.iter().map(|l| format!("'{l}'")).collect();
                format!("printf '%s\\n' {} > {to}", quoted.join(" "))
            }
            EtcContent::Resolv(from) => {
                format!("sed '/^nameserver 127\\./d' {} > {to}", quote_path(from))
            }
        }
    }
    fn apply(&self) -> Result<()> {
        let text = match &self.content {
            EtcContent::Lines(lines) => lines.iter().map(|l| format!("{l}\n")).collect(),
            EtcContent::Resolv(from) => std::fs::read_to_string(from)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with("nameserver 127."))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        };
        std::fs::write(&self.file, text).with_context(|| format!("writing {}", self.file.display()))
    }
}

impl Action for FindPid {
    fn shell(&self) -> String {
        "PID=$(pgrep -nx unshare)".into()
    }
    fn script(&self) -> String {
        // unshare, started just below this background part, is a child of this
        // script; wait until it has made its namespaces.
        "for i in $(seq 1000); do PID=$(pgrep -P $$ -x unshare) && [ \"$(readlink /proc/$PID/ns/net)\" != \"$(readlink /proc/self/ns/net)\" ] && break; sleep 0.01; done".into()
    }
    fn apply(&self) -> Result<()> {
        // lab made the process itself: it knows the PID (and noted it in its state).
        Ok(())
    }
}

/// The container's first process, as lab noted it in its state (container.rs
/// writes `pid` right after clone).
fn container_pid(container: &str) -> Result<i32> {
    let file = crate::state::container_dir(container).join("pid");
    std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("container {container} has no PID in {}", file.display()))
}

impl Action for Inside {
    fn shell(&self) -> String {
        match self {
            Inside::LoUp => "ip link set lo up".into(),
            // At most 10 s, so that a failed host side does not leave it waiting.
            Inside::WaitForEth0 => "for i in $(seq 1000); do ip link show eth0 >/dev/null 2>&1 && break; sleep 0.01; done".into(),
            Inside::Address(ip, prefix) => format!("ip addr add {ip}/{prefix} dev eth0"),
            Inside::Up => "ip link set eth0 up".into(),
            Inside::DefaultRoute(gw) => format!("ip route add default via {gw}"),
        }
    }

    fn apply(&self) -> Result<()> {
        // No lock here: this namespace is the container's alone.
        let mut nl = Netlink::open()?;
        match self {
            Inside::LoUp => {
                let lo = nl.index("lo")?;
                nl.set_up(lo)
            }
            Inside::WaitForEth0 => {
                let start = std::time::Instant::now();
                while nl.link("eth0")?.is_none() {
                    if start.elapsed().as_secs() >= 10 {
                        bail!("eth0 did not arrive in the container's namespace within 10 s");
                    }
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
                Ok(())
            }
            Inside::Address(ip, prefix) => {
                let index = nl.index("eth0")?;
                nl.add_address(index, *ip, *prefix)
            }
            Inside::Up => {
                let index = nl.index("eth0")?;
                nl.set_up(index)
            }
            Inside::DefaultRoute(gw) => nl.add_default_route(*gw),
        }
    }
}

impl Action for BindFile {
    fn shell(&self) -> String {
        format!(
            "mount --bind {} {}",
            quote_path(&self.from),
            quote_path(&self.to)
        )
    }
    fn apply(&self) -> Result<()> {
        if self.to.symlink_metadata().is_err() {
            // A mount needs something to cover: an empty file (from step 7 it lands
            // in the container's writable layer).
            std::fs::write(&self.to, "")
                .with_context(|| format!("{} is missing and cannot be made", self.to.display()))?;
        }
        nix::mount::mount(
            Some(&self.from),
            &self.to,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("mount({}, MS_BIND)", self.to.display()))
    }
}

impl Action for RemoveDir {
    fn shell(&self) -> String {
        format!("rm -r {}", quote_path(&self.0))
    }
    fn script(&self) -> String {
        // And the container's directory, unless lab keeps its state there.
        let parent = self.0.parent().unwrap_or(&self.0);
        format!(
            "{{ {}; rmdir {}; }} 2>/dev/null || true",
            self.shell(),
            quote_path(parent)
        )
    }
    fn apply(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.0.display()))
            }
            _ => Ok(()),
        }
    }
}

// ── Addresses and shared state ─────────────────────────────────────────────────

/// lab's network lock: held while reserving an address and while changing what
/// containers share, so that the last container leaving never takes lab0 away
/// from one arriving.
fn lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    crate::state::lock("network")
}

/// Is lab0 used by anything but the container being torn down: another running
/// container of lab (its address is reserved), or a port still on the bridge
/// (a container made by `lab script`)? The veths of containers that have just
/// left are on it for a few more milliseconds, until the kernel has removed
/// their namespaces: they are waited for (at most 2 s).
fn in_use(nl: &mut Netlink, leaving: &str) -> Result<bool> {
    if !crate::state::live_containers()
        .iter()
        .filter(|d| !d.ends_with(leaving) || leaving.is_empty())
        .any(|d| reserved(d).is_some())
    {
        let Some(bridge) = nl.link(BRIDGE)? else {
            return Ok(false);
        };
        wait_until_gone(nl, |l| l.starts_with("lab-veth"))?;
        return Ok(nl.links()?.iter().any(|l| l.master == Some(bridge.index)));
    }
    Ok(true)
}

/// Is a container of lab other than the one whose veth is `veth` running?
fn others_running(veth: &str) -> Result<bool> {
    let _lock = lock()?;
    Ok(crate::state::live_containers()
        .iter()
        .any(|d| reserved(d).is_some_and(|(address, subnet)| host_veth(address, subnet) != veth)))
}

/// Wait until no link whose name matches is left (at most 2 s). Returns whether
/// they went.
fn wait_until_gone(nl: &mut Netlink, matches: impl Fn(&str) -> bool) -> Result<bool> {
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
pub fn wait_for_veth_gone(address: &str) {
    if let (Some(veth), Ok(mut nl)) = (own_veth(address), Netlink::open()) {
        let _ = wait_until_gone(&mut nl, |l| l == veth);
    }
}

/// The address a container's state holds, with its subnet.
fn reserved(dir: &Path) -> Option<(Ipv4Addr, Subnet)> {
    let text = std::fs::read_to_string(dir.join("address")).ok()?;
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
pub fn reserve(options: &mut Options, claim_dir: &Path) -> Result<()> {
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
    let others = crate::state::live_containers();
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
fn first_free_address(subnet: Subnet) -> Ipv4Addr {
    let others = crate::state::live_containers();
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
    let links: Vec<String> = nl.links()?.into_iter().map(|l| l.name).collect();
    Ok((2..2 + subnet.capacity())
        .map(|n| subnet.host(n))
        .find(|a| !taken.contains(a) && !links.contains(&host_veth(*a, subnet))))
}

/// The subnet of lab0's address, if lab0 exists and has one.
fn bridge_subnet() -> Result<Option<Subnet>> {
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
fn free_subnet(nl: Option<&mut Netlink>) -> Result<Subnet> {
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
fn uplink() -> Result<Option<String>> {
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

/// After `kill -9` of lab: the published-port rules its container left (the veth
/// went with the namespace). Called with the container's state still there.
pub fn forget(dir: &Path) {
    let Some((address, subnet)) = reserved(dir) else {
        return;
    };
    let net = Net {
        subnet,
        gateway: subnet.host(1),
        address,
        veth: String::new(),
        uplink: None,
        etc: PathBuf::new(),
        resolv: PathBuf::new(),
        publish: vec![],
        name: String::new(),
        root: PathBuf::new(),
    };
    let _ = Veth::Delete(host_veth(address, subnet)).apply();
    let published = std::fs::read_to_string(dir.join("published")).unwrap_or_default();
    // The container port is not kept: delete the DNAT rules by what they send to.
    let _ = (|| -> Result<()> {
        let _lock = lock()?;
        let out = std::process::Command::new(iptables_path()?)
            .args(["-t", "nat", "-S", "LAB-DNAT", "-w"])
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let ours = published
                .lines()
                .filter_map(|l| Publish::parse(l).ok())
                .any(|p| line.contains(&format!("--dport {} ", p.host)))
                && line.contains(&format!("--to-destination {}:", net.address));
            if let (true, Some(rule)) = (ours, line.strip_prefix("-A LAB-DNAT ")) {
                let mut args: Vec<String> =
                    ["-t", "nat", "-D", "LAB-DNAT"].map(String::from).to_vec();
                args.extend(rule.split_whitespace().map(String::from));
                let _ = iptables(&args, true);
            }
        }
        let out = std::process::Command::new(iptables_path()?)
            .args(["-S", "LAB-FORWARD", "-w"])
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rule) = line
                .strip_prefix("-A LAB-FORWARD ")
                .filter(|r| r.starts_with(&format!("-d {}/32 ", net.address)))
            {
                let mut args: Vec<String> = ["-D", "LAB-FORWARD"].map(String::from).to_vec();
                args.extend(rule.split_whitespace().map(String::from));
                let _ = iptables(&args, true);
            }
        }
        Ok(())
    })();
}

/// Take down what containers share (lab's chains, lab0, ip_forward), unless a
/// container still uses it. For `lab clean` and after a killed run. Returns
/// whether anything was there to remove.
pub fn remove_shared_if_unused() -> Result<bool> {
    let mut nl = Netlink::open()?;
    if nl.link(BRIDGE)?.is_none() && !forwarding_record().exists() {
        return Ok(false);
    }
    sweep_now("")
}

// ── The checks ─────────────────────────────────────────────────────────────────

/// What the network checks know, gathered on the host before the probe joins.
pub struct ProbeNet {
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
}

/// Gather [`ProbeNet`] for the container of process `pid`.
pub fn probe_net(pid: i32, name: Option<&str>, root: &Path) -> Result<ProbeNet> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let addresses = nl.addresses()?;
    let bridge = links.iter().find(|l| l.name == BRIDGE);
    let gateway = bridge.and_then(|b| addresses.iter().find(|a| a.index == b.index).map(|a| a.ip));
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
    let mut others = Vec::new();
    let mut publish = Vec::new();
    for dir in crate::state::live_containers() {
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
    })
}

/// Run `f` in the network namespace of process `pid`, on a thread of its own
/// (setns changes only the calling thread; lab's main thread stays on the host).
/// The thread is joined before this returns, so lab is single-threaded again.
fn in_netns<T: Send>(pid: i32, f: impl FnOnce(&mut Netlink) -> Result<T> + Send) -> Result<T> {
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

fn checks(_step: u8) -> Vec<Check> {
    vec![
        Check {
            layer: 5,
            name: "only lo and eth0 are visible inside",
            hint: "Other interfaces are visible: the container shares the host's network namespace. Compare `ip link` inside and on the host.",
            kind: Kind::Inside(only_lo_and_eth0),
        },
        Check {
            layer: 5,
            name: "none of the host's interfaces is visible inside",
            hint: "A host interface is visible inside: no network namespace (unshare --net). Compare `ip link` inside and on the host.",
            kind: Kind::Inside(host_links_invisible),
        },
        Check {
            layer: 5,
            name: "eth0 is up with the container's address and a default route via the gateway",
            hint: "eth0 is missing, down, or has no address: the veth end was not moved in (ip link set PEER netns PID) or not configured. Look with `ip addr` and `ip route` inside.",
            kind: Kind::Inside(eth0_configured),
        },
        Check {
            layer: 5,
            name: "the gateway (lab0 on the host) answers ping",
            hint: "No answer from the gateway: lab0 is down, has no address, or the host's end of the veth is not on the bridge. Look with `ip -br link` and `bridge link` on the host.",
            kind: Kind::Inside(gateway_answers),
        },
        Check {
            layer: 5,
            name: "other containers on lab0 answer ping",
            hint: "Another container does not answer: with br_netfilter loaded, bridged traffic passes iptables FORWARD, and Docker's DROP policy stops it unless LAB-FORWARD accepts it. Look with `iptables -S FORWARD`.",
            kind: Kind::Inside(others_answer),
        },
        Check {
            layer: 5,
            name: "/etc/hosts inside is the container's own; the root filesystem's is unchanged",
            hint: "The container's /etc/hosts is missing or the root filesystem's was changed: the bind mount did not happen in the container's own mount table. Compare `cat /etc/hosts` inside with the root filesystem's.",
            kind: Kind::Inside(own_etc_hosts),
        },
        Check {
            layer: 5,
            name: "from the host, the container's address answers ping",
            hint: "The host cannot reach the container: lab0 has no route to the subnet, or eth0 is down inside. Look with `ip route` on the host.",
            kind: Kind::Host(container_answers),
        },
        Check {
            layer: 5,
            name: "a published port reaches a server in the container",
            hint: "The published port does not lead into the container: look at the DNAT rule (`iptables -t nat -S LAB-DNAT`) and the FORWARD rules (`iptables -S LAB-FORWARD`).",
            kind: Kind::Host(published_port_reaches),
        },
        Check {
            layer: 5,
            name: "after exit, the veth pair is gone",
            hint: "A veth interface of lab is left on the host: remove it with `sudo ip link del lab-vethN`.",
            kind: Kind::AfterExit(veth_gone),
        },
        Check {
            layer: 5,
            name: "after exit, the host's links, routes, iptables rules and ip_forward are as before",
            hint: "Something lab made is left on the host (while another container still runs, lab0 and its rules stay, as they should). `sudo lab clean` removes what lab left.",
            kind: Kind::AfterExit(host_network_restored),
        },
    ]
}

fn net(p: &Probe) -> Result<&ProbeNet, Outcome> {
    match &p.net {
        Some(Ok(n)) => Ok(n),
        Some(Err(e)) => Err(Outcome::Fail(e.clone())),
        None => Err(Outcome::Fail("no network information".into())),
    }
}

fn only_lo_and_eth0(_p: &Probe) -> Outcome {
    match Netlink::open().and_then(|mut nl| nl.links()) {
        Ok(links) => {
            let mut names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            names.sort();
            Outcome::from(
                names == ["eth0", "lo"],
                format!("inside: {}", names.join(", ")),
            )
        }
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

fn host_links_invisible(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
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
    let result = (|| -> Result<Outcome> {
        let mut nl = Netlink::open()?;
        let Some(eth0) = nl.link("eth0")? else {
            return Ok(Outcome::Fail("no eth0 inside".into()));
        };
        let addr = nl.addresses()?.into_iter().find(|a| a.index == eth0.index);
        let route = nl.routes()?.into_iter().find(|r| r.prefix == 0);
        let via = route.as_ref().and_then(|r| r.gateway);
        let detail = format!(
            "eth0 {}, {}, default via {}",
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
        Ok(_) => Outcome::Fail(format!("the host has no {BRIDGE} with an address")),
        Err(o) => o,
    }
}

fn others_answer(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
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
        return Outcome::Fail("eth0 has no address".into());
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
        Ok(_) => Outcome::Fail("the container's eth0 has no address".into()),
        Err(o) => o,
    }
}

fn published_port_reaches(p: &Probe) -> Outcome {
    let n = match net(p) {
        Ok(n) => n,
        Err(o) => return o,
    };
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

/// The host end of the veth pair of the container with this address
/// (`10.200.0.2/24` has lab-veth2).
fn own_veth(address: &str) -> Option<String> {
    let (ip, prefix) = address.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let network = Ipv4Addr::from(u32::from(ip) & mask(prefix));
    Some(host_veth(ip, Subnet { network, prefix }))
}

/// The host's end of the veth pair of the container with this address, named
/// after its host number (10.200.0.2 has lab-veth2).
fn host_veth(address: Ipv4Addr, subnet: Subnet) -> String {
    let n = u32::from(address) - u32::from(subnet.network);
    format!("lab-veth{n}")
}

fn veth_gone(b: &Before) -> Outcome {
    // Other containers' veths may come and go meanwhile: only this one's counts.
    let left: Vec<&String> = match b.address.as_deref().and_then(own_veth) {
        Some(own) => b
            .after_network
            .links
            .iter()
            .filter(|l| **l == own)
            .collect(),
        None => b
            .after_network
            .links
            .iter()
            .filter(|l| l.starts_with("lab-veth") && !b.network.links.contains(l))
            .collect(),
    };
    match (left.is_empty(), b.address.as_deref().and_then(own_veth)) {
        (true, Some(own)) => Outcome::Pass(format!("{own} is gone")),
        (true, None) => Outcome::Pass("no lab-veth interface is left".into()),
        (false, _) => Outcome::Fail(format!("left: {left:?}")),
    }
}

fn host_network_restored(b: &Before) -> Outcome {
    let others = b.others();
    let (mut was, mut now) = (b.network.clone(), b.after_network.clone());
    if !others.is_empty() {
        // lab0, its rules and ip_forward are shared: while other containers run,
        // they stay, and they may come or go with the others. What names this
        // container's own address (its published ports) must still be gone.
        let ip = b.address.as_deref().and_then(|a| a.split('/').next());
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
                b.after_network.links.len(),
                b.after_network.routes.len(),
                b.after_network.iptables.lines().count(),
                b.after_network.ip_forward
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

/// What `ping -c 3` does, stopping at the first answer: an ICMP echo request on a
/// raw socket, then wait up to a second for the echo reply, three times (the
/// first request also waits for ARP, and a busy machine may be slow). Returns
/// the round trip of the request that was answered, in milliseconds.
pub fn ping(ip: Ipv4Addr) -> Result<f64> {
    use nix::sys::socket::{
        recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
        SockProtocol, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )
    .context("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)")?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 200_000),
    )?;
    let id = (std::process::id() & 0xffff) as u16;
    let to = SockaddrIn::from(std::net::SocketAddrV4::new(ip, 0));
    let mut buf = [0u8; 1500];
    for seq in 1..=3u16 {
        // Type 8 (echo request), code 0, checksum, identifier, sequence number, data.
        let mut packet = vec![8u8, 0, 0, 0];
        packet.extend_from_slice(&id.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(b"lab ping");
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        let start = std::time::Instant::now();
        sendto(fd.as_raw_fd(), &packet, &to, MsgFlags::empty())
            .context("sending the echo request")?;
        while start.elapsed().as_millis() < 1000 {
            let Ok((n, from)) = recvfrom::<SockaddrIn>(fd.as_raw_fd(), &mut buf) else {
                continue;
            };
            // A raw socket gets the IP header too: its length is in the low nibble.
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            let icmp = &buf[ihl.min(n)..n];
            let from_ip = from.map(|f| f.ip());
            // Any of our requests counts: a late reply to an earlier one still
            // proves the path.
            if icmp.len() >= 8
                && icmp[0] == 0
                && icmp[4..6] == id.to_be_bytes()
                && from_ip == Some(ip)
            {
                return Ok(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    bail!("no echo reply to 3 requests, 1 s each")
}

/// The Internet checksum: one's complement of the one's complement sum of 16-bit words.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The host's network as lab compares it before and after a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub links: Vec<String>,
    pub routes: Vec<String>,
    /// iptables-save without counters and comments.
    pub iptables: String,
    pub ip_forward: String,
}

pub fn snapshot() -> Snapshot {
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

    #[test]
    fn the_checksum_of_an_echo_request_verifies_to_zero() {
        let mut p = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }
}
