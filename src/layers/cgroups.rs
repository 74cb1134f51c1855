//! Layer 6: cgroups, to limit what the container may use.
//!
//! Namespaces limit what a process can *see*; control groups limit what it can
//! *use*. A cgroup is a directory in a special filesystem: make one, write limits
//! into its files, write a process ID into its `cgroup.procs`, and that process and
//! every child it starts are held to those limits by the kernel. (On v1 lab writes
//! 0 to `tasks` instead: the kernel moves the writing thread alone, without the
//! machine-wide lock that moving a whole process takes.)
//!
//! Two versions are in use. cgroup v2 (Ubuntu 24.04, Debian 12 with systemd) has
//! one tree at /sys/fs/cgroup for every controller: `memory.max`, `cpu.max`,
//! `pids.max`; a controller must be switched on in each parent's
//! `cgroup.subtree_control`, and a cgroup that holds processes may not hand
//! controllers to children (the no-internal-process rule). cgroup v1 has a tree
//! per controller (/sys/fs/cgroup/memory, /sys/fs/cgroup/cpu, ...), with other
//! file names: `memory.limit_in_bytes`, `cpu.cfs_quota_us`. lab finds out which
//! from the filesystem type of the mounts (statfs), never from the distribution.

use super::Layer;
use crate::check::{Check, Kind, Outcome, Probe};
use crate::plan::{quote_path, Action, Command, Limits, MakeDirs, Phase, Spec};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

pub const LAYER: Layer = Layer {
    number: 6,
    title: "cgroup limits: memory, cpu, pids",
    idea: "the container gets limits the kernel enforces: memory, CPU time, number of processes",
    namespaces: &[],
    commands,
    note: |_| None,
    checks,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    V1,
    V2,
}

/// Where each controller's cgroup of a container is.
pub struct Cgroups {
    pub version: Version,
    /// The parent directories to create and to switch controllers on in (v2),
    /// from the top; the container's own directories, one per hierarchy (v1) or
    /// one (v2).
    pub v2_parents: Vec<PathBuf>,
    pub memory: PathBuf,
    pub cpu: PathBuf,
    /// Where CPU usage is counted: the cpu cgroup on v2, cpuacct on v1.
    pub usage: PathBuf,
    pub pids: PathBuf,
}

impl Cgroups {
    /// Every directory of the container, deduplicated (on v2 they are one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![
            self.memory.clone(),
            self.cpu.clone(),
            self.usage.clone(),
            self.pids.clone(),
        ];
        dirs.dedup();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroups of container `name` under `limits.parent`, on the version in use
/// (or the one asked for, to print its commands).
pub fn locate(name: &str, limits: &Limits) -> Result<Cgroups> {
    let version = match limits.version {
        Some(v) => v,
        None => detect()?,
    };
    let place = |hierarchy_root: &Path, controller: &str| -> PathBuf {
        let parent = limits.parent.trim_end_matches('/');
        let base = if let Some(abs) = parent.strip_prefix('/') {
            PathBuf::from(abs)
        } else {
            // Relative: below lab's own cgroup in this hierarchy.
            let own = own_cgroup(controller).unwrap_or_default();
            Path::new(own.trim_start_matches('/')).join(parent)
        };
        hierarchy_root.join(base).join(name)
    };
    Ok(match version {
        Version::V2 => {
            let dir = place(Path::new(CGROUP_ROOT), "");
            let mut parents = Vec::new();
            let mut p = dir.parent();
            while let Some(d) = p {
                if d == Path::new(CGROUP_ROOT) || !d.starts_with(CGROUP_ROOT) {
                    break;
                }
                parents.push(d.to_path_buf());
                p = d.parent();
            }
            parents.push(PathBuf::from(CGROUP_ROOT));
            parents.reverse();
            Cgroups {
                version,
                v2_parents: parents,
                memory: dir.clone(),
                cpu: dir.clone(),
                usage: dir.clone(),
                pids: dir,
            }
        }
        Version::V1 => {
            let mount = |c: &str| v1_mount(c).unwrap_or_else(|| Path::new(CGROUP_ROOT).join(c));
            Cgroups {
                version,
                v2_parents: vec![],
                memory: place(&mount("memory"), "memory"),
                cpu: place(&mount("cpu"), "cpu"),
                usage: place(&mount("cpuacct"), "cpuacct"),
                pids: place(&mount("pids"), "pids"),
            }
        }
    })
}

/// cgroup v2 when /sys/fs/cgroup is a cgroup2 filesystem offering memory, cpu and
/// pids; cgroup v1 when each of them has a cgroup (v1) filesystem of its own.
pub fn detect() -> Result<Version> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let needed = ["memory", "cpu", "pids"];
    if statfs(CGROUP_ROOT).map(|s| s.filesystem_type()) == Ok(CGROUP2_SUPER_MAGIC) {
        let offered = std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
            .unwrap_or_default();
        let missing: Vec<&str> = needed
            .iter()
            .filter(|c| !offered.split_whitespace().any(|o| o == **c))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(Version::V2);
        }
        bail!(
            "cgroup v2 is mounted at {CGROUP_ROOT} but does not offer {}: they are bound to cgroup v1 or switched off in the kernel",
            missing.join(", ")
        );
    }
    for c in needed.iter().chain(&["cpuacct"]) {
        let ok = v1_mount(c)
            .map(|m| statfs(&m).map(|s| s.filesystem_type()) == Ok(CGROUP_SUPER_MAGIC))
            .unwrap_or(false);
        if !ok {
            bail!("the {c} controller is not available: neither cgroup v2 at {CGROUP_ROOT} offers it nor is a cgroup v1 hierarchy of it mounted (mount -t cgroup -o {c} cgroup {CGROUP_ROOT}/{c})");
        }
    }
    Ok(Version::V1)
}

/// Where the cgroup v1 hierarchy holding `controller` is mounted.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    // The host's cgroup mounts, read once: lab asks several times per container,
    // and the mount table grows with every running container's overlay.
    use std::sync::OnceLock;
    static V1: OnceLock<Vec<(String, String)>> = OnceLock::new();
    V1.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        super::mount::parse_mountinfo(&text)
            .into_iter()
            .filter(|m| m.fs_type == "cgroup")
            .map(|m| (m.mount_point.to_string(), m.options.to_string()))
            .collect()
    })
    .iter()
    .find(|(_, options)| options.split(',').any(|o| o == controller))
    .map(|(mount_point, _)| PathBuf::from(mount_point))
}

/// lab's own cgroup in the hierarchy of `controller` ("" for v2), from /proc/self/cgroup.
fn own_cgroup(controller: &str) -> Option<String> {
    cgroup_of("self", controller)
}

/// The cgroup of process `pid` in the hierarchy of `controller` ("" for v2).
pub fn cgroup_of(pid: &str, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let found = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        found.then(|| path.to_string())
    })
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Vec<Command> {
    let cg = match locate(&spec.name, &spec.limits) {
        Ok(cg) => cg,
        // Printed as the failing command: lab step reports it before doing anything.
        Err(e) => {
            return vec![Command::at(
                Phase::Host,
                6,
                "find the cgroup controllers",
                Unavailable(format!("{e:#}")),
            )]
        }
    };
    let l = &spec.limits;
    let found = match (l.version, cg.version) {
        (Some(_), Version::V2) => "cgroup v2, as --cgroup asks",
        (Some(_), Version::V1) => "cgroup v1, as --cgroup asks",
        (None, Version::V2) => "cgroup v2 found here: /sys/fs/cgroup is a cgroup2 filesystem",
        (None, Version::V1) => {
            "cgroup v1 found here: memory, cpu and pids each have a cgroup filesystem"
        }
    };
    let mut c = vec![Command::at(
        Phase::Host,
        6,
        format!("{found}. A cgroup is a directory: make the container's (one per controller hierarchy on v1)"),
        MakeCgroups {
            dirs: cg.dirs(),
            name: spec.name.clone(),
        },
    )];
    let period = 100_000u64;
    let quota = ((l.cpus * period as f64).round() as u64).max(1000);
    match cg.version {
        Version::V2 => {
            for parent in &cg.v2_parents {
                c.push(Command::at(
                    Phase::Host,
                    6,
                    "hand the controllers down to the children of this cgroup: v2 switches them on level by level",
                    WriteFile::new(parent.join("cgroup.subtree_control"), "+memory +cpu +pids"),
                ));
            }
            c.push(Command::at(
                Phase::Host,
                6,
                "the memory limit, in bytes",
                WriteFile::new(cg.memory.join("memory.max"), l.memory_bytes),
            ));
            if swap_accounted(Version::V2, l.version.is_some()) {
                c.push(Command::at(
                    Phase::Host,
                    6,
                    "no swap: over the limit the kernel must kill, not swap out",
                    WriteFile::new(cg.memory.join("memory.swap.max"), 0),
                ));
            }
            c.push(Command::at(
                Phase::Host,
                6,
                "CPU time: QUOTA microseconds in every PERIOD of 100000",
                WriteFile::new(cg.cpu.join("cpu.max"), format!("{quota} {period}")),
            ));
            c.push(Command::at(
                Phase::Host,
                6,
                "the most processes (and threads) at once",
                WriteFile::new(cg.pids.join("pids.max"), l.pids),
            ));
        }
        Version::V1 => {
            c.push(Command::at(
                Phase::Host,
                6,
                "the memory limit, in bytes",
                WriteFile::new(cg.memory.join("memory.limit_in_bytes"), l.memory_bytes),
            ));
            if swap_accounted(Version::V1, l.version.is_some()) {
                c.push(Command::at(
                    Phase::Host,
                    6,
                    "memory plus swap, the same: over the limit the kernel must kill, not swap out",
                    WriteFile::new(
                        cg.memory.join("memory.memsw.limit_in_bytes"),
                        l.memory_bytes,
                    ),
                ));
            }
            c.push(Command::at(
                Phase::Host,
                6,
                "the CPU period, in microseconds",
                WriteFile::new(cg.cpu.join("cpu.cfs_period_us"), period),
            ));
            c.push(Command::at(
                Phase::Host,
                6,
                "CPU time allowed in each period",
                WriteFile::new(cg.cpu.join("cpu.cfs_quota_us"), quota),
            ));
            c.push(Command::at(
                Phase::Host,
                6,
                "the most processes (and threads) at once",
                WriteFile::new(cg.pids.join("pids.max"), l.pids),
            ));
        }
    }
    c.push(Command::at(
        Phase::Enter,
        6,
        match cg.version {
            Version::V2 => "first thing inside: this shell (the container's first process) joins the cgroup, and every process it starts is born in it",
            Version::V1 => "first thing inside: this shell (the container's first process) joins the cgroups, and every process it starts is born in them. Writing 0 to tasks moves the writer itself, one thread (a shell has one), which the kernel does without stopping every process of the machine from forking: about 0.1 ms, where $$ into cgroup.procs takes about 6 ms",
        },
        JoinCgroups(cg.version, cg.dirs()),
    ));
    c.push(Command::at(
        Phase::Teardown,
        6,
        "after exit, when no process is left in it, remove the cgroup",
        RemoveCgroups(cg.dirs()),
    ));
    c
}

/// Is swap accounted, so that a swap limit can be set? (Asked to print another
/// version's commands, lab assumes so, whatever this machine does.)
fn swap_accounted(version: Version, forced: bool) -> bool {
    if forced {
        return true;
    }
    match version {
        // memory.swap.max is part of the v2 memory controller (CONFIG_MEMCG_SWAP, on
        // in Debian's and Ubuntu's kernels).
        Version::V2 => true,
        Version::V1 => {
            v1_mount("memory").is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists())
        }
    }
}

/// `mkdir -p DIR...`, recorded first in the container's state so that a killed run
/// can be cleaned up.
struct MakeCgroups {
    dirs: Vec<PathBuf>,
    name: String,
}
/// `echo VALUE > FILE`
struct WriteFile {
    file: PathBuf,
    value: String,
}
/// `echo $$ > DIR/cgroup.procs` (v2), `echo 0 > DIR/tasks` for every DIR (v1)
struct JoinCgroups(Version, Vec<PathBuf>);
/// `rmdir DIR...`
struct RemoveCgroups(Vec<PathBuf>);
/// A step that cannot run here, and why.
struct Unavailable(String);

impl WriteFile {
    fn new(file: PathBuf, value: impl ToString) -> WriteFile {
        WriteFile {
            file,
            value: value.to_string(),
        }
    }
}

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for MakeCgroups {
    fn shell(&self) -> String {
        MakeDirs(self.dirs.clone()).shell()
    }
    fn apply(&self) -> Result<()> {
        // Recorded before they are made: the container's cgroups, and the parents
        // this run creates (removed when no other container uses them). Under a
        // lock: a parent must not be removed between another run's check that it
        // exists and its mkdir of a cgroup inside.
        let _lock = crate::state::lock("cgroups")?;
        let mut made = Vec::new();
        let mut parents = Vec::new();
        for d in &self.dirs {
            let mut p = d.parent();
            let mut missing = Vec::new();
            while let Some(dir) = p.filter(|dir| !dir.exists()) {
                missing.push(dir.display().to_string());
                p = dir.parent();
            }
            parents.extend(missing.iter().cloned());
            made.extend(missing);
            made.push(d.display().to_string());
        }
        // The parents go in a record all runs share: whichever container leaves
        // last removes them, not necessarily the one that made them.
        let shared = parents_record();
        let mut all: Vec<String> = std::fs::read_to_string(&shared)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        for p in parents {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        if !all.is_empty() {
            std::fs::write(&shared, all.join("\n") + "\n")
                .with_context(|| format!("recording {}", shared.display()))?;
        }
        let record = crate::state::run_dir()
            .join("containers")
            .join(&self.name)
            .join("cgroups");
        std::fs::write(&record, made.join("\n") + "\n")
            .with_context(|| format!("recording {}", record.display()))?;
        MakeDirs(self.dirs.clone()).apply()
    }
}

impl Action for WriteFile {
    fn shell(&self) -> String {
        let v = &self.value;
        let value = if v.contains(' ') {
            format!("\"{v}\"")
        } else {
            v.clone()
        };
        format!("echo {value} > {}", quote_path(&self.file))
    }
    fn apply(&self) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .with_context(|| format!("opening {}", self.file.display()))?;
        // One write, as echo does: cgroup files take a whole value per write.
        f.write_all(self.value.as_bytes())
            .map_err(|e| explain_write_error(e, &self.file, &self.value))
    }
}

/// The error of a cgroup file write, with what usually causes it.
fn explain_write_error(e: std::io::Error, file: &Path, value: &str) -> anyhow::Error {
    let why = match e.raw_os_error() {
        Some(nix::libc::EBUSY) if file.ends_with("cgroup.subtree_control") => {
            " (the no-internal-process rule: a cgroup that holds processes cannot hand controllers to child cgroups. Put the container's cgroup under one without processes: --cgroup-parent /lab)"
        }
        Some(nix::libc::ENOENT) if file.ends_with("cgroup.subtree_control") => {
            " (a controller is not available in the parent: see its cgroup.controllers)"
        }
        Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => " (run with sudo; in a delegated cgroup tree, it must be delegated to you)",
        Some(nix::libc::EINVAL) => " (the value is not one this file takes)",
        _ => "",
    };
    anyhow::anyhow!("writing {value} to {}: {e}{why}", file.display())
}

impl JoinCgroups {
    /// The file and the value: on v1, 0 in `tasks` is "the thread writing this"
    /// (moving a whole process through cgroup.procs makes the kernel take a lock
    /// that waits for an RCU grace period); v2 has no such shortcut for a process.
    fn file_and_value(&self) -> (&'static str, &'static str) {
        match self.0 {
            Version::V1 => ("tasks", "0"),
            Version::V2 => ("cgroup.procs", "$$"),
        }
    }
}

impl Action for JoinCgroups {
    fn shell(&self) -> String {
        let (file, value) = self.file_and_value();
        let lines: Vec<String> = self
            .1
            .iter()
            .map(|d| format!("echo {value} > {}", quote_path(&d.join(file))))
            .collect();
        lines.join("; ")
    }
    fn apply(&self) -> Result<()> {
        let (file, value) = self.file_and_value();
        // $$: our own PID as this pid namespace numbers it (1); the kernel reads
        // it in the writer's namespace, as it does for `echo $$`. lab is one
        // thread, so on v1 the whole process moves.
        let value = match value {
            "$$" => std::process::id().to_string(),
            v => v.to_string(),
        };
        for d in &self.1 {
            WriteFile::new(d.join(file), &value).apply()?;
        }
        Ok(())
    }
}

impl Action for RemoveCgroups {
    fn shell(&self) -> String {
        let dirs: Vec<String> = self.0.iter().map(|d| quote_path(d)).collect();
        format!("rmdir {}", dirs.join(" "))
    }
    fn apply(&self) -> Result<()> {
        for d in &self.0 {
            remove_cgroup(d)?;
        }
        Ok(())
    }
}

/// rmdir a cgroup once its last process is gone (the kernel may take a moment
/// after the processes were reaped).
/// Where the cgroup parents lab made are listed, for every run.
fn parents_record() -> PathBuf {
    crate::state::run_dir().join("cgroup-parents")
}

/// Remove the cgroup parents lab made that no container uses any more (rmdir
/// fails on a cgroup that still has children), deepest first, and forget them.
pub fn remove_unused_parents() -> Result<()> {
    let record = parents_record();
    if !record.exists() {
        return Ok(());
    }
    let _lock = crate::state::lock("cgroups")?;
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    let mut dirs: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    let kept: Vec<&str> = dirs
        .into_iter()
        .filter(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        })
        .collect();
    if kept.is_empty() {
        std::fs::remove_file(&record)?;
    } else {
        std::fs::write(&record, kept.join("\n") + "\n")?;
    }
    Ok(())
}

pub fn remove_cgroup(dir: &Path) -> Result<()> {
    for attempt in 0..200 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && attempt < 199 => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("rmdir {} (processes still inside?)", dir.display()))
            }
        }
    }
    Ok(())
}

impl Action for Unavailable {
    fn shell(&self) -> String {
        format!("# not possible here: {}", self.0)
    }
    fn apply(&self) -> Result<()> {
        bail!("{}", self.0)
    }
}

/// Move the calling process into every cgroup of process `target` it is not in
/// yet, as the container's own processes are (what `docker exec` does too).
pub fn join_cgroups_of(target: &str) -> Result<()> {
    for procs in cgroups_to_join(target)? {
        write_procs(&procs)?;
    }
    Ok(())
}

/// Move the calling process into the cgroup of this `cgroup.procs` file.
pub fn write_procs(procs: &Path) -> Result<()> {
    WriteFile::new(procs.to_path_buf(), std::process::id()).apply()
}

/// The `cgroup.procs` files of the cgroups of process `target` that the calling
/// process is not in.
pub fn cgroups_to_join(target: &str) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(format!("/proc/{target}/cgroup"))?;
    let mounts = super::mount::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?);
    let mut files = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let key = controllers.split(',').next().unwrap_or("");
        if cgroup_of("self", key).as_deref() == Some(path) {
            continue;
        }
        let mount = mounts.iter().find(|m| {
            if controllers.is_empty() {
                m.fs_type == "cgroup2"
            } else {
                m.fs_type == "cgroup" && m.options.split(',').any(|o| o == key)
            }
        });
        if let Some(m) = mount {
            files.push(
                Path::new(&m.mount_point)
                    .join(path.trim_start_matches('/'))
                    .join("cgroup.procs"),
            );
        }
    }
    Ok(files)
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(_step: u8) -> Vec<Check> {
    vec![
        Check {
            layer: 6,
            name: "the container's /proc/self/cgroup names its own cgroup",
            hint: "The container is still in lab's cgroup: it must join its own (its PID in cgroup.procs, or on v1 0 in tasks) before it runs anything. Compare `cat /proc/self/cgroup` inside and on the host.",
            kind: Kind::Inside(names_own_cgroup),
        },
        Check {
            layer: 6,
            name: "allocating over the memory limit is OOM-killed; the container lives on",
            hint: "Nothing was killed: no memory limit, or the process swapped instead (set memory.swap.max to 0). See memory.events (v2) or memory.failcnt (v1).",
            kind: Kind::Inside(memory_limit_kills),
        },
        Check {
            layer: 6,
            name: "a fork loop stops at the pids limit",
            hint: "fork never failed: no pids limit. See pids.max and pids.current of the container's cgroup.",
            kind: Kind::Inside(fork_loop_stops),
        },
        Check {
            layer: 6,
            name: "a busy loop gets about the CPU share of the limit",
            hint: "Either the busy loop got more CPU than the quota allows (see cpu.max on v2, cpu.cfs_quota_us and cpu.cfs_period_us on v1), or the machine was too busy for it to reach the quota, so the kernel never had to throttle it: run the step again when the machine is idle.",
            kind: Kind::Inside(cpu_share_limited),
        },
    ]
}

/// The container's cgroup directories, opened on the host before the probe joins
/// (after pivot_root the container cannot see /sys/fs/cgroup).
pub struct ProbeDirs {
    pub version: Version,
    pub memory: File,
    pub cpu: File,
    pub usage: File,
    pub pids: File,
    pub memory_path: String,
    /// lab's own memory cgroup, read on the host before the probe joined.
    pub host_memory_path: String,
}

/// The cgroups process `target` is in, as /proc/PID/cgroup says.
pub fn probe_dirs(target: &str) -> Result<ProbeDirs> {
    let version = detect()?;
    let dir = |controller: &str| -> Result<(File, String)> {
        let (root, key) = match version {
            Version::V2 => (PathBuf::from(CGROUP_ROOT), ""),
            Version::V1 => (
                v1_mount(controller).with_context(|| format!("no {controller} hierarchy"))?,
                controller,
            ),
        };
        let path = cgroup_of(target, key)
            .with_context(|| format!("process {target} has no {controller} cgroup"))?;
        let full = root.join(path.trim_start_matches('/'));
        Ok((
            File::open(&full).with_context(|| format!("opening {}", full.display()))?,
            path,
        ))
    };
    let (memory, memory_path) = dir("memory")?;
    let host_memory_path =
        own_cgroup(if version == Version::V2 { "" } else { "memory" }).unwrap_or_default();
    Ok(ProbeDirs {
        host_memory_path,
        version,
        memory,
        cpu: dir("cpu")?.0,
        usage: dir("cpuacct").or_else(|_| dir("cpu"))?.0,
        pids: dir("pids")?.0,
        memory_path,
    })
}

fn dirs(p: &Probe) -> Result<&ProbeDirs, Outcome> {
    match &p.cgroups {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(Outcome::Fail(e.clone())),
        None => Err(Outcome::Fail("no cgroup information".into())),
    }
}

/// Read a file of a cgroup directory opened on the host.
fn read_at(dir: &File, name: &str) -> Option<String> {
    use std::os::fd::AsFd;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut s = String::new();
    File::from(fd).read_to_string(&mut s).ok()?;
    Some(s)
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

fn names_own_cgroup(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let key = if d.version == Version::V2 {
        ""
    } else {
        "memory"
    };
    // Read inside the container: its own /proc.
    let mine = cgroup_of("self", key);
    let host = &d.host_memory_path;
    match mine {
        Some(path) => Outcome::from(
            path == d.memory_path && path != *host,
            format!(
                "memory cgroup inside: {path}; the container's: {}; lab's: {host}",
                d.memory_path
            ),
        ),
        None => Outcome::Fail("no /proc/self/cgroup inside".into()),
    }
}

fn memory_limit_kills(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let (limit_file, events_file) = match d.version {
        Version::V2 => ("memory.max", "memory.events"),
        Version::V1 => ("memory.limit_in_bytes", "memory.oom_control"),
    };
    let Some(limit) = read_at(&d.memory, limit_file).and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return Outcome::Fail(format!("no memory limit in {limit_file}"));
    };
    let kills = || read_at(&d.memory, events_file).and_then(|t| field(&t, "oom_kill "));
    let before = kills();
    // Allocate and touch twice the limit, a megabyte at a time.
    let hog = match crate::sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            for _ in 0..((2 * limit) >> 20) + 1 {
                kept.push(vec![1u8; 1 << 20]);
            }
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    let status = nix::sys::wait::waitpid(hog, None);
    let killed = matches!(
        status,
        Ok(nix::sys::wait::WaitStatus::Signaled(
            _,
            nix::sys::signal::Signal::SIGKILL,
            _
        ))
    );
    let after = kills();
    let init_alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), None).is_ok();
    let counted = match (before, after) {
        (Some(b), Some(a)) => format!("{events_file} oom_kill {b} -> {a}"),
        _ => format!(
            "failcnt {}",
            read_at(&d.memory, "memory.failcnt")
                .unwrap_or_default()
                .trim()
        ),
    };
    Outcome::from(
        killed && init_alive,
        format!(
            "a process touching {} MB under a {} MB limit was {}; {counted}; the container's init is {}",
            ((2 * limit) >> 20) + 1,
            limit >> 20,
            if killed { "OOM-killed (SIGKILL)" } else { "not killed" },
            if init_alive { "alive" } else { "gone" }
        ),
    )
}

fn fork_loop_stops(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let Some(max) = read_at(&d.pids, "pids.max").and_then(|s| s.trim().parse::<u64>().ok()) else {
        return Outcome::Fail("no pids limit in pids.max".into());
    };
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("pipe: {e}")),
    };
    // A child that forks sleepers until fork fails, reports, and kills them all.
    let looper = match crate::sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            let mut sleepers = Vec::new();
            let mut error = String::from("none");
            let mut peak = 0;
            for _ in 0..max + 16 {
                match crate::sys::fork() {
                    Ok(nix::unistd::ForkResult::Child) => loop {
                        nix::unistd::pause();
                    },
                    Ok(nix::unistd::ForkResult::Parent { child }) => sleepers.push(child),
                    Err(e) => {
                        error = e
                            .chain()
                            .find_map(|c| c.downcast_ref::<nix::Error>())
                            .map_or(format!("{e}"), |n| format!("{n:?}"));
                        break;
                    }
                }
                peak = peak.max(
                    read_at(&d.pids, "pids.current")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(0),
                );
            }
            for s in &sleepers {
                let _ = nix::sys::signal::kill(*s, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(*s, None);
            }
            let _ = writeln!(File::from(wr), "{} {error} {peak}", sleepers.len());
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    drop(wr);
    let mut report = String::new();
    let _ = File::from(rd).read_to_string(&mut report);
    let _ = nix::sys::wait::waitpid(looper, None);
    let mut f = report.split_whitespace();
    let (forks, error, peak) = (
        f.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
        f.next().unwrap_or("?").to_string(),
        f.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
    );
    Outcome::from(
        error == "EAGAIN" && peak <= max && forks < max,
        format!("fork failed with {error} after {forks} forks; pids.current peaked at {peak}, pids.max is {max}"),
    )
}

fn cpu_share_limited(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let configured = match d.version {
        Version::V2 => read_at(&d.cpu, "cpu.max").and_then(|s| {
            let mut f = s.split_whitespace();
            let (q, per) = (
                f.next()?.parse::<f64>().ok()?,
                f.next()?.parse::<f64>().ok()?,
            );
            Some(q / per)
        }),
        Version::V1 => {
            let q = read_at(&d.cpu, "cpu.cfs_quota_us").and_then(|s| s.trim().parse::<f64>().ok());
            let per =
                read_at(&d.cpu, "cpu.cfs_period_us").and_then(|s| s.trim().parse::<f64>().ok());
            q.zip(per).filter(|(q, _)| *q > 0.0).map(|(q, per)| q / per)
        }
    };
    let Some(configured) = configured else {
        return Outcome::Fail("no CPU limit (cpu.max or cpu.cfs_quota_us)".into());
    };
    // Microseconds of CPU the cgroup has used.
    let usage = || -> Option<f64> {
        match d.version {
            Version::V2 => read_at(&d.usage, "cpu.stat")
                .and_then(|t| field(&t, "usage_usec "))
                .map(|u| u as f64),
            Version::V1 => read_at(&d.usage, "cpuacct.usage")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map(|ns| ns / 1000.0),
        }
    };
    // How often the kernel has stopped the cgroup for the rest of a period because
    // it used its quota (cpu.stat, in both versions).
    let throttled = || read_at(&d.cpu, "cpu.stat").and_then(|t| field(&t, "nr_throttled "));
    let wall = std::time::Duration::from_millis(1500);
    let (before, throttled_before) = (usage(), throttled());
    let start = std::time::Instant::now();
    let spinner = match crate::sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            while start.elapsed() < wall {
                std::hint::spin_loop();
            }
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    let _ = nix::sys::wait::waitpid(spinner, None);
    let elapsed = start.elapsed().as_secs_f64() * 1e6;
    let (Some(b), Some(a)) = (before, usage()) else {
        return Outcome::Fail("no CPU usage counter (cpu.stat or cpuacct.usage)".into());
    };
    let measured = (a - b) / elapsed;
    let stops = throttled()
        .zip(throttled_before)
        .map_or(0, |(a, b)| a.saturating_sub(b));
    let said = format!(
        "a busy loop for {:.1} s used {measured:.2} of a CPU; the limit is {configured:.2}",
        elapsed / 1e6
    );
    // A throttled loop cannot exceed its quota (beyond one period's slack). The
    // limit is shown at work when the kernel had to stop the loop, or when the
    // loop got close to the quota; on a busy machine it may get less than its
    // quota without ever being stopped, which proves nothing.
    if measured > configured * 1.25 + 0.02 {
        Outcome::Fail(format!("{said}: more than the limit"))
    } else if stops > 0 {
        Outcome::Pass(format!("{said}; the kernel throttled it {stops} times"))
    } else if measured >= configured * 0.8 {
        Outcome::Pass(said)
    } else {
        Outcome::Fail(format!(
            "{said}, and was never throttled: the machine was too busy for the loop to reach its quota"
        ))
    }
}
