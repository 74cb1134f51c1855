//! What the checks know of the host: facts read before the probe joins the
//! container, the fixtures they look for from inside, the host before and after
//! the container, and the process a student names (`lab check N --pid`).

use super::{Probe, ROOT_ONLY};
use crate::engine::layer::Layer;
use anyhow::{Context, Result};
use nix::unistd::Pid;
use std::any::Any;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Facts about the host, read in lab before the probe joins the container.
pub struct HostFacts {
    /// The device of the host's `/` (st_dev), its inode, and what is mounted there.
    pub root_dev: u64,
    pub root_ino: u64,
    pub root_source: String,
    /// The superblock of that device (bytes 1024-2047) as lab reads it on the
    /// host, or why it cannot (not a block device; a sandbox around this machine).
    pub root_superblock: Result<Vec<u8>, String>,
    /// lab's own mount namespace (the host's).
    pub mnt_ns: Option<u64>,
    /// lab's own PID: a process of the host, with the host's root.
    pub lab_pid: u32,
}

impl HostFacts {
    fn read() -> HostFacts {
        let (root_dev, root_ino) = std::fs::metadata("/")
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or((0, 0));
        let (major, minor) = (
            nix::sys::stat::major(root_dev),
            nix::sys::stat::minor(root_dev),
        );
        let root_source = crate::mountinfo::parse_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        )
        .into_iter()
        .rev()
        .find(|m| m.mount_point == "/")
        .map(|m| format!("{} {}", m.source, m.fs_type))
        .unwrap_or_else(|| "?".into());
        // /sys/dev/block/MAJ:MIN exists for block devices only; its uevent names
        // the node in /dev.
        let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
            .unwrap_or_default();
        let root_superblock = match uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
            None => Err(format!(
                "the host's / ({root_source}) is not on a block device"
            )),
            Some(name) => {
                let node = Path::new("/dev").join(name);
                read_superblock(&node).map_err(|e| {
                    format!(
                        "lab cannot read {} on the host either ({e}): something around this machine guards its disks",
                        node.display()
                    )
                })
            }
        };
        HostFacts {
            root_dev,
            root_ino,
            root_source,
            root_superblock,
            mnt_ns: ns_inode("self", "mnt"),
            lab_pid: std::process::id(),
        }
    }

    /// Is the calling process (having joined the container) in the host's mount
    /// namespace: a container without one of its own?
    pub fn shares_mount_namespace(&self) -> bool {
        self.mnt_ns.is_some() && ns_inode("self", "mnt") == self.mnt_ns
    }
}

/// Bytes 1024-2047 of a filesystem on a block device: where ext2/3/4 (and others)
/// keep their superblock.
pub fn read_superblock(device: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(device)?;
    f.seek(SeekFrom::Start(1024))?;
    let mut buf = vec![0u8; 1024];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// The host as it was before the container started, and after it is gone, as
/// each layer that changes it sees it (layers::Hooks::host_before).
pub struct Before {
    /// The container's name.
    pub name: String,
    layers: Vec<&'static Layer>,
    /// The other containers of lab running at the start and at the end: what
    /// they made on the host may come and go meanwhile, and is not this one's.
    pub others_before: Vec<String>,
    pub others_after: Vec<String>,
    states: Vec<HostState>,
}

/// What one layer recorded of the host: before, and (once [`Before::now`] ran) after.
struct HostState {
    layer: u8,
    before: Box<dyn Any>,
    after: Option<Box<dyn Any>>,
}

impl Before {
    pub fn take(step: u8, name: &str) -> Before {
        let state = crate::engine::state::container_dir(name);
        let layers = crate::engine::curriculum::active(step);
        let states = layers
            .iter()
            .filter_map(|l| {
                Some(HostState {
                    layer: l.number,
                    before: l.hooks.host_before(&state)?,
                    after: None,
                })
            })
            .collect();
        Before {
            name: name.to_string(),
            layers,
            others_before: crate::engine::state::live_names_but(name),
            others_after: vec![],
            states,
        }
    }
    /// Record the host as it is now, after the container is gone.
    pub fn now(mut self) -> Before {
        for s in &mut self.states {
            if let Some(layer) = self.layers.iter().find(|l| l.number == s.layer) {
                s.after = layer.hooks.host_after(s.before.as_ref());
            }
        }
        self.others_after = crate::engine::state::live_names_but(&self.name);
        self
    }
    /// What layer `layer` recorded before and after, if it did.
    pub fn compare<T: Any>(&self, layer: u8) -> Option<(&T, &T)> {
        let s = self.states.iter().find(|s| s.layer == layer)?;
        Some((s.before.downcast_ref()?, s.after.as_ref()?.downcast_ref()?))
    }
    /// The other containers running at the start or at the end, by name.
    pub fn others(&self) -> Vec<String> {
        let mut all = self.others_before.clone();
        all.extend(self.others_after.iter().cloned());
        all.sort();
        all.dedup();
        all
    }
}

pub fn host_hostname() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The inode of `/proc/PID/ns/NAME`: two processes share a namespace exactly when
/// these are equal.
pub fn ns_inode(pid: &str, name: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{name}"))
        .ok()
        .map(|m| m.ino())
}

/// Everything the checks of `step` need from the host: the files and objects they
/// look for from inside. Removed again when dropped.
pub(super) struct Fixtures {
    pub(super) probe: Probe,
}

impl Fixtures {
    pub(super) fn make(
        step: u8,
        target: Pid,
        rootfs: &Path,
        name: Option<String>,
        maker: super::Maker,
    ) -> Result<Fixtures> {
        let dir = crate::dirs::run_dir().join(format!("check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host_dir = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        // From here on, what is made is removed on every way out, errors included.
        let mut fixtures = Fixtures {
            probe: Probe {
                step,
                target,
                name,
                maker,
                root: std::fs::metadata(rootfs).ok().map(|m| (m.dev(), m.ino())),
                root_path: rootfs.to_path_buf(),
                marker: dir.join("host-file"),
                host: HostFacts::read(),
                host_dir,
                fixtures: dir,
                data: vec![],
            },
        };
        crate::engine::state::fault_point("the checks' fixtures")?;
        std::fs::write(
            &fixtures.probe.marker,
            "this file lives on the host, outside the container\n",
        )?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let secret = fixtures.probe.fixtures.join(ROOT_ONLY);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&secret)
                .and_then(|mut f| f.write_all(b"the host's root alone may read this\n"))
                .with_context(|| format!("writing {}", secret.display()))?;
        }
        for layer in crate::engine::curriculum::active(step) {
            if let Some(data) = layer.hooks.probe_data(&fixtures.probe)? {
                fixtures.probe.data.push((layer.number, data));
            }
        }
        Ok(fixtures)
    }
}

/// A probe of this very process, whose fixtures are the marker in `dir` (made
/// here): for unit tests of an attempt, outside any container.
#[cfg(test)]
impl Probe {
    pub fn of_this_process(step: u8, dir: &Path) -> Result<Probe> {
        let marker = dir.join("host-file");
        std::fs::write(
            &marker,
            "this file lives on the host, outside the container\n",
        )?;
        Ok(Probe {
            step,
            target: Pid::this(),
            name: None,
            maker: super::Maker::Lab,
            root: None,
            root_path: "/".into(),
            marker,
            host: HostFacts::read(),
            host_dir: File::open(dir)?,
            fixtures: dir.to_path_buf(),
            data: vec![],
        })
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        // The layers' host objects first (they are removed as they are dropped),
        // then the directory.
        self.probe.data.clear();
        let _ = crate::dirs::remove_tree(&self.probe.fixtures);
    }
}

/// `lab clean`, or the next run: the checks' fixtures of a run that was killed.
pub fn remove_left_fixtures(dir: &Path) {
    for layer in crate::engine::curriculum::all() {
        layer.hooks.remove_left_fixtures(dir);
    }
}

/// How many processes a `/proc` shows.
pub fn count_processes(proc: &Path) -> usize {
    pids_in(proc).len()
}

pub fn pids_in(proc: &Path) -> Vec<u32> {
    std::fs::read_dir(proc)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The process to grade when a student names one by hand. The launchers of the
/// lessons' commands are not the container: `unshare --fork` stays outside the
/// pid namespace it makes and waits for its child, and `bwrap` (step 8) waits for
/// the command it started in a mount namespace of its own. Given one of them,
/// lab follows it down to the process it started. Returns that process and, when
/// it is not `pid`, the way there, for the student to read.
pub fn graded(pid: Pid) -> (Pid, Option<String>) {
    const LAUNCHERS: [&str; 2] = ["unshare", "bwrap"];
    let comm = |p: Pid| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default()
    };
    let mut path = Vec::new();
    let mut at = pid;
    while LAUNCHERS.contains(&comm(at).as_str()) {
        let children = children_of(at);
        let [only] = children[..] else { break };
        path.push(format!("{} (PID {at})", comm(at)));
        at = only;
    }
    if path.is_empty() {
        return (pid, None);
    }
    let way = format!(
        "{} → {} (PID {at}): grading the last, the process the launchers started",
        path.join(" → "),
        comm(at)
    );
    (at, Some(way))
}

/// The children of process `pid`, from /proc.
fn children_of(pid: Pid) -> Vec<Pid> {
    pids_in(Path::new("/proc"))
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.to_string()))
                .and_then(|r| r.split_whitespace().nth(1).map(String::from))
                .is_some_and(|ppid| ppid == pid.to_string())
        })
        .map(|p| Pid::from_raw(p as i32))
        .collect()
}
