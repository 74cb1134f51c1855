//! `lab show [NAME]`: a running container drawn from the kernel's state, for a
//! second terminal during a class.
//!
//! Nothing here comes from lab's own bookkeeping but the container's name, its
//! first process and its address: the rest is read where the kernel keeps it.
//! Its namespaces are the inode numbers of /proc/PID/ns/*, set beside the host's
//! (those of `lab show` itself, run on the host); its processes are those whose /proc/PID/ns/pid is the
//! container's, with both of their numbers from the NSpid line of
//! /proc/PID/status; its cgroups are the lines of /proc/PID/cgroup, with the
//! usage and limit files of each; its root is the first line of its mount table.

use crate::engine::namespace::NAMESPACES;
use crate::engine::state::{self, Running};
use crate::mountinfo::parse_mountinfo;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The order `lab show` lists the namespaces in, by their file in /proc/PID/ns;
/// what each one holds comes from crate::engine::namespace (one not listed here goes last).
const ORDER: [&str; 7] = ["mnt", "uts", "ipc", "pid", "net", "cgroup", "user"];

/// Every namespace of crate::engine::namespace: its file and what it holds,
/// in [`ORDER`].
fn namespace_kinds() -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<_> = NAMESPACES.iter().map(|r| (r.file, r.holds)).collect();
    all.sort_by_key(|(file, _)| ORDER.iter().position(|o| o == file).unwrap_or(ORDER.len()));
    all
}

/// What `lab show` found of one container.
pub struct Shown {
    name: String,
    step: Option<u8>,
    pid: i32,
    namespaces: Vec<(String, String, u64, u64)>,
    processes: Vec<(i32, i32, String)>,
    network: Option<Network>,
    cgroups: Vec<Cgroup>,
    root: Root,
}

struct Network {
    address: String,
    host_end: String,
    bridge: Option<String>,
    gateway: Option<String>,
    uplink: Option<String>,
    published: Vec<String>,
}

struct Cgroup {
    controller: String,
    path: String,
    usage: Option<String>,
    limit: Option<String>,
}

pub struct Root {
    pub fs_type: String,
    pub lower: Vec<String>,
    pub upper: Option<String>,
    upper_bytes: Option<u64>,
    source: String,
}

/// The container to show: by name, or the only one running.
pub fn find(name: Option<&str>) -> Result<Running> {
    let all = state::running();
    let with_pid = |c: &Running| c.pid.is_some();
    match name {
        Some(n) => match all.into_iter().find(|c| c.name == n) {
            Some(c) if with_pid(&c) => Ok(c),
            Some(_) => bail!("container {n} is still starting: try again in a moment"),
            None => bail!("no container named {n} is running: see sudo lab ps"),
        },
        None => {
            let mut running: Vec<Running> = all.into_iter().filter(with_pid).collect();
            match running.len() {
                0 => bail!("no container is running: start one with sudo lab step N, then run sudo lab show in a second terminal"),
                1 => Ok(running.remove(0)),
                _ => bail!(
                    "{} containers are running ({}): name one, sudo lab show NAME",
                    running.len(),
                    running.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
}

pub fn look(c: &Running) -> Result<Shown> {
    let pid = c.pid.unwrap_or_default();
    let ns = |p: &str, kind: &str| -> u64 {
        std::fs::read_link(format!("{p}/ns/{kind}"))
            .ok()
            .and_then(|l| {
                let l = l.to_string_lossy().into_owned();
                l.split('[').nth(1)?.trim_end_matches(']').parse().ok()
            })
            .unwrap_or(0)
    };
    let me = format!("/proc/{pid}");
    if !Path::new(&me).exists() {
        bail!(
            "container {} has gone (its PID {pid} no longer runs)",
            c.name
        );
    }
    let namespaces = namespace_kinds()
        .into_iter()
        .map(|(kind, what)| {
            (
                kind.to_string(),
                what.to_string(),
                ns(&me, kind),
                ns("/proc/self", kind),
            )
        })
        .collect();
    // Every process of its pid namespace, with its number inside and outside.
    let own_pid_ns = ns(&me, "pid");
    let shares_pid_ns = own_pid_ns == ns("/proc/self", "pid");
    // Its root directory (device, inode), through /proc/PID/root.
    let root_of = |dir: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("{dir}/root"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let own_root = root_of(&me);
    let mut processes = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(host_pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let dir = format!("/proc/{host_pid}");
        if ns(&dir, "pid") != own_pid_ns {
            continue;
        }
        // Steps 1 and 2 have no pid namespace: the container's processes are
        // those whose root is its root.
        if shares_pid_ns && root_of(&dir) != own_root {
            continue;
        }
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
        let inside = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("{dir}/cmdline")).unwrap_or_default();
        let mut command: String = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if command.is_empty() {
            command = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("")
                .trim()
                .to_string();
        }
        processes.push((inside, host_pid, command));
    }
    processes.sort();
    let network = c
        .address
        .as_ref()
        .map(|address| network(address, &c.published));
    // Its own cgroups (step 6) end in its name; before, it shares its starter's.
    let cgroups: Vec<Cgroup> = cgroups(pid)
        .into_iter()
        .filter(|g| g.path.ends_with(&format!("/{}", c.name)))
        .collect();
    let root = root_filesystem(pid);
    Ok(Shown {
        name: c.name.clone(),
        step: c.step,
        pid,
        namespaces,
        processes,
        network,
        cgroups,
        root,
    })
}

fn network(address: &str, published: &[String]) -> Network {
    let host_end = crate::layers::network::host_end_of(address).unwrap_or_default();
    let mut bridge = None;
    let mut gateway = None;
    let mut uplink = None;
    if let Ok(mut nl) = crate::netlink::Netlink::open() {
        let links = nl.links().unwrap_or_default();
        let name_of = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
        if let Some(master) = links
            .iter()
            .find(|l| l.name == host_end)
            .and_then(|l| l.master)
        {
            bridge = name_of(master);
            gateway = nl
                .addresses()
                .unwrap_or_default()
                .into_iter()
                .find(|a| a.index == master)
                .map(|a| format!("{}/{}", a.ip, a.prefix));
        }
        uplink = nl
            .routes()
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.prefix == 0)
            .and_then(|r| r.oif)
            .and_then(name_of);
    }
    Network {
        address: address.to_string(),
        host_end,
        bridge,
        gateway,
        uplink,
        published: published.to_vec(),
    }
}

/// Its memory, CPU and pids limits in words, None for "no limit" (`lab
/// inspect`).
pub fn cgroup_limits(pid: i32) -> Vec<(String, Option<String>)> {
    let all = cgroups(pid);
    ["memory", "cpu", "pids"]
        .iter()
        .map(|c| {
            let limit = all
                .iter()
                .find(|g| g.controller == *c)
                .and_then(|g| g.limit.clone())
                .map(|l| match *c {
                    "memory" => bytes(&l),
                    "cpu" => cpu_share(&l),
                    _ => l,
                })
                .filter(|l| l != "no limit" && l != "max");
            (c.to_string(), limit)
        })
        .collect()
}

/// Its cgroup in each hierarchy, with what it uses against its limit.
fn cgroups(pid: i32) -> Vec<Cgroup> {
    let mounts =
        parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        // Where that hierarchy is mounted: cgroup2, or the v1 one with the controller.
        let mount = mounts.iter().find(|m| match controllers {
            "" => m.fs_type == "cgroup2",
            c => {
                m.fs_type == "cgroup" && c.split(',').all(|c| m.options.split(',').any(|o| o == c))
            }
        });
        let Some(mount) = mount else { continue };
        let dir = PathBuf::from(&mount.mount_point).join(path.trim_start_matches('/'));
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .map(|s| s.trim().to_string())
        };
        for (controller, usage, limit) in [
            (
                "memory",
                read("memory.current").or_else(|| read("memory.usage_in_bytes")),
                read("memory.max").or_else(|| read("memory.limit_in_bytes")),
            ),
            ("pids", read("pids.current"), read("pids.max")),
            (
                "cpu",
                None,
                read("cpu.max").or_else(|| {
                    Some(format!(
                        "{} {}",
                        read("cpu.cfs_quota_us")?,
                        read("cpu.cfs_period_us")?
                    ))
                }),
            ),
        ] {
            let here = controllers.is_empty() || controllers.split(',').any(|c| c == controller);
            if here && (usage.is_some() || limit.is_some()) {
                out.push(Cgroup {
                    controller: controller.to_string(),
                    path: dir.display().to_string(),
                    usage,
                    limit,
                });
            }
        }
    }
    out.sort_by(|a, b| a.controller.cmp(&b.controller));
    out.dedup_by(|a, b| a.controller == b.controller);
    out
}

/// What its `/` is: the root filesystem, or an overlay of layers.
pub fn root_filesystem(pid: i32) -> Root {
    let mounts = parse_mountinfo(
        &std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
    );
    let Some(m) = mounts.iter().find(|m| m.mount_point == "/") else {
        return Root {
            fs_type: "?".into(),
            lower: vec![],
            upper: None,
            upper_bytes: None,
            source: String::new(),
        };
    };
    let option = |key: &str| {
        m.options
            .split(',')
            .find_map(|o| o.strip_prefix(key).map(String::from))
    };
    let lower: Vec<String> = option("lowerdir=")
        .map(|l| l.split(':').map(crate::mountinfo::unescape).collect())
        .unwrap_or_default();
    let upper = option("upperdir=").map(|u| crate::mountinfo::unescape(&u));
    let upper_bytes = upper.as_ref().map(|u| du(Path::new(u)));
    Root {
        fs_type: m.fs_type.clone(),
        lower,
        upper,
        upper_bytes,
        source: crate::mountinfo::unescape(&m.root),
    }
}

/// Bytes of the files below `dir` (not following links).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                todo.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn bytes(text: &str) -> String {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 << 40 => "no limit".into(),
        Ok(n) if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1 << 20) as f64),
        Ok(n) if n >= 1 << 10 => format!("{:.1} KB", n as f64 / (1 << 10) as f64),
        Ok(n) => format!("{n} B"),
        Err(_) if text == "max" => "no limit".into(),
        Err(_) => text.to_string(),
    }
}

/// A CPU limit (v2 `QUOTA PERIOD`, or v1's two files) as a share of one CPU.
fn cpu_share(text: &str) -> String {
    let mut f = text.split_whitespace();
    match (f.next(), f.next().and_then(|p| p.parse::<f64>().ok())) {
        (Some("max") | Some("-1"), _) => "no limit".into(),
        (Some(q), Some(p)) => match q.parse::<f64>() {
            Ok(q) => format!("{:.0}% of one CPU ({q} of every {p} µs)", q / p * 100.0),
            Err(_) => text.into(),
        },
        _ => text.into(),
    }
}

/// Plain text, at most 100 columns.
pub fn text(s: &Shown) -> String {
    let mut o = String::new();
    let step = s.step.map_or("?".into(), |n| n.to_string());
    let _ = writeln!(
        o,
        "Container {} · step {step} · its first process is PID {} on the host",
        s.name, s.pid
    );
    let section = |o: &mut String, title: &str| {
        let _ = writeln!(
            o,
            "\n── {title} {}",
            "─".repeat(66usize.saturating_sub(title.chars().count()).max(3))
        );
    };
    section(
        &mut o,
        "Namespaces (inode numbers: the same number, the same namespace)",
    );
    for (kind, what, own, host) in &s.namespaces {
        let verdict = if own == host { "the host's" } else { "its own" };
        let _ = writeln!(
            o,
            "  {kind:<7} {own:<12} host {host:<12} {verdict:<11} {what}"
        );
    }
    section(&mut o, "Processes (PID inside, PID on the host)");
    for (inside, host, command) in &s.processes {
        let mut c = command.clone();
        if c.chars().count() > 70 {
            c = c.chars().take(69).collect::<String>() + "…";
        }
        let _ = writeln!(o, "  {inside:>6} {host:>8}  {c}");
    }
    if let Some(n) = &s.network {
        section(&mut o, "Network (a packet's way out)");
        let _ = writeln!(o, "  container  eth0 {}", n.address);
        let _ = writeln!(o, "      │      veth pair: the other end is on the host");
        let _ = writeln!(
            o,
            "  host       {} ── bridge {} (gateway {})",
            n.host_end,
            n.bridge.as_deref().unwrap_or("?"),
            n.gateway.as_deref().unwrap_or("?")
        );
        let _ = writeln!(
            o,
            "      │      routed, then MASQUERADE (NAT): it leaves with the host's address"
        );
        let _ = writeln!(
            o,
            "  out        {}",
            n.uplink.as_deref().unwrap_or("no default route")
        );
        for p in &n.published {
            let (host, port) = p.split_once(':').unwrap_or((p, p));
            let ip = n.address.split('/').next().unwrap_or("");
            let _ = writeln!(o, "  published  host port {host} ── DNAT ──▶ {ip}:{port}");
        }
    }
    if !s.cgroups.is_empty() {
        section(&mut o, "Cgroups (what it uses against its limits)");
        for c in &s.cgroups {
            let line = match c.controller.as_str() {
                "memory" => format!(
                    "{} of {}",
                    bytes(c.usage.as_deref().unwrap_or("?")),
                    bytes(c.limit.as_deref().unwrap_or("?"))
                ),
                "pids" => format!(
                    "{} processes of {}",
                    c.usage.as_deref().unwrap_or("?"),
                    c.limit.as_deref().unwrap_or("?")
                ),
                _ => cpu_share(c.limit.as_deref().unwrap_or("")),
            };
            let _ = writeln!(o, "  {:<7} {line}", c.controller);
            let _ = writeln!(o, "          {}", c.path);
        }
    }
    section(&mut o, "Root filesystem");
    if s.root.fs_type == "overlay" {
        let _ = writeln!(
            o,
            "  overlay: the image's layers read-only below, the container's own on top"
        );
        if let Some(u) = &s.root.upper {
            let _ = writeln!(
                o,
                "  upper    {u} ({} written)",
                bytes(&s.root.upper_bytes.unwrap_or(0).to_string())
            );
        }
        for (i, l) in s.root.lower.iter().enumerate() {
            let _ = writeln!(o, "  lower {:<2} {l}", i + 1);
        }
    } else {
        let _ = writeln!(o, "  {} {}", s.root.fs_type, s.root.source);
    }
    o
}

pub fn json(s: &Shown) -> String {
    let v: Value = json!({
        "name": s.name,
        "step": s.step,
        "pid": s.pid,
        "namespaces": s.namespaces.iter().map(|(k, _, own, host)| json!({"kind": k, "inode": own, "host": host, "own": own != host})).collect::<Vec<_>>(),
        "processes": s.processes.iter().map(|(i, h, c)| json!({"pid": i, "host_pid": h, "command": c})).collect::<Vec<_>>(),
        "network": s.network.as_ref().map(|n| json!({"address": n.address, "host_end": n.host_end, "bridge": n.bridge, "gateway": n.gateway, "uplink": n.uplink, "published": n.published})),
        "cgroups": s.cgroups.iter().map(|c| json!({"controller": c.controller, "path": c.path, "usage": c.usage, "limit": c.limit})).collect::<Vec<_>>(),
        "root": {"type": s.root.fs_type, "source": s.root.source, "lower": s.root.lower, "upper": s.root.upper, "upper_bytes": s.root.upper_bytes},
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn namespaces_are_listed_in_their_order() {
        let files: Vec<&str> = super::namespace_kinds().iter().map(|k| k.0).collect();
        assert_eq!(files, super::ORDER);
    }
}
