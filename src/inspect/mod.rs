//! `lab inspect PID|NAME [--json]`: what is this container, layer by layer?
//!
//! For any container, whoever made it (lab, Docker, Podman, runc, bwrap,
//! systemd-nspawn, a plain `unshare`): for each of the nine layers, whether it
//! is on and the kernel fact that shows it, then which escapes of the arc are
//! open. Everything is read where the kernel keeps it: the namespaces' inodes
//! in /proc/PID/ns (set against lab's own, the host's), its mount table, the
//! status of its first process, its cgroups. Two things need a process inside:
//! the hostname (a thread joins its uts namespace) and what a few telling
//! system calls get, tried with harmless arguments by a probe that has taken
//! on the container's restrictions, as `lab check` tries the escapes.
//! Nothing is changed in the container, and it keeps running.
//!
//! This file: what is found, layer by layer. `inside.rs`: what needs a look
//! from a process of the container (PID 1, the hostname, the system calls).
//! `print.rs`: one screen, or JSON.

mod inside;
mod print;

use inside::{calls_of, first_process, hostname_of, nspid, telling_calls};
pub use print::{json, text};

use crate::engine::check::{self, Check, Kind, Maker, Outcome};
use crate::layers::privileges::capabilities;
use crate::mountinfo::parse_mountinfo;
use anyhow::{bail, Result};
use std::os::unix::fs::MetadataExt;

/// One layer as found: on, off or in part, and the facts that say so.
pub struct Found {
    pub layer: u8,
    pub title: &'static str,
    pub on: On,
    /// A few words, for a table's cell.
    pub summary: String,
    pub facts: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum On {
    Yes,
    Part,
    No,
}

impl On {
    fn word(self) -> &'static str {
        match self {
            On::Yes => "yes",
            On::Part => "part",
            On::No => "no",
        }
    }
    fn of(all: &[bool]) -> On {
        match (all.iter().all(|b| *b), all.iter().any(|b| *b)) {
            (true, _) => On::Yes,
            (false, true) => On::Part,
            (false, false) => On::No,
        }
    }
}

/// What a telling system call got inside.
pub struct Call {
    pub name: &'static str,
    pub answer: String,
}

/// An escape of the arc, tried.
pub struct EscapeTried {
    pub name: &'static str,
    /// "open", "closed" or "not tried".
    pub state: &'static str,
    pub detail: String,
}

pub struct Inspected {
    pub pid: i32,
    pub maker: String,
    pub root: String,
    pub layers: Vec<Found>,
    pub calls: Vec<Call>,
    pub escapes: Vec<EscapeTried>,
}

/// The process to inspect: a PID, or the name of one of lab's containers.
pub fn target(what: &str) -> Result<i32> {
    if let Ok(pid) = what.parse::<i32>() {
        if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process {pid} runs here: give the PID of a container's process, as the host numbers it (docker inspect -f '{{{{.State.Pid}}}}' NAME)");
        }
        return Ok(pid);
    }
    match crate::engine::state::running()
        .into_iter()
        .find(|c| c.name == what)
    {
        Some(c) => c.pid.ok_or_else(|| {
            anyhow::anyhow!("container {what} is still starting: try again in a moment")
        }),
        None => bail!("{what} is neither a PID nor a container of lab's (sudo lab ps lists them)"),
    }
}

pub fn look(pid: i32) -> Result<Inspected> {
    let (pid, _) = check::graded(nix::unistd::Pid::from_raw(pid));
    let pid = pid.as_raw();
    // Who made it, for the checks run below, and in words for the screen.
    let (maker, who) = match crate::engine::state::container_of(pid) {
        Some(c) => (
            Maker::Lab,
            format!(
                "lab (container {}, step {})",
                c.name,
                c.step.map_or("?".into(), |s| s.to_string())
            ),
        ),
        None => match check::maker_of(pid) {
            Maker::Other(who) => (Maker::Other(who.clone()), who),
            other => (
                other,
                "the lessons' recipe typed by hand, or a plain process of the host".to_string(),
            ),
        },
    };
    let found = check::find_root(pid);
    let status = capabilities::Status::of(&pid.to_string())
        .ok_or_else(|| anyhow::anyhow!("process {pid} has gone"))?;
    let ns = |kind: &str| {
        (
            check::ns_inode(&pid.to_string(), kind),
            check::ns_inode("self", kind),
        )
    };
    let own = |kind: &str| {
        let (theirs, ours) = ns(kind);
        theirs.is_some() && theirs != ours
    };
    let ns_fact = |kind: &str, what: &str| {
        let (theirs, ours) = ns(kind);
        let n = |i: Option<u64>| i.map_or("?".into(), |i| i.to_string());
        match own(kind) {
            true => format!(
                "{kind} {}, its own (the host's: {}): {what}",
                n(theirs),
                n(ours)
            ),
            false => format!("{kind} {}, the host's: {what}", n(theirs)),
        }
    };
    let mounts = parse_mountinfo(
        &std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
    );
    let root_mount = mounts.iter().rev().find(|m| m.mount_point == "/");
    let mut layers = Vec::new();

    // 1. A root of its own.
    let host_root = std::fs::metadata("/").map(|m| (m.dev(), m.ino())).ok();
    let its_root = std::fs::metadata(format!("/proc/{pid}/root"))
        .map(|m| (m.dev(), m.ino()))
        .ok();
    let own_root = its_root.is_some() && its_root != host_root;
    layers.push(Found {
        layer: 1,
        title: "a root of its own",
        on: On::of(&[own_root]),
        summary: match own_root {
            true => "a root of its own".into(),
            false => "the host's /".into(),
        },
        facts: vec![match own_root {
            true => format!("its / is {}", found.path.display()),
            false => "its / is the host's /".into(),
        }],
    });

    // 2. A mount namespace, and its own /dev.
    // A tmpfs with a few nodes is its own /dev; devtmpfs is the kernel's,
    // with every device of the host.
    let dev_fs = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == "/dev")
        .map(|m| m.fs_type.clone());
    // A tmpfs can hold the host's disks too (docker run --privileged fills it
    // with every device): its block devices say so.
    let disks = std::fs::read_dir(format!("/proc/{pid}/root/dev"))
        .map(|d| {
            use std::os::unix::fs::FileTypeExt;
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
                .count()
        })
        .unwrap_or(0);
    let own_dev = dev_fs.as_deref().is_some_and(|f| f != "devtmpfs") && disks == 0;
    let dev = match dev_fs.as_deref() {
        None => "the root filesystem's".to_string(),
        Some("devtmpfs") => "a devtmpfs: the host's devices".to_string(),
        Some(fs) if disks > 0 => format!("a {fs} with {disks} block devices: the host's disks"),
        Some(fs) => format!("a {fs} without block devices"),
    };
    layers.push(Found {
        layer: 2,
        title: "mount namespace, own /dev",
        on: On::of(&[own("mnt"), own_dev]),
        summary: format!(
            "{} mount table, /dev {}",
            if own("mnt") { "own" } else { "the host's" },
            match dev_fs.as_deref() {
                Some("devtmpfs") => "the host's (devtmpfs)",
                Some(_) if disks > 0 => "with the host's disks",
                Some(_) => "its own",
                None => "of the root filesystem",
            }
        ),
        facts: vec![
            ns_fact("mnt", &format!("{} mounts", mounts.len())),
            format!("/dev is {dev}"),
        ],
    });

    // 3. A pid namespace, and PID 1.
    let first = first_process(pid);
    let (first_fact, first_summary) = match &first {
        Some(f) => (f.fact(), f.summary()),
        None => (
            "PID 1 of its namespace: not found (the host's init, or it has ended)".to_string(),
            "not found".to_string(),
        ),
    };
    layers.push(Found {
        layer: 3,
        title: "pid namespace",
        on: On::of(&[own("pid")]),
        summary: format!(
            "{}; PID 1: {}",
            if own("pid") { "own" } else { "the host's" },
            first_summary
        ),
        facts: vec![ns_fact("pid", &nspid(pid)), first_fact],
    });

    // 4. uts and ipc.
    let hostname = hostname_of(pid).unwrap_or_else(|| "?".into());
    layers.push(Found {
        layer: 4,
        title: "uts and ipc namespaces",
        on: On::of(&[own("uts"), own("ipc")]),
        summary: match (own("uts"), own("ipc")) {
            (true, true) => "own hostname and IPC".into(),
            (true, false) => "own hostname, the host's IPC".into(),
            (false, true) => "the host's hostname, own IPC".into(),
            (false, false) => "the host's hostname and IPC".into(),
        },
        facts: vec![
            ns_fact(
                "uts",
                &format!(
                    "hostname {hostname} (the host's: {})",
                    check::host_hostname()
                ),
            ),
            ns_fact("ipc", "System V IPC"),
        ],
    });

    // 5. Network.
    let (links, way_out) = crate::layers::network::links_and_way_out(pid);
    layers.push(Found {
        layer: 5,
        title: "network namespace",
        on: match (own("net"), way_out.is_some()) {
            (true, true) => On::Yes,
            (true, false) => On::Part,
            _ => On::No,
        },
        summary: match (own("net"), &way_out) {
            (false, _) => "the host's network".to_string(),
            (true, None) => format!("own, {} only: no way out", links.join(", ")),
            // Names only: addresses change from one machine to the next.
            (true, Some(_)) => format!(
                "own: {}, a default route",
                links
                    .iter()
                    .filter_map(|l| l.split(' ').next().filter(|n| *n != "lo"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        facts: vec![
            ns_fact("net", &format!("interfaces {}", links.join(", "))),
            way_out.unwrap_or_else(|| "no default route: no way out".into()),
        ],
    });

    // 6. Cgroup limits, and a cgroup namespace.
    let limits = crate::show::cgroup_limits(pid);
    let limited: Vec<bool> = limits.iter().map(|(_, l)| l.is_some()).collect();
    let mut facts = vec![limits
        .iter()
        .map(|(c, l)| format!("{c} {}", l.as_deref().unwrap_or("no limit")))
        .collect::<Vec<_>>()
        .join(", ")];
    facts.push(ns_fact("cgroup", "cgroup paths"));
    layers.push(Found {
        layer: 6,
        title: "cgroup limits",
        on: On::of(&limited),
        summary: format!(
            "{}; cgroup namespace {}",
            limits
                .iter()
                .map(|(c, l)| format!("{c} {}", l.as_deref().unwrap_or("none")))
                .collect::<Vec<_>>()
                .join(", "),
            if own("cgroup") {
                "its own"
            } else {
                "the host's"
            }
        ),
        facts,
    });

    // 7. An overlay: the image below, its own layer on top.
    let root = crate::show::root_filesystem(pid);
    layers.push(Found {
        layer: 7,
        title: "overlay filesystem",
        on: On::of(&[root.fs_type == "overlay" && root.upper.is_some()]),
        summary: match root.fs_type.as_str() {
            "overlay" => format!("overlay, {} read-only layer(s) below", root.lower.len()),
            other => format!("a directory ({other}), no overlay"),
        },
        facts: vec![match root.fs_type.as_str() {
            "overlay" => format!(
                "/ is an overlay: {} read-only layer(s), its own layer {}",
                root.lower.len(),
                root.upper.as_deref().unwrap_or("none")
            ),
            other => format!(
                "/ is a {other} ({}), not an overlay",
                root_mount.map_or("?".into(), |m| m.source.clone())
            ),
        }],
    });

    // 8. Privileges.
    let all = (1u64 << (capabilities::last_cap() + 1)) - 1;
    let c = status.caps;
    let cut = c.bounding & all & !capabilities::docker_set() == 0;
    // The masks, from its mount table: something mounted over /proc/kcore
    // (or /proc/keys), and /proc/sys mounted read-only (the mount's own
    // options, the sixth field of a mountinfo line).
    let table = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let at = |point: &str| {
        table
            .lines()
            .filter(move |l| l.split(' ').nth(4) == Some(point))
            .collect::<Vec<_>>()
    };
    let masked = !at("/proc/kcore").is_empty() || !at("/proc/keys").is_empty();
    let sys_ro = at("/proc/sys")
        .last()
        .and_then(|l| l.split(' ').nth(5))
        .is_some_and(|o| o.split(',').any(|o| o == "ro"));
    let masks = masked && sys_ro;
    layers.push(Found {
        layer: 8,
        title: "capabilities, seccomp, nnp, masks",
        on: On::of(&[cut, status.seccomp == 2, status.no_new_privs, masks]),
        summary: format!(
            "capabilities {}; seccomp {}; no_new_privs {}; masked paths {}",
            capabilities::known(c.bounding & all)
                .map_or(format!("{} kept", (c.bounding & all).count_ones()), |k| {
                    format!("{k} ({})", (c.bounding & all).count_ones())
                }),
            if status.seccomp == 2 {
                "filter"
            } else {
                "none"
            },
            if status.no_new_privs {
                "set"
            } else {
                "not set"
            },
            if masks { "yes" } else { "no" }
        ),
        facts: vec![
            format!(
                "capabilities: {}",
                capabilities::described(c.bounding & all)
            ),
            format!(
                "seccomp: {}; no_new_privs: {}",
                match status.seccomp {
                    0 => "none".to_string(),
                    1 => "strict".to_string(),
                    _ => format!("filter ({} installed)", status.seccomp_filters),
                },
                if status.no_new_privs {
                    "set"
                } else {
                    "not set"
                }
            ),
            format!(
                "masked paths: /proc/kcore {}, /proc/sys {}",
                if masked { "covered" } else { "open" },
                if sys_ro { "read-only" } else { "writable" }
            ),
        ],
    });

    // 9. A user namespace.
    let map = |f: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{f}"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (uids, gids) = (map("uid_map"), map("gid_map"));
    let root_is_root = uids.split("; ").any(|l| l.starts_with("0 0 "));
    // The host's user for root: the line of the map whose first ID is 0.
    let root_host = uids.split("; ").find_map(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        (w.first() == Some(&"0"))
            .then(|| w.get(1).copied())
            .flatten()
    });
    layers.push(Found {
        layer: 9,
        title: "user namespace",
        on: On::of(&[own("user") && !root_is_root]),
        summary: match (root_is_root, root_host) {
            (true, _) => "root is the host's root".into(),
            (false, Some(host)) => format!("root is user {host} of the host"),
            (false, None) => "root is no user of the host".into(),
        },
        facts: vec![
            format!("uid_map {uids}; gid_map {gids}"),
            match root_is_root {
                true => "root inside is the host's root".into(),
                false => match root_host {
                    Some(host) => format!("root inside is user {host} of the host"),
                    None => "root inside is no user of the host".into(),
                },
            },
        ],
    });

    // What a probe with the container's restrictions meets: a few telling
    // system calls, and the escapes.
    let escapes: Vec<Check> = check::checks_for(crate::engine::curriculum::last_step())
        .into_iter()
        .filter(|c| matches!(c.kind, Kind::Escape(_)))
        .collect();
    let names: Vec<&'static str> = escapes.iter().map(|c| c.name).collect();
    let mut these = escapes;
    these.push(Check {
        layer: 8,
        name: "system calls",
        hint: "",
        kind: Kind::Confined(telling_calls),
    });
    let reports = check::run_these(
        these,
        crate::engine::curriculum::last_step(),
        nix::unistd::Pid::from_raw(pid),
        &found.path,
        None,
        maker,
    )?;
    let mut calls = Vec::new();
    let mut escapes = Vec::new();
    for r in reports {
        if names.contains(&r.name) {
            escapes.push(EscapeTried {
                name: r.name,
                state: match r.outcome {
                    Outcome::Pass(_) => "closed",
                    Outcome::Fail(_) => "open",
                    Outcome::Skip(_) => "not tried",
                },
                detail: r.outcome.detail().to_string(),
            });
        } else {
            calls = calls_of(r.outcome.detail());
        }
    }
    Ok(Inspected {
        pid,
        maker: who,
        root: found.how,
        layers,
        calls,
        escapes,
    })
}

#[cfg(test)]
mod tests {
    use super::On;

    #[test]
    fn a_layer_is_on_in_part_or_off_by_its_facts() {
        assert_eq!(On::of(&[true, true]), On::Yes);
        assert_eq!(On::of(&[true, false]), On::Part);
        assert_eq!(On::of(&[false, false]), On::No);
    }
}
