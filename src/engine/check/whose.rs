//! Whose container is graded, and where its root is.
//!
//! `lab check N --pid PID` grades any container. What a check proves is the
//! same for all of them, but what to do when it fails is not: lab's own
//! containers and the lessons' recipe typed by hand get lab's hints (the line
//! of the recipe to look at), a container of Docker, Podman, runc or any other
//! runtime gets the layer's hint in that runtime's terms (Layer::elsewhere).
//! Who made it is read from the kernel: the chain of parents of its first
//! process, as `ps -o ppid` walks it.
//!
//! Its root: a check compares the container's `/` with a directory of the
//! host. For a container lab did not make, lab finds that directory itself in
//! the container's mount table (/proc/PID/mountinfo), as a person would: the
//! first line for `/` names a filesystem (major:minor) and the part of it
//! that is mounted there; the host's own mount table says where the host
//! sees that filesystem.

use crate::mountinfo::{parse_mountinfo, unescape};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who made the container that a check grades.
#[derive(Clone, Debug, PartialEq)]
pub enum Maker {
    /// `lab step` (or `lab verify`): lab knows its name and its files.
    Lab,
    /// The lessons' recipe typed by hand: its shell wrote its PID to
    /// LAB_RUN/hand/NAME/shell.
    ByHand,
    /// Another runtime, named as lab recognised it (or "an unknown runtime").
    Other(String),
}

impl Maker {
    pub fn is_other(&self) -> bool {
        matches!(self, Maker::Other(_))
    }
}

/// Programs that start containers, by the name the kernel gives their process
/// (/proc/PID/comm, 15 characters at most), and who they are.
const RUNTIMES: [(&str, &str); 8] = [
    ("containerd-shim", "Docker (through containerd's shim)"),
    ("conmon", "Podman (through conmon)"),
    ("runc", "runc"),
    ("crun", "crun"),
    ("systemd-nspawn", "systemd-nspawn"),
    ("bwrap", "bubblewrap (bwrap)"),
    ("unshare", "unshare"),
    ("lxc-start", "LXC"),
];

/// Who made the container of `pid`, when it is not one of lab's (the caller
/// knows those): the lessons' recipe typed by hand when one of its ancestors is
/// the shell that a recipe recorded, or when it is a plain process of the
/// host; else the first runtime among its ancestors.
pub fn maker_of(pid: i32) -> Maker {
    let chain = ancestors(pid);
    let shells = hand_shells();
    if chain.iter().any(|(p, _)| shells.contains(p)) {
        return Maker::ByHand;
    }
    // A process of the host, in all of its namespaces, is no runtime's
    // container: a student's first try (step 1's chroot shares them all), or
    // the wrong PID. lab's recipe is what its hints explain.
    let mine = |p: &str| {
        ["mnt", "pid", "net", "uts", "ipc", "user", "cgroup"].map(|ns| super::ns_inode(p, ns))
    };
    if mine(&pid.to_string()) == mine("self") {
        return Maker::ByHand;
    }
    for (p, comm) in &chain {
        if let Some((_, who)) = RUNTIMES.iter().find(|(c, _)| comm.starts_with(c)) {
            let mut who = who.to_string();
            // containerd's shim serves Docker and others (nerdctl, Kubernetes):
            // Docker's talks to the containerd that dockerd started
            // (/run/docker/containerd/...) in the namespace "moby", and its
            // containers are in a cgroup named after it.
            if comm.starts_with("containerd-shim")
                && !cgroup_mentions(pid, "docker")
                && !command_line(*p).contains("docker")
                && !command_line(*p).contains("moby")
            {
                who = "containerd (its shim)".into();
            }
            return Maker::Other(who);
        }
    }
    let parent = match chain.get(1) {
        Some((p, c)) => format!("its parent is {c}, PID {p}"),
        // A runtime that detached (runc run -d) leaves it to the host's init.
        None => "started detached: its parent is the host's PID 1".into(),
    };
    Maker::Other(format!("a runtime lab does not know ({parent})"))
}

/// `pid` and its ancestors, nearest first: PID and command name.
fn ancestors(pid: i32) -> Vec<(i32, String)> {
    let mut chain = Vec::new();
    let mut at = pid;
    while at > 1 && chain.len() < 32 {
        let Some(stat) = crate::sys::proc_stat(&at.to_string()) else {
            break;
        };
        let comm = std::fs::read_to_string(format!("/proc/{at}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        chain.push((at, comm));
        at = ppid_from_stat(&stat).unwrap_or(0);
    }
    chain
}

fn ppid_from_stat(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The shells that the lessons' recipes recorded (LAB_RUN/hand/NAME/shell).
fn hand_shells() -> Vec<i32> {
    let dir = crate::dirs::run_dir().join("hand");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let text = std::fs::read_to_string(e.ok()?.path().join("shell")).ok()?;
                text.trim().parse().ok()
            })
            .collect()
        })
        .unwrap_or_default()
}

fn command_line(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn cgroup_mentions(pid: i32, word: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(word))
}

/// The container's root as the host sees it, and how lab found it.
pub struct FoundRoot {
    pub path: PathBuf,
    pub how: String,
}

/// Where the host sees the root of the container of `pid`: the host's mount of
/// the same filesystem, joined with the part of it the container has as `/`,
/// when that path is indeed the container's root (same device and inode);
/// else the kernel's own link, /proc/PID/root.
pub fn find_root(pid: i32) -> FoundRoot {
    let link = PathBuf::from(format!("/proc/{pid}/root"));
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let same = |p: &Path| match (std::fs::metadata(p), std::fs::metadata(&link)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    if let Some((path, root)) = host_path_of_root(&theirs, &ours) {
        if same(&path) {
            return FoundRoot {
                how: format!(
                    "found from its mount table: its / is a{} {} (source {}), which the host has at {}",
                    if root.fs_type.starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" },
                    root.fs_type,
                    root.source,
                    path.display()
                ),
                path,
            };
        }
    }
    FoundRoot {
        how: format!(
            "its / is mounted nowhere the host sees it: lab looks at it through {}",
            link.display()
        ),
        path: link,
    }
}

/// The root mount of the first table, and where the second one (the host's)
/// has the same directory of the same filesystem.
fn host_path_of_root(
    container: &str,
    host: &str,
) -> Option<(PathBuf, crate::mountinfo::MountEntry)> {
    let root = parse_mountinfo(container)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == "/")?;
    let wanted = unescape(&root.root);
    // The host's mounts of that filesystem whose part holds the container's;
    // the one with the longest part is the nearest.
    let best = parse_mountinfo(host)
        .into_iter()
        .filter(|m| m.dev == root.dev)
        .filter_map(|m| {
            let part = unescape(&m.root);
            let rest = if part == "/" {
                wanted.trim_start_matches('/').to_string()
            } else {
                let rest = wanted.strip_prefix(&part)?;
                if !rest.is_empty() && !rest.starts_with('/') {
                    return None;
                }
                rest.trim_start_matches('/').to_string()
            };
            let at = PathBuf::from(unescape(&m.mount_point));
            Some((part.len(), if rest.is_empty() { at } else { at.join(rest) }))
        })
        .max_by_key(|(len, _)| *len)?;
    Some((best.1, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_root_is_found_where_the_host_mounted_it() {
        let container = "79 53 0:40 / / rw,relatime master:4 - overlay overlay rw,lowerdir=/d/l/A,upperdir=/d/x/diff,workdir=/d/x/work\n\
                         80 79 0:43 / /proc rw - proc proc rw\n";
        let host = "22 1 8:1 / / rw shared:1 - ext4 /dev/vda1 rw\n\
                    51 47 0:40 / /d/x/merged rw,relatime shared:4 - overlay overlay rw,lowerdir=/d/l/A\n";
        let (path, root) = host_path_of_root(container, host).unwrap();
        assert_eq!(path, Path::new("/d/x/merged"));
        assert_eq!(root.fs_type, "overlay");
    }

    #[test]
    fn a_bind_mounted_directory_is_found_below_the_hosts_mount() {
        // runc's bundle: the container's / is a directory of the host's disk.
        let container = "300 200 8:1 /srv/bundle/rootfs / rw - ext4 /dev/vda1 rw\n";
        let host = "22 1 8:1 / / rw shared:1 - ext4 /dev/vda1 rw\n\
                    40 22 8:1 /srv /mnt/srv rw - ext4 /dev/vda1 rw\n\
                    41 22 8:1 /srvx /mnt/srvx rw - ext4 /dev/vda1 rw\n";
        let (path, _) = host_path_of_root(container, host).unwrap();
        // The nearest mount holding it, never one whose name only begins the same.
        assert_eq!(path, Path::new("/mnt/srv/bundle/rootfs"));
    }

    #[test]
    fn a_root_the_host_does_not_mount_is_not_found() {
        let container = "300 200 0:99 / / rw - tmpfs tmpfs rw\n";
        let host = "22 1 8:1 / / rw shared:1 - ext4 /dev/vda1 rw\n";
        assert!(host_path_of_root(container, host).is_none());
    }

    #[test]
    fn ppid_is_read_after_the_command_name() {
        assert_eq!(ppid_from_stat("42 (a) b) S 7 42 42 0"), Some(7));
    }
}
