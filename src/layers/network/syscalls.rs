//! Layer 5, part 2: the commands of `mod.rs` done with system calls.
//!
//! Links, addresses and routes go through rtnetlink (netlink.rs), as `ip` does;
//! the container's /etc files are written and bind-mounted. What containers
//! share is made under lab's network lock. Next: `iptables.rs`.

use super::bridge::*;
use super::teardown::*;
use super::{Net, BRIDGE};
use crate::engine::plan::{quote_path, Action, RunContext};
use crate::netlink::Netlink;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// `ip link add lab0 type bridge`, `ip addr add ... dev lab0`, `ip link set lab0 up`,
/// `ip link del lab0`.
pub(super) enum Bridge {
    Add([u8; 6]),
    Address(Ipv4Addr, u8),
    Up,
    /// Unless a container other than this one uses it.
    Delete(String),
}
/// `sysctl -w net.ipv4.ip_forward=1`, and back (unless a container other than this
/// one still needs it).
pub(super) enum Forwarding {
    On,
    Restore(String),
}
/// The veth pair, on the host.
pub(super) enum Veth {
    /// Its host end, the container whose namespace gets the other end, eth0,
    /// and that end's MAC address.
    Add(String, String, [u8; 6]),
    Master(String),
    Up(String),
    /// Wait for the kernel to remove it with the namespace.
    Gone(String),
    Delete(String),
}
/// One file of the container's own /etc, made on the host.
pub(super) struct EtcFile {
    pub(super) file: PathBuf,
    pub(super) content: EtcContent,
}
pub(super) enum EtcContent {
    Lines(Vec<String>),
    /// The host's resolv.conf without its loopback nameservers.
    Resolv(PathBuf),
}
/// What runs in the container's network namespace.
pub(super) enum Inside {
    LoUp,
    WaitForEth0,
    Address(Ipv4Addr, u8),
    Up,
    DefaultRoute(Ipv4Addr),
}
/// `mount --bind FILE ROOT/etc/FILE`
pub(super) struct BindFile {
    pub(super) from: PathBuf,
    pub(super) to: PathBuf,
}
/// `rm -r DIR`
pub(super) struct RemoveDir(pub(super) PathBuf);

impl EtcFile {
    pub(super) fn new(net: &Net, file: &str) -> EtcFile {
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

// ── The system calls ───────────────────────────────────────────────────────────

/// Netlink, under lab's network lock: two lab processes never change lab0 and
/// lab's rules at the same moment.
pub(super) fn netlink<T>(f: impl FnOnce(&mut Netlink) -> Result<T>) -> Result<T> {
    let _lock = lock()?;
    f(&mut Netlink::open()?)
}

impl Action for Bridge {
    fn shell(&self) -> String {
        match self {
            Bridge::Add(mac) => {
                format!("ip link add {BRIDGE} address {} type bridge", mac_text(mac))
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
    fn apply(&self, run: &RunContext) -> Result<()> {
        match self {
            Bridge::Add(mac) => {
                // The last container's lab0 may still be on its way out: wait
                // for that (or finish it) first, and without the lock, which
                // the process removing lab0 takes, and so does finishing it.
                settle_removal();
                netlink(|nl| add_bridge(nl, mac))
            }
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
            Bridge::Delete(leaving) => sweep(leaving, run),
        }
    }
}

/// lab0's MAC address, and a container's: locally administered (02), then the
/// IPv4 address (the gateway's for lab0), as Docker derives its containers'
/// MACs from their addresses. The next container with the same address has the
/// same MAC: what the host and the others learned of it (ARP) stays true.
pub(super) fn bridge_mac(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x00, a, b, c, d]
}

/// `02:00:0a:c8:00:03`
pub(super) fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// In `lab script`: true while some container is still attached to lab0.
pub(super) const UNUSED: &str = "[ -n \"$(ip -o link show master lab0 2>/dev/null)\" ]";

pub(super) const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Where lab notes that it switched forwarding on (so that it switches it off).
pub(super) fn forwarding_record() -> PathBuf {
    crate::dirs::run_dir().join("ip_forward-was-0")
}

/// lab0, unless it is there (another container made it a moment ago).
fn add_bridge(nl: &mut Netlink, mac: &[u8; 6]) -> Result<()> {
    match nl.link(BRIDGE)? {
        Some(l) if l.kind.as_deref() == Some("bridge") => Ok(()),
        Some(_) => bail!("an interface named {BRIDGE} exists and is not a bridge: lab needs that name (look at it with ip -d link show {BRIDGE})"),
        None => match nl.add_bridge(BRIDGE, Some(*mac)) {
            Err(e) if e.downcast_ref() == Some(&Errno::EEXIST) => Ok(()),
            // lab0 was gone, so are the rules lab may have noted as made (a
            // container of `lab script` took them down with lab0): the note
            // goes, and they are looked up again.
            Ok(()) => {
                let _ = std::fs::remove_file(super::iptables::rules_record());
                Ok(())
            }
            other => other,
        },
    }
}

impl Action for Forwarding {
    fn shell(&self) -> String {
        // The old value goes in a variable of the shell that typed it, and only
        // a 0 is put back: on a host where Docker or libvirt switched forwarding
        // on, switching it off would cut their containers and VMs off. (Unset:
        // the teardown typed in another shell leaves forwarding alone.)
        match self {
            Forwarding::On => {
                "IP_FORWARD_WAS=$(sysctl -n net.ipv4.ip_forward); sysctl -w net.ipv4.ip_forward=1"
                    .into()
            }
            Forwarding::Restore(_) => {
                "[ \"${IP_FORWARD_WAS:-1}\" = 1 ] || sysctl -w net.ipv4.ip_forward=0".into()
            }
        }
    }
    fn script(&self) -> String {
        match self {
            Forwarding::On => self.shell(),
            Forwarding::Restore(_) => format!("{UNUSED} || {}", self.shell()),
        }
    }
    fn apply(&self, run: &RunContext) -> Result<()> {
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
            Forwarding::Restore(leaving) => sweep(leaving, run),
        }
    }
}

impl Action for Veth {
    fn shell(&self) -> String {
        match self {
            Veth::Add(a, _, mac) => format!(
                "ip link add {a} type veth peer name eth0 address {} netns \"$PID\"",
                mac_text(mac)
            ),
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
            Veth::Add(a, _, _) => format!(
                "for i in $(seq 100); do ip link show {a} >/dev/null 2>&1 || break; sleep 0.1; done; {}",
                self.shell()
            ),
            _ => self.shell(),
        }
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        if let Veth::Gone(_) = self {
            // The kernel removes the pair in the background, after lab has gone,
            // batched with other namespaces: removing it here would cost 15-40 ms,
            // waiting for it about as much. lab does not wait: its next containers
            // take other addresses until this name is free (reserve), the removal
            // of lab0 waits for it (bridge.rs), and so do the checks after exit.
            return Ok(());
        }
        netlink(|nl| {
            match self {
                Veth::Add(a, container, mac) => {
                    let pid = crate::engine::state::first_pid(container)?;
                    nl.add_veth(a, "eth0", Some(*mac), Some(pid))
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
    fn apply(&self, _run: &RunContext) -> Result<()> {
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

    fn apply(&self, _run: &RunContext) -> Result<()> {
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
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // A mount needs something to cover: where the image's symbolic link
        // leads inside, when it has one, an empty file if it is missing (as runc
        // makes it), with its directories.
        let to = crate::layers::mount::file_mount_point(&self.to)?;
        nix::mount::mount(
            Some(&self.from),
            &to,
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
    fn apply(&self, _run: &RunContext) -> Result<()> {
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.0.display()))
            }
            _ => Ok(()),
        }
    }
}
