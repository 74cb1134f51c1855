//! Layer 6, part 2: where a container's cgroups are, on cgroup v1 and v2.
//!
//! v2 has one tree for every controller; v1 one tree per controller, each
//! mounted on its own. lab finds out which by the filesystem type of the mounts
//! (statfs), never from the name of the distribution. Next: `syscalls.rs`.

use super::options::Limits;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

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

    /// The parents of those directories (lab's, or LAB_CGROUP_PARENT), deduplicated.
    pub fn parents(&self) -> Vec<PathBuf> {
        let mut parents: Vec<PathBuf> = self
            .dirs()
            .iter()
            .filter_map(|d| d.parent().map(std::path::Path::to_path_buf))
            .collect();
        parents.dedup();
        parents
    }
}

pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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
    // Asked by several layers and checks per container; the machine's cgroup
    // mounts do not change while lab runs.
    static FOUND: std::sync::OnceLock<Result<Version, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| detect_now().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn detect_now() -> Result<Version> {
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
pub(super) fn v1_mount(controller: &str) -> Option<PathBuf> {
    // (Looked up once per controller: a start asks for each several times.)
    static FOUND: std::sync::Mutex<Vec<(String, Option<PathBuf>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, mount)) = found.iter().find(|(c, _)| c == controller) {
        return mount.clone();
    }
    let mount = usual_v1_mount(controller).or_else(|| v1_mount_from_table(controller));
    found.push((controller.to_string(), mount.clone()));
    mount
}

/// Where systemd mounts it: /sys/fs/cgroup/CONTROLLER, or a link to the mount
/// named after the controllers it holds (cpu -> cpu,cpuacct). A look there takes
/// microseconds; the mount table grows with every running container's overlay
/// (0.2 ms to read with 50).
fn usual_v1_mount(controller: &str) -> Option<PathBuf> {
    use nix::sys::statfs::{statfs, CGROUP_SUPER_MAGIC};
    let real = Path::new(CGROUP_ROOT)
        .join(controller)
        .canonicalize()
        .ok()?;
    let named = real
        .file_name()?
        .to_string_lossy()
        .split(',')
        .any(|c| c == controller);
    let cgroup_v1 = statfs(&real).is_ok_and(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC);
    // A mount of its own, not a cgroup of that name in a hierarchy above.
    let mounted = crate::sys::mount_id(&real) != crate::sys::mount_id(real.parent()?);
    (named && cgroup_v1 && mounted).then_some(real)
}

/// From the host's mount table (read once, for every controller it is asked for).
fn v1_mount_from_table(controller: &str) -> Option<PathBuf> {
    use std::sync::OnceLock;
    static V1: OnceLock<Vec<(String, String)>> = OnceLock::new();
    V1.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        crate::mountinfo::parse_mountinfo(&text)
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
pub(super) fn own_cgroup(controller: &str) -> Option<String> {
    // Read once: lab's own process never changes cgroups (a container's
    // processes join theirs, each in a process of its own).
    static OWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = OWN.get_or_init(|| std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    cgroup_in(text, controller)
}

/// The cgroup of process `pid` in the hierarchy of `controller` ("" for v2).
pub fn cgroup_of(pid: &str, controller: &str) -> Option<String> {
    cgroup_in(
        &std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?,
        controller,
    )
}

/// The cgroup in the hierarchy of `controller` of a /proc/PID/cgroup's `text`.
fn cgroup_in(text: &str, controller: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    /// The look where systemd mounts a hierarchy finds what the mount table says,
    /// for every controller of the host (none on a host of cgroup v2 alone).
    #[test]
    fn the_usual_place_agrees_with_the_mount_table() {
        let controllers = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
        let mut found = 0;
        for c in controllers
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
        {
            if let Some(usual) = super::usual_v1_mount(c) {
                assert_eq!(Some(usual), super::v1_mount_from_table(c), "{c}");
                found += 1;
            }
        }
        // This project's machine is a v1/v2 hybrid: the test must look at something there.
        if super::v1_mount_from_table("memory").is_some() {
            assert!(found >= 3, "found {found}");
        }
    }
}
