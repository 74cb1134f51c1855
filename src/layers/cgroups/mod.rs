//! Layer 6: cgroups, to limit what the container may use.
//!
//! Namespaces limit what a process can *see*; control groups limit what it can
//! *use*. A cgroup is a directory in a special filesystem: make one, write limits
//! into its files, write a process ID into its `cgroup.procs`, and that process and
//! every child it starts are held to those limits by the kernel. (On v1 lab writes
//! 0 to `tasks` instead: the kernel moves the writing thread alone, without the
//! machine-wide lock that moving a whole process takes. On v2 lab starts the
//! container's first process in its cgroup: clone3 with CLONE_INTO_CGROUP.)
//!
//! Two versions are in use. cgroup v2 (Ubuntu 24.04, Debian 12 with systemd) has
//! one tree at /sys/fs/cgroup for every controller: `memory.max`, `cpu.max`,
//! `pids.max`; a controller must be switched on in each parent's
//! `cgroup.subtree_control`, and a cgroup that holds processes may not hand
//! controllers to children (the no-internal-process rule). cgroup v1 has a tree
//! per controller (/sys/fs/cgroup/memory, /sys/fs/cgroup/cpu, ...), with other
//! file names: `memory.limit_in_bytes`, `cpu.cfs_quota_us`. lab finds out which
//! from the filesystem type of the mounts (statfs), never from the distribution.//!
//! The layer reads as a chapter, in this order:
//! - this file: the idea, and the commands a person types (v1 and v2);
//! - `hierarchy.rs`: where a container's cgroups are, on v1 and on v2;
//! - `syscalls.rs`: the same commands done with system calls (files, mkdir, rmdir);
//! - `checks.rs`: the checks that make the kernel enforce each limit.

mod checks;
mod hierarchy;
mod options;
mod syscalls;

pub use hierarchy::{detect, Version};
pub use options::{Limits, Options};

use super::Layer;
use crate::engine::plan::{Action, Command, Namespace, Phase, Spec};
use anyhow::Context;
use hierarchy::*;
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use syscalls::*;

pub const LAYER: Layer = Layer {
    number: 6,
    title: "cgroup limits: memory, cpu, pids",
    idea: "the container gets limits the kernel enforces: memory, CPU time, number of processes",
    look: "cat /proc/self/cgroup: the cgroups that hold this container and its limits (memory, CPU time, processes).",
    elsewhere: "A runtime sets memory, CPU and pids limits when asked (`docker run --memory 64m --cpus 0.5 --pids-limit 50`, the same options for podman); on cgroup v2 Docker and Podman give a container its own cgroup namespace by default, on v1 `--cgroupns private` asks for one. `cat /proc/PID/cgroup` names its cgroups; their memory.max and pids.max (v2) or memory.limit_in_bytes and pids.max (v1) hold the limits.",
    namespaces: &[Namespace::Cgroup],
    commands,
    note: |_| None,
    checks: checks::checks,
    hooks: &CgroupHooks,
};

/// What the engine asks of this layer besides its commands and checks.
struct CgroupHooks;

impl super::Hooks for CgroupHooks {
    fn preflight(&self, spec: &Spec) -> anyhow::Result<()> {
        match detect() {
            Ok(_) => Ok(()),
            Err(e) => anyhow::bail!(
                "step {} needs cgroups: {e:#}. See sudo lab doctor",
                spec.step
            ),
        }
    }
    fn probe_data(
        &self,
        p: &crate::engine::check::Probe,
    ) -> anyhow::Result<Option<super::Gathered>> {
        super::gathered(checks::probe_dirs(&p.target.to_string()))
    }
    /// Join the container's cgroups, as its own processes are (what `docker exec`
    /// does too), while /sys/fs/cgroup is still in view.
    fn join_first(&self, target: Pid) -> anyhow::Result<Option<Box<dyn Action>>> {
        let dirs = cgroups_to_join(&target.to_string())?;
        Ok((!dirs.is_empty()).then(|| Box::new(JoinCgroupsOf(dirs)) as Box<dyn Action>))
    }
    /// The cgroups a killed run made, once its processes are gone.
    fn forget(&self, state: &Path) {
        remove_recorded(state, true);
    }
    /// The cgroup parents this run made, if no other container uses them now.
    fn release(&self, state: &Path) {
        remove_recorded(state, false);
    }
    fn remove_shared_if_unused(&self) -> anyhow::Result<Option<String>> {
        remove_unused_parents()?;
        Ok(None)
    }
    /// The parent cgroups named like lab's (`lab`, or LAB_CGROUP_PARENT): the
    /// teardown typed by hand removes the container's cgroup, and the parent
    /// stays when another container was still in it then.
    fn tidy(&self) -> Vec<String> {
        let mut limits = Limits::default();
        if let Ok(parent) = std::env::var("LAB_CGROUP_PARENT") {
            limits.parent = parent;
        }
        let Ok(cg) = locate("c", &limits) else {
            return vec![];
        };
        let parents = cg.parents();
        let mut said = Vec::new();
        // (Never a hierarchy's root, where a parent of "/" would put it.)
        let roots = [Path::new(hierarchy::CGROUP_ROOT).to_path_buf()]
            .into_iter()
            .chain(
                ["memory", "cpu", "cpuacct", "pids"]
                    .iter()
                    .filter_map(|c| hierarchy::v1_mount(c)),
            );
        let roots: Vec<PathBuf> = roots.collect();
        for p in parents.iter().filter(|p| p.is_dir() && !roots.contains(p)) {
            said.push(match std::fs::remove_dir(p) {
                Ok(()) => format!("removed the empty cgroup {}", p.display()),
                Err(e) => format!(
                    "kept the cgroup {}: {e} (cgroups of other containers are in it: ls {})",
                    p.display(),
                    p.display()
                ),
            });
        }
        said
    }
    fn run_files(&self) -> &'static [&'static str] {
        &["cgroups.lock", "cgroup-parents"]
    }
    fn without_root(&self) -> Option<&'static str> {
        Some("a user may make cgroups and set limits only where systemd delegates a part of the tree to it (systemd-run --user -p Delegate=yes); lab leaves the limits out")
    }
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> anyhow::Result<Vec<Command>> {
    // Without cgroups here, lab explain prints this line and why it cannot be
    // done; lab step's preflight says so before anything is made.
    let l = &spec.options.get::<Limits>();
    let cg = locate(&spec.name, l).context("find the cgroup controllers")?;
    let found = match (l.version, cg.version) {
        (Some(_), Version::V2) => "cgroup v2, as --cgroup asks",
        (Some(_), Version::V1) => "cgroup v1, as --cgroup asks",
        (None, Version::V2) => "cgroup v2 found here: /sys/fs/cgroup is a cgroup2 filesystem",
        (None, Version::V1) => {
            "cgroup v1 found here: memory, cpu and pids each have a cgroup filesystem"
        }
    };
    let mut c = vec![LAYER.at(
        Phase::Host,
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
                c.push(LAYER.at(
                    Phase::Host,
                    "hand the controllers down to the children of this cgroup: v2 switches them on level by level",
                    WriteFile::new(parent.join("cgroup.subtree_control"), "+memory +cpu +pids"),
                ));
            }
            c.push(LAYER.at(
                Phase::Host,
                "the memory limit, in bytes",
                WriteFile::new(cg.memory.join("memory.max"), l.memory_bytes),
            ));
            if swap_accounted(Version::V2, l.version.is_some()) {
                c.push(LAYER.at(
                    Phase::Host,
                    "no swap: over the limit the kernel reclaims what it can (page cache) and then kills, instead of swapping the container out",
                    WriteFile::new(cg.memory.join("memory.swap.max"), 0),
                ));
            }
            c.push(LAYER.at(
                Phase::Host,
                "CPU time: QUOTA microseconds in every PERIOD of 100000",
                WriteFile::new(cg.cpu.join("cpu.max"), format!("{quota} {period}")),
            ));
            c.push(LAYER.at(
                Phase::Host,
                "the most processes (and threads) at once",
                WriteFile::new(cg.pids.join("pids.max"), l.pids),
            ));
        }
        Version::V1 => {
            c.push(LAYER.at(
                Phase::Host,
                "the memory limit, in bytes",
                WriteFile::new(cg.memory.join("memory.limit_in_bytes"), l.memory_bytes),
            ));
            if swap_accounted(Version::V1, l.version.is_some()) {
                c.push(LAYER.at(
                    Phase::Host,
                    "memory plus swap, the same: no swap, so over the limit the kernel reclaims what it can (page cache) and then kills, instead of swapping the container out",
                    WriteFile::new(
                        cg.memory.join("memory.memsw.limit_in_bytes"),
                        l.memory_bytes,
                    ),
                ));
            }
            c.push(LAYER.at(
                Phase::Host,
                "the CPU period, in microseconds",
                WriteFile::new(cg.cpu.join("cpu.cfs_period_us"), period),
            ));
            c.push(LAYER.at(
                Phase::Host,
                "CPU time allowed in each period",
                WriteFile::new(cg.cpu.join("cpu.cfs_quota_us"), quota),
            ));
            c.push(LAYER.at(
                Phase::Host,
                "the most processes (and threads) at once",
                WriteFile::new(cg.pids.join("pids.max"), l.pids),
            ));
        }
    }
    c.push(LAYER.at(
        Phase::Join,
        match cg.version {
            Version::V2 => "a shell of its own joins the container's cgroup first: every process it starts is born in it, and the cgroup namespace it makes has that cgroup as its root, /. (lab starts the first process right in the cgroup, with its cgroup namespace: clone3 with CLONE_INTO_CGROUP, without the machine-wide lock of a move through cgroup.procs, about 10 ms each time)",
            Version::V1 => "a shell of its own joins the container's cgroups first: every process it starts is born in them, and the cgroup namespace it makes has them as its root, /. (lab's first process writes 0 to each tasks file instead: for a process of one thread the same move, without the machine-wide lock that cgroup.procs takes)",
        },
        Join(cg.version, cg.dirs()),
    ));
    c.push(LAYER.at(
        Phase::Teardown,
        "after exit, when no process is left in it, remove the cgroup",
        RemoveCgroups(cg.dirs()),
    ));
    let parents = cg.parents();
    c.push(LAYER.at(
        Phase::Teardown,
        "and the parent, when no other container's cgroup is in it (rmdir refuses while one is: Device or resource busy)",
        RemoveParents(parents),
    ));
    Ok(c)
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
