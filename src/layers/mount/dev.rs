//! Layer 2, its second part: the container's own /dev (after mod.rs).
//!
//! The root filesystem's /dev is whatever the image carries: from a distribution
//! tarball, /dev/console or /dev/sda; from a bare one, nothing, and programs that
//! write to /dev/null fail. A container runtime covers it with a tmpfs of the
//! container's own and puts in only what a process needs, as runc does: six
//! harmless character devices, a devpts instance of its own (the container's
//! terminals, numbered apart from the host's), a tmpfs for shared memory, and
//! the links to the process's open files.
//!
//! In a user namespace (step 9) no device node may be made: the host's six are
//! bound over empty files instead, while the host's tree is still stacked on
//! the container's `/`, as `/..` (mod.rs).

use crate::engine::check::{Check, Kind, Outcome, Probe};
use crate::engine::plan::{quote_path, Action, Command, Phase, RunContext, Spec};
use crate::mountinfo::parse_mountinfo;
use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub use crate::devices::DEVICES;

/// The links of /dev: name, target, and why programs want it.
const LINKS: [(&str, &str, &str); 5] = [
    (
        "fd",
        "/proc/self/fd",
        "the process's open files by number, through /proc (bash's <(...) opens /dev/fd/63)",
    ),
    (
        "stdin",
        "/proc/self/fd/0",
        "names for descriptors 0, 1 and 2, for programs that want a path",
    ),
    ("stdout", "/proc/self/fd/1", "(descriptor 1)"),
    ("stderr", "/proc/self/fd/2", "(descriptor 2)"),
    (
        "ptmx",
        "pts/ptmx",
        "where programs open a new terminal: the ptmx of the container's own devpts",
    ),
];

// ── The commands ───────────────────────────────────────────────────────────────

pub(super) fn commands(spec: &Spec) -> Vec<Command> {
    // Right after pivot_root, with paths that resolve in the container: an
    // image whose /dev is a symbolic link gets the tmpfs where the link leads
    // inside, never on a directory of the host's.
    let at = |why: &str, action: Box<dyn Action>| Command {
        layer: super::LAYER.number,
        phase: Phase::FromOldRoot,
        why: why.into(),
        action,
    };
    let in_userns = spec.in_user_namespace();
    let mut c = vec![at(
        "the container's own /dev, empty: whatever device nodes the root filesystem carries (a distribution's /dev/console, /dev/sda) are covered",
        Box::new(MountDev),
    )];
    for (name, major, minor, what) in DEVICES {
        if in_userns {
            c.push(at(
                &format!("{what}. In a user namespace no device node may be made (the kernel refuses mknod): bind the host's, still in view as /../dev/NAME until the host's tree is detached, over an empty file"),
                Box::new(BindDevice(name)),
            ));
        } else {
            c.push(at(what, Box::new(MakeDevice(name, major, minor))));
        }
    }
    c.push(at(
        "a devpts of its own: the container's terminals (ptmx opens a new one), numbered apart from the host's",
        Box::new(MountPts),
    ));
    c.push(at(
        "shared memory (POSIX shm_open, semaphores): a tmpfs of the container's own",
        Box::new(MountShm),
    ));
    for (name, to, why) in LINKS {
        c.push(at(why, Box::new(MakeLink(name, to))));
    }
    c
}

/// `mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs /dev`
struct MountDev;
/// `mknod -m 666 /dev/NAME c MAJOR MINOR`
struct MakeDevice(&'static str, u64, u64);
/// `touch /dev/NAME && mount --bind /../dev/NAME /dev/NAME`
struct BindDevice(&'static str);
/// `mkdir /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts`
struct MountPts;
/// `mkdir /dev/shm && mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 shm /dev/shm`
struct MountShm;
/// `ln -s TARGET /dev/NAME`
struct MakeLink(&'static str, &'static str);

// ── The system calls ───────────────────────────────────────────────────────────

fn dev(name: &str) -> PathBuf {
    Path::new("/dev").join(name)
}

impl Action for MountDev {
    fn shell(&self) -> String {
        "mkdir -p /dev && mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs /dev".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // As runc: a root filesystem without /dev gets one.
        let at = super::mount_point(Path::new("/dev"))?;
        mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=755,size=64k"),
        )
        .context("mount -t tmpfs tmpfs /dev")
    }
}

impl Action for MakeDevice {
    fn shell(&self) -> String {
        format!(
            "mknod -m 666 {} c {} {}",
            quote_path(&dev(self.0)),
            self.1,
            self.2
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        mknod(
            &dev(self.0),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(self.1, self.2),
        )
        .with_context(|| format!("mknod /dev/{}", self.0))?;
        // mknod's mode passes through the umask; the shell's -m does not.
        std::fs::set_permissions(
            dev(self.0),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .with_context(|| format!("chmod 666 /dev/{}", self.0))
    }
}

impl Action for BindDevice {
    fn shell(&self) -> String {
        let to = dev(self.0);
        format!(
            "touch {} && mount --bind {} {}",
            quote_path(&to),
            quote_path(&super::in_old_root(&to)),
            quote_path(&to)
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let to = dev(self.0);
        std::fs::write(&to, "").with_context(|| format!("creating {}", to.display()))?;
        mount(
            Some(&super::in_old_root(&to)),
            &to,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("mount --bind /../dev/{0} /dev/{0}", self.0))
    }
}

impl Action for MountPts {
    fn shell(&self) -> String {
        "mkdir /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts"
            .into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        std::fs::create_dir("/dev/pts").context("mkdir /dev/pts")?;
        mount(
            Some("devpts"),
            "/dev/pts",
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
        .context("mount -t devpts devpts /dev/pts")
    }
}

impl Action for MountShm {
    fn shell(&self) -> String {
        "mkdir /dev/shm && mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 shm /dev/shm".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        std::fs::create_dir("/dev/shm").context("mkdir /dev/shm")?;
        mount(
            Some("shm"),
            "/dev/shm",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777"),
        )
        .context("mount -t tmpfs shm /dev/shm")
    }
}

impl Action for MakeLink {
    fn shell(&self) -> String {
        format!("ln -s {} {}", self.1, quote_path(&dev(self.0)))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        std::os::unix::fs::symlink(self.1, dev(self.0))
            .with_context(|| format!("ln -s {} /dev/{}", self.1, self.0))
    }
}

// ── The check ──────────────────────────────────────────────────────────────────

pub(super) fn check() -> Check {
    super::LAYER.check(
        "/dev is the container's own: six harmless devices, its own devpts and shm",
        "Inside, after pivot_root: mount a tmpfs on /dev, make null, zero, full, random, urandom and tty with mknod, mount a devpts with -o newinstance on /dev/pts and a tmpfs on /dev/shm (lab explain 2 prints each line). Compare `ls -l /dev` and `grep /dev /proc/self/mountinfo` inside.",
        Kind::Inside(own_dev),
    )
}

fn own_dev(p: &Probe) -> Outcome {
    let t = match super::tables(p) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let inside = parse_mountinfo(&t.container());
    let host = parse_mountinfo(&t.host());
    let fs_at = |point: &str| {
        inside
            .iter()
            .rev()
            .find(|m| m.mount_point == point)
            .map(|m| (m.fs_type.clone(), m.dev.clone()))
    };
    // An image's /dev may be a symbolic link: what counts is where it leads.
    let dev = std::fs::canonicalize("/dev")
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/dev".into());
    let Some((dev_fs, _)) = fs_at(&dev) else {
        return Outcome::Fail(
            "nothing is mounted on /dev: it is the root filesystem's directory".into(),
        );
    };
    if dev_fs != "tmpfs" {
        return Outcome::Fail(format!(
            "/dev is a {dev_fs}, not a tmpfs of the container's own"
        ));
    }
    let Some(("devpts", pts_dev)) = fs_at(&format!("{dev}/pts"))
        .as_ref()
        .map(|(f, d)| (f.as_str(), d.clone()))
    else {
        return Outcome::Fail("no devpts on /dev/pts".into());
    };
    let host_pts: Vec<&str> = host
        .iter()
        .filter(|m| m.fs_type == "devpts")
        .map(|m| m.dev.as_str())
        .collect();
    if host_pts.contains(&pts_dev.as_str()) {
        return Outcome::Fail(format!(
            "/dev/pts is the host's devpts ({pts_dev}): mount it with -o newinstance"
        ));
    }
    if fs_at(&format!("{dev}/shm")).map(|(f, _)| f).as_deref() != Some("tmpfs") {
        return Outcome::Fail("no tmpfs on /dev/shm".into());
    }
    let mut devices = Vec::new();
    let mut wrong = Vec::new();
    for e in std::fs::read_dir("/dev").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let t = m.file_type();
        if !(t.is_char_device() || t.is_block_device()) {
            continue;
        }
        let (major, minor) = (
            nix::sys::stat::major(m.rdev()),
            nix::sys::stat::minor(m.rdev()),
        );
        let expected = DEVICES
            .iter()
            .any(|(n, ma, mi, _)| *n == name && (*ma, *mi) == (major, minor));
        if t.is_char_device() && expected {
            devices.push(name);
        } else {
            let kind = if t.is_block_device() { 'b' } else { 'c' };
            wrong.push(format!("/dev/{name} ({kind} {major}:{minor})"));
        }
    }
    if !wrong.is_empty() {
        return Outcome::Fail(format!(
            "/dev holds more than a container needs: {}",
            wrong.join(", ")
        ));
    }
    devices.sort();
    Outcome::from(
        devices.len() == DEVICES.len(),
        format!(
            "/dev: a tmpfs with {} device nodes ({}); /dev/pts: a devpts of its own ({pts_dev}, the host's {}); /dev/shm: a tmpfs",
            devices.len(),
            devices.join(" "),
            host_pts.join(", ")
        ),
    )
}
