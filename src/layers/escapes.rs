//! The escape arc: what a root process inside can still do to the host, and the
//! step whose layer closes it.
//!
//! Every step so far hides something from the container; none of steps 1-7 takes
//! power away from its root. Each escape here is a real way out, tried for real
//! by the checks of every step (they run in a probe that can do exactly what the
//! container's processes can), and made harmless: it reads, or opens for writing
//! without writing (or writes back what is there), or asks the kernel for
//! something with an argument that makes it fail after the permission check. At the steps before the one that closes
//! it, its check passes when the escape works: `lab verify N` proves what step N
//! does not protect against (or that this machine closes it earlier, said so). From that step on, it passes when the escape fails,
//! with the error that says why. Each check is made by the layer that first
//! shows it (`mount::LAYER.check`), and its `closed_at` is the number of the
//! layer that closes it.
//!
//! | escape                                   | works at | closed by                          |
//! |------------------------------------------|----------|------------------------------------|
//! | chroot's `cd ..` trick                   | 1        | 2: pivot_root, old root gone       |
//! | /proc/1/root: the host's init's root     | 2        | 3: pid namespace                   |
//! | a device node for the host's disk        | 2-7      | 8: no CAP_MKNOD                    |
//! | loading a kernel module                  | 2-7      | 8: no CAP_SYS_MODULE, seccomp      |
//! | a file handle it makes up (shocker)      | 2-7 (2)  | 8: no CAP_DAC_READ_SEARCH, seccomp |
//! | writing the host's kernel settings       | 3-7      | 8: /proc/sys read-only             |
//! | mounting cgroupfs to lift its own limits | 6-7 (1)  | 8: no CAP_SYS_ADMIN, seccomp       |
//! | a host file of root's that reaches it    | 1-8 (3)  | 9: root inside is not root         |
//!
//! Step 9 (a user namespace) closes the last one, and the others a second time:
//! root inside is not root on the host.
//!
//! (1) On cgroup v1 and on a cgroup v2 mounted without `nsdelegate`. With it (as
//! systemd mounts v2), step 6's cgroup namespace closes it already: from inside,
//! the files of the namespace's root cgroup are read-only.
//!
//! (2) Where a file of the host that the container holds (the checks' marker,
//! in lab's run directory), or the container's own /, is on ext2/3/4, whose
//! handles can be made up; not on tmpfs or an overlay. Where the run directory
//! is a tmpfs (/run, on most machines), step 7's overlay leaves nothing to try:
//! the check is skipped there, and says why.
//!
//! (3) Root inside is user 0 of the host at every step before 9 (its `closed_at`),
//! so the escape works from step 1; layer 8 lists its check, and lab tries it from
//! step 8, when it is the last one left open.

use crate::engine::check::{Attempt, Check, Escape, Kind, Probe};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

// The file handle's escape (5), in escapes/handle.rs.
mod handle;
pub use handle::file_handle;

// ── 1. chroot's `cd ..` trick (layer 1; closed by layer 2) ──────────────────────

pub fn chroot() -> Check {
    super::chroot::LAYER.check(
        "escape: chroot's `cd ..` trick reaches the host's files (works until step 2)",
        "A root process left the container's root: it is in a chroot, not behind pivot_root with the old root detached (layer 2). Look for the old root with `cat /proc/mounts` inside.",
        Kind::Escape(Escape {
            closed_at: super::mount::LAYER.number,
            attempt: chroot_trick,
            hint_open: "The escape should work at step 1: a root process in a chroot can always leave it. Did the probe lack root, or is the root filesystem read-only (it needs a directory to chroot into)?",
        }),
    )
}

/// The classic escape from a chroot, as root:
///
/// ```text
/// mkdir x; chroot x        # a new root below us, but our directory stays outside it
/// cd ..; cd ..; ...        # `..` stops only at the root, and we are no longer under it
/// chroot .                 # we stand at the real /, make it our root
/// ```
///
/// It changes the root of the calling process: the probe runs it in a process of
/// its own.
fn chroot_trick(p: &Probe) -> Attempt {
    use nix::unistd;
    let name = format!("lab-escape-{}", std::process::id());
    let Ok(root) = std::fs::File::open("/") else {
        return Attempt::Untried("cannot open / inside".into());
    };
    if let Err(e) = std::fs::create_dir(&name) {
        return Attempt::Stopped(format!("mkdir /{name}: {e}"));
    }
    let tried = (|| -> Result<bool, String> {
        unistd::chroot(name.as_str()).map_err(|e| format!("chroot {name}: {e}"))?;
        for _ in 0..64 {
            unistd::chdir("..").map_err(|e| format!("cd ..: {e}"))?;
        }
        unistd::chroot(".").map_err(|e| format!("chroot .: {e}"))?;
        Ok(p.marker.exists())
    })();
    let _ = unistd::unlinkat(&root, name.as_str(), unistd::UnlinkatFlags::RemoveDir);
    match tried {
        Ok(true) => Attempt::Reached(format!(
            "mkdir x; chroot x; cd .. (64 times); chroot . : the host's {} is in view",
            p.marker.display()
        )),
        Ok(false) => Attempt::Stopped(format!(
            "after the trick, {} is still out of reach: `..` stops at the container's own root mount, and the host's tree is not mounted in its namespace",
            p.marker.display()
        )),
        Err(e) => Attempt::Stopped(e),
    }
}

// ── 2. /proc/1/root (layer 2; closed by layer 3) ────────────────────────────────

pub fn proc_1_root() -> Check {
    super::mount::LAYER.check(
        "escape: /proc/1/root leads to the host's root (works until step 3)",
        "PID 1 in /proc is still the host's init: the container shares the host's pid namespace, or /proc is the host's (layer 3). Compare `ls -l /proc/self/ns/pid` inside and on the host.",
        Kind::Escape(Escape {
            closed_at: super::pid::LAYER.number,
            attempt: through_proc_1_root,
            hint_open: "At step 2 a root process can mount proc and follow /proc/1/root, the root of the host's init, because the container shares the host's pid namespace. If this failed, mounting proc inside failed: look at the detail.",
        }),
    )
}

/// Without a pid namespace, /proc shows the host's processes; `/proc/1/root` is
/// the root directory of the host's init: the host's `/`, whatever pivot_root did.
/// Where the container has no /proc, root mounts one (in its own mount table).
fn through_proc_1_root(p: &Probe) -> Attempt {
    let (proc, mounted) = if Path::new("/proc/self").exists() {
        (PathBuf::from("/proc"), None)
    } else {
        if p.host.shares_mount_namespace() {
            return Attempt::Untried(
                "no mount namespace here: a proc mount would land in the host's mount table".into(),
            );
        }
        let dir = match scratch_dir("proc") {
            Ok(d) => d,
            Err(e) => return Attempt::Untried(e),
        };
        if let Err(e) = mount(
            Some("proc"),
            &dir,
            Some("proc"),
            MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Attempt::Stopped(format!("mount -t proc proc {}: {e}", dir.display()));
        }
        (dir.clone(), Some(dir))
    };
    // PID 1 is the host's init on a machine where the container shares the
    // host's pid namespace. Where PID 1 lives under another root (a sandbox),
    // any host process will do: lab's own.
    let marker = p.marker.strip_prefix("/").unwrap_or(&p.marker);
    let pids = [1, p.host.lab_pid];
    let found = pids.iter().find_map(|pid| {
        let through = proc.join(format!("{pid}/root")).join(marker);
        std::fs::read_to_string(&through)
            .ok()
            .map(|_| (*pid, through))
    });
    let comm = |pid: u32| {
        let c = std::fs::read_to_string(proc.join(format!("{pid}/comm"))).unwrap_or_default();
        c.trim().to_string()
    };
    let (found, init) = (
        found.map(|(pid, through)| (pid, comm(pid), through)),
        comm(1),
    );
    if let Some(dir) = mounted {
        let _ = umount2(&dir, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&dir);
    }
    let how = if proc == Path::new("/proc") {
        "/proc".to_string()
    } else {
        format!("a proc mounted on {}", proc.display())
    };
    match found {
        Some((pid, name, through)) => Attempt::Reached(format!(
            "in {how}, PID {pid} is the host's {name}: {} is the host's file",
            through.display()
        )),
        None => Attempt::Stopped(format!(
            "in {how}, PID 1 is the container's own ({init}): its root is the container's, and no host process is listed to lead to the host's {}",
            p.marker.display()
        )),
    }
}

// ── 3. A device node for the host's disk (layer 2; closed by layer 8) ───────────

pub fn device_node() -> Check {
    super::mount::LAYER.check(
        "escape: a device node it makes reads the host's disk (works until step 8)",
        "Root inside could still make a device node: CAP_MKNOD is in its capability sets (layer 8 drops it). Look at CapBnd in /proc/self/status inside (capsh --decode=HEX on the host).",
        Kind::Escape(Escape {
            closed_at: super::privileges::LAYER.number,
            attempt: host_disk,
            hint_open: "Until step 8 root inside holds CAP_MKNOD and no device cgroup stops it, so mknod and open should work. Look at the detail: was the root filesystem mounted nodev?",
        }),
    )
}

/// Make a block device node with the numbers of the host's root disk and read
/// its filesystem's superblock: whoever can do that can read every file of the
/// host, around every namespace. Read-only, and the node is removed at once.
fn host_disk(p: &Probe) -> Attempt {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let dev = p.host.root_dev;
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let dir = match scratch_dir("dev") {
        Ok(d) => d,
        Err(e) => return Attempt::Untried(e),
    };
    let node = dir.join("disk");
    let made = mknod(
        &node,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o400),
        makedev(major, minor),
    );
    let result = match made {
        Err(e) => Attempt::Stopped(format!(
            "mknod {} b {major} {minor}: {e}{}",
            node.display(),
            if e == Errno::EPERM { " (no CAP_MKNOD)" } else { "" }
        ) + &also_userns("in a user namespace no device node may be made at all")),
        Ok(()) => match &p.host.root_superblock {
            Err(why) => Attempt::Untried(format!(
                "made the device node b {major}:{minor}, but there is no disk to read here: {why}"
            )),
            Ok(host) => match crate::engine::check::read_superblock(&node) {
                Err(e) => Attempt::Stopped(format!("made b {major}:{minor}, but reading it: {e}")),
                Ok(inside) if inside == *host => Attempt::Reached(format!(
                    "mknod b {major} {minor} (the host's {}), read its superblock: the same bytes the host reads{}",
                    p.host.root_source,
                    ext_uuid(&inside).map(|u| format!(" (ext4 UUID {u})")).unwrap_or_default()
                )),
                Ok(_) => Attempt::Stopped(format!(
                    "made b {major}:{minor}, but it does not read as the host's disk"
                )),
            },
        },
    };
    let _ = std::fs::remove_file(&node);
    let _ = std::fs::remove_dir(&dir);
    result
}

/// The UUID of an ext2/3/4 superblock (magic 0xEF53 at byte 56, UUID at 104).
fn ext_uuid(sb: &[u8]) -> Option<String> {
    if sb.get(56..58)? != [0x53, 0xef] {
        return None;
    }
    let u = sb.get(104..120)?;
    let hex: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    let h = hex.concat();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

// ── 4. Loading a kernel module (layer 2; closed by layer 8) ─────────────────────

pub fn kernel_module() -> Check {
    super::mount::LAYER.check(
        "escape: it may load code into the host's kernel (works until step 8)",
        "Root inside may still load kernel modules: CAP_SYS_MODULE is in its sets and no seccomp filter denies finit_module (layer 8). Look at CapEff and Seccomp in /proc/self/status inside.",
        Kind::Escape(Escape {
            closed_at: super::privileges::LAYER.number,
            attempt: load_module,
            hint_open: "Until step 8 root inside holds CAP_SYS_MODULE, so finit_module should get as far as the (missing) file: EBADF. Look at the detail.",
        }),
    )
}

/// finit_module(2) with no file: the kernel checks the right to load a module
/// first, then the file. EBADF means the right was there. Nothing is loaded.
fn load_module(_p: &Probe) -> Attempt {
    match crate::sys::try_finit_module() {
        Errno::ENOSYS => Attempt::Untried(
            "this kernel cannot load modules at all (finit_module: ENOSYS)".into(),
        ),
        Errno::EBADF => Attempt::Reached(
            "finit_module(-1) got past the permission check (EBADF: only the missing file stopped it): root here may load code into the host's one kernel".into(),
        ),
        Errno::EPERM => Attempt::Stopped(
            "finit_module: EPERM (no CAP_SYS_MODULE, and the seccomp filter denies it)".to_string()
                + &also_userns("only root of the host's user namespace may load modules"),
        ),
        e => Attempt::Stopped(format!("finit_module: {e}")),
    }
}

// ── 5. A file handle it forges (layer 2; closed by layer 8): handle.rs ──────────

// ── 6. Writing the host's kernel settings (layer 3; closed by layer 8) ──────────

pub fn kernel_settings() -> Check {
    super::pid::LAYER.check(
        "escape: it may change the host's kernel settings in /proc/sys (works until step 8)",
        "/proc/sys is writable inside: most of its settings are the whole machine's, not the container's. Layer 8 mounts it read-only; look at `grep /proc/sys /proc/mounts` inside.",
        Kind::Escape(Escape {
            closed_at: super::privileges::LAYER.number,
            attempt: open_kernel_setting,
            hint_open: "Until step 8 /proc/sys is writable for root inside: is /proc mounted (layer 3)? Look at the detail.",
        }),
    )
}

/// Settings of the whole machine that every kernel has (not per namespace).
const MACHINE_SETTINGS: [&str; 2] = ["/proc/sys/vm/drop_caches", "/proc/sys/vm/swappiness"];

/// Open one for writing, and write nothing.
fn open_kernel_setting(_p: &Probe) -> Attempt {
    let Some(path) = MACHINE_SETTINGS.iter().find(|s| Path::new(s).exists()) else {
        return Attempt::Stopped("no /proc/sys inside (is /proc mounted?)".into());
    };
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => Attempt::Reached(format!(
            "opened {path} for writing (and wrote nothing): a setting of the host's kernel, not of the container"
        )),
        Err(e) => Attempt::Stopped(format!(
            "opening {path} for writing: {e}{}",
            match e.raw_os_error() {
                Some(nix::libc::EROFS) => " (/proc/sys is mounted read-only)",
                Some(nix::libc::EACCES) if in_user_namespace() => {
                    " (the file is the host root's, and root here is an ordinary user of the host)"
                }
                _ => "",
            }
        )),
    }
}

// ── 7. Mounting cgroupfs to lift its own limits (layer 6; closed by layer 8) ────

pub fn cgroup_limits() -> Check {
    super::cgroups::LAYER.check(
        "escape: it may mount the cgroup filesystem and lift its own limits (works until step 8)",
        "Root inside could mount the cgroup filesystem: it holds CAP_SYS_ADMIN, or no seccomp filter denies mount (layer 8). Look at CapEff in /proc/self/status inside.",
        Kind::Escape(Escape {
            closed_at: super::privileges::LAYER.number,
            attempt: lift_limits,
            hint_open: "Until step 8 root inside may mount the cgroup filesystem and write its own memory limit (unless cgroup v2 is mounted with nsdelegate, which makes the cgroup namespace's root read-only from inside). Look at the detail.",
        }),
    )
}

/// Mount the cgroup filesystem (v2, or v1's memory hierarchy), find the
/// container's own cgroup, and write its memory limit back, unchanged: with that
/// write, a process could raise the limit of step 6. (Opening the file is not
/// enough: on a cgroup v2 mounted with nsdelegate, the kernel refuses the write
/// itself, EPERM, to a process inside the cgroup namespace whose root it is.)
fn lift_limits(p: &Probe) -> Attempt {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // A v1 memory hierarchy if there is one, else the v2 tree.
    let v1 = text
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(String::from));
    let (fstype, options, path, limit) = match (v1, v2) {
        (Some(path), _) => ("cgroup", Some("memory"), path, "memory.limit_in_bytes"),
        (None, Some(path)) => ("cgroup2", None, path, "memory.max"),
        (None, None) => return Attempt::Untried("no /proc/self/cgroup inside".into()),
    };
    if p.host.shares_mount_namespace() {
        return Attempt::Untried(
            "no mount namespace here: the mount would land in the host's mount table".into(),
        );
    }
    let dir = match scratch_dir("cgroup") {
        Ok(d) => d,
        Err(e) => return Attempt::Untried(e),
    };
    let how = format!(
        "mount -t {fstype}{} none {}",
        options.map(|o| format!(" -o {o}")).unwrap_or_default(),
        dir.display()
    );
    let result = match mount(Some("none"), &dir, Some(fstype), MsFlags::empty(), options) {
        Err(e) => Attempt::Stopped(
            format!("{how}: {e}")
                + &also_userns("the cgroup filesystem belongs to the host's user namespace"),
        ),
        Ok(()) => {
            let file = dir.join(path.trim_start_matches('/')).join(limit);
            let shown = format!("{}/{limit}", path.trim_end_matches('/'));
            let nsdelegate = mounted_with(&dir, "nsdelegate");
            let written = std::fs::read_to_string(&file).and_then(|now| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().write(true).open(&file)?;
                f.write_all(now.trim().as_bytes())
            });
            let _ = umount2(&dir, MntFlags::MNT_DETACH);
            match written {
                Ok(()) => Attempt::Reached(format!(
                    "{how}, then wrote its own {shown} back, unchanged: it could lift the limit of step 6"
                )),
                Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) && nsdelegate => {
                    Attempt::ClosedEarly(format!(
                        "{how} worked, but writing its own {shown}: {e}: this cgroup v2 is mounted with nsdelegate (systemd does so), and from inside a cgroup namespace its root's files are read-only: step 6's cgroup namespace closes this escape here"
                    ))
                }
                Err(e) => Attempt::Stopped(format!("{how} worked, but writing {shown}: {e}")),
            }
        }
    };
    let _ = std::fs::remove_dir(&dir);
    result
}

/// Whether the filesystem mounted on `dir` has `option` among its superblock's.
fn mounted_with(dir: &Path, option: &str) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    crate::mountinfo::parse_mountinfo(&text)
        .iter()
        .filter(|m| Path::new(&crate::mountinfo::unescape(&m.mount_point)) == dir)
        .any(|m| m.options.split(',').any(|o| o == option))
}

// ── 8. A host file of root's that reaches the container (layer 8; closed by 9) ──

pub fn root_file() -> Check {
    super::privileges::LAYER.check(
        "escape: a file of the host's root that reaches the container is root's to write (works until step 9)",
        "Root inside is still user 0 of the host: no user namespace maps it to an ordinary user (layer 9). Look at the Uid line of /proc/PID/status on the host.",
        Kind::Escape(Escape {
            closed_at: super::userns::LAYER.number,
            attempt: open_root_file,
            hint_open: "Until step 9 root inside is user 0 of the host and owns the host root's files: opening one for writing should work. Look at the detail.",
        }),
    )
}

/// Through a directory of the host that reaches the container (lab's probe
/// brings one, as a bind mount or a volume would), open a file that only the
/// host's root may read and write, for writing, and write nothing.
fn open_root_file(p: &Probe) -> Attempt {
    use nix::fcntl::{openat, OFlag};
    if crate::dirs::rootless() {
        return Attempt::Untried(
            "lab runs without root: the container's root is you, who may not touch the host root's files to begin with".into(),
        );
    }
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let name = crate::engine::check::ROOT_ONLY;
    match openat(p.host_dir.as_fd(), name, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(_) => Attempt::Reached(format!(
            "opened the host's {}/{name} (root's, mode 0600) for reading and writing, and wrote nothing: a volume of the host's would be root's here",
            p.fixtures.display()
        )),
        Err(e) => Attempt::Stopped(format!(
            "opening the host's {}/{name} (root's, mode 0600): {e}{}",
            p.fixtures.display(),
            if e == Errno::EACCES && in_user_namespace() {
                " (root here is an ordinary user of the host)"
            } else {
                ""
            }
        )),
    }
}

// ── Shared ─────────────────────────────────────────────────────────────────────

/// Is this process in a user namespace other than the host's (whose map is
/// `0 0 4294967295`)?
pub fn in_user_namespace() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
}

/// ", and ..." said of an escape stopped inside a user namespace, else "".
fn also_userns(why: &str) -> String {
    if in_user_namespace() {
        format!("; and {why}")
    } else {
        String::new()
    }
}

/// A fresh, empty directory inside the container for one attempt (in /tmp when
/// there is one); the attempt removes it.
fn scratch_dir(what: &str) -> Result<PathBuf, String> {
    let base = if Path::new("/tmp").is_dir() {
        "/tmp"
    } else {
        "/"
    };
    let dir = Path::new(base).join(format!(".lab-escape-{what}-{}", std::process::id()));
    std::fs::create_dir(&dir)
        .map(|()| dir.clone())
        .map_err(|e| format!("mkdir {}: {e}", dir.display()))
}
