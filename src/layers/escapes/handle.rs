//! The escape arc (escapes.rs), 5: a file handle it forges (layer 2; closed by
//! layer 8). Docker's "shocker" escape, longer than the others: a file of its own.

use super::also_userns;
use crate::engine::check::{Attempt, Check, Escape, Kind, Probe};
use nix::errno::Errno;
use std::path::Path;

pub fn file_handle() -> Check {
    crate::layers::mount::LAYER.check(
        "escape: a file handle it forges opens the host's files (works until step 8)",
        "Root inside may still open files by their handles: CAP_DAC_READ_SEARCH is in its sets and no seccomp filter denies open_by_handle_at (layer 8). Look at CapEff and Seccomp in /proc/self/status inside.",
        Kind::Escape(Escape {
            closed_at: crate::layers::privileges::LAYER.number,
            attempt: forged_handle,
            hint_open: "Until step 8 root inside holds CAP_DAC_READ_SEARCH and nothing denies open_by_handle_at: a handle made up for the root of an ext4 filesystem (inode 2) should open it. Look at the detail: does a security module (AppArmor, SELinux) refuse the call?",
        }),
    )
}

/// The type of the handles that ext2, ext3 and ext4 give (FILEID_INO32_GEN,
/// linux/exportfs.h): an inode number and a generation number, 32 bits each.
const FILEID_INO32_GEN: i32 = 1;
/// The inode of an ext2/3/4 filesystem's root directory.
const EXT_ROOT_INODE: u32 = 2;
/// What every answer of this escape that has nothing to try starts with (the
/// tests count such skips as this machine's).
const NO_HANDLE: &str = "no file handle to forge here";

/// Docker's "shocker" escape (2014). A file handle is what an NFS server gives
/// its clients instead of a path: a few bytes that name a file of a filesystem.
/// open_by_handle_at(2) opens the file a handle names, given any file of the
/// same filesystem, and walks no path to it: no mount, no root directory and no
/// directory's permissions stand in the way, which is why it asks for
/// CAP_DAC_READ_SEARCH. A handle can be made up: on ext2/3/4 it is an inode
/// number and a generation number that the kernel does not compare when it is
/// 0, and the root directory is inode 2.
///
/// Tried through a file of the host that reaches the container (the checks'
/// marker, as a volume brings one, or as Docker bind-mounts /etc/hosts from the
/// host's disk), then through the container's own / (a directory of the host's
/// disk before step 7's overlay). Nothing is written: the directory it opens is
/// looked at and closed.
fn forged_handle(p: &Probe) -> Attempt {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let read_only = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let marker = p.marker.file_name().unwrap_or_default();
    // What it goes through, what that is, and the file.
    let through = [
        (
            format!("the host's {}", p.marker.display()),
            ", a file of the host that the container holds, as it would a volume's",
            openat(p.host_dir.as_fd(), marker, read_only, Mode::empty()),
        ),
        (
            "the container's own /".to_string(),
            "",
            open("/", read_only | OFlag::O_DIRECTORY, Mode::empty()),
        ),
    ];
    let mut handle = EXT_ROOT_INODE.to_ne_bytes().to_vec();
    handle.extend(0u32.to_ne_bytes());
    let mut ruled_out = Vec::new();
    for (what, which, file) in through {
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                ruled_out.push(format!("{what} cannot be opened ({e})"));
                continue;
            }
        };
        let (fs, unforgeable) = filesystem_of(&file);
        let how = format!(
            "open_by_handle_at with a handle made up for inode 2 (generation 0), on the filesystem ({fs}) of {what}{which}"
        );
        let flags = read_only | OFlag::O_DIRECTORY;
        match crate::sys::open_by_handle(file.as_fd(), FILEID_INO32_GEN, &handle, flags) {
            Ok(dir) => return opened(p, &how, dir),
            Err(Errno::EPERM) => {
                return Attempt::Stopped(
                    format!("{how}: EPERM{}", handle_refused_why())
                        + &also_userns("CAP_DAC_READ_SEARCH counts only in the host's user namespace"),
                )
            }
            Err(Errno::ENOSYS) if filtered() => {
                return Attempt::Stopped(format!(
                    "{how}: ENOSYS, the seccomp filter's answer for \"no such call\""
                ))
            }
            Err(Errno::ENOSYS) => {
                return Attempt::Untried(format!(
                    "{NO_HANDLE}: this kernel has no file handles (built without CONFIG_FHANDLE): open_by_handle_at: ENOSYS"
                ))
            }
            // The call was let through, and the filesystem found no such file.
            Err(e) => match unforgeable {
                None => return Attempt::Stopped(format!("{how}: {e}")),
                Some(why) => ruled_out.push(format!(
                    "{what} is on {fs}, {why} (the call itself was let through: {e})"
                )),
            },
        }
    }
    Attempt::Untried(format!("{NO_HANDLE}: {}", ruled_out.join("; ")))
}

/// The filesystem `file` is on, by name, and why lab cannot make up a handle of
/// its root (None: ext2/3/4, it can).
fn filesystem_of(file: impl std::os::fd::AsFd) -> (String, Option<&'static str>) {
    use nix::sys::statfs::{
        fstatfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC,
        XFS_SUPER_MAGIC,
    };
    let other = "and lab makes up handles for ext2, ext3 and ext4 only";
    let Ok(fs) = fstatfs(file) else {
        return ("a filesystem it cannot name".into(), Some(other));
    };
    match fs.filesystem_type() {
        // ext2 and ext3 have ext4's magic number.
        t if t == EXT4_SUPER_MAGIC => ("ext2/3/4".into(), None),
        t if t == TMPFS_MAGIC => (
            "tmpfs".into(),
            Some("whose handles carry a random generation number, which the kernel checks"),
        ),
        t if t == OVERLAYFS_SUPER_MAGIC => (
            "overlay".into(),
            Some("whose handles open nothing unless it is mounted with nfs_export=on"),
        ),
        t if t == BTRFS_SUPER_MAGIC => ("btrfs".into(), Some(other)),
        t if t == XFS_SUPER_MAGIC => ("xfs".into(), Some(other)),
        t => (format!("a filesystem of type {:#x}", t.0), Some(other)),
    }
}

/// What the made-up handle opened: the host's `/` (compared with the host's, as
/// lab saw it before the probe joined), or another directory outside the
/// container.
fn opened(p: &Probe, how: &str, dir: std::os::fd::OwnedFd) -> Attempt {
    use nix::sys::stat::{fstat, major, minor, stat};
    let st = match fstat(&dir) {
        Ok(s) => s,
        Err(e) => return Attempt::Stopped(format!("{how} opened a directory, but fstat: {e}")),
    };
    let (dev, ino) = (st.st_dev, st.st_ino);
    let device = format!("device {}:{}, inode {ino}", major(dev), minor(dev));
    if (dev, ino) == (p.host.root_dev, p.host.root_ino) {
        // The marker too, where it lies on that filesystem with nothing mounted
        // over its directory.
        let marker = p.marker.file_name().unwrap_or_default();
        let through = p
            .marker
            .strip_prefix("/")
            .ok()
            .and_then(|m| read_at(&dir, m));
        let also = match (through, read_at(&p.host_dir, Path::new(marker))) {
            (Some(a), Some(b)) if a == b => {
                format!(", and read the host's {} through it", p.marker.display())
            }
            _ => String::new(),
        };
        return Attempt::Reached(format!(
            "{how}: it opened the host's / itself ({device}), around every mount and namespace{also}"
        ));
    }
    if stat("/").is_ok_and(|me| (me.st_dev, me.st_ino) == (dev, ino)) {
        return Attempt::Untried(format!(
            "{NO_HANDLE} that leads out: {how} opened the container's own / ({device}), the root of its filesystem"
        ));
    }
    Attempt::Reached(format!(
        "{how}: it opened that filesystem's root directory ({device}), a directory of the host above the file the container was given"
    ))
}

/// The first bytes of file `path` below directory `dir`, if it can be read.
fn read_at(dir: impl std::os::fd::AsFd, path: &Path) -> Option<Vec<u8>> {
    use nix::fcntl::{openat, OFlag};
    use std::io::Read;
    let fd = openat(
        dir.as_fd(),
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(4096)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// Whether this process lives under a seccomp filter.
fn filtered() -> bool {
    crate::layers::privileges::capabilities::Status::of("self").is_some_and(|s| s.seccomp == 2)
}

/// Why open_by_handle_at failed with EPERM, from what this process holds.
fn handle_refused_why() -> String {
    // (Nothing to say without a /proc: step 2's container has none.)
    let Some(me) = crate::layers::privileges::capabilities::Status::of("self") else {
        return String::new();
    };
    // CAP_DAC_READ_SEARCH is capability 2.
    let cap = me.caps.effective & 1 << 2 != 0;
    match (cap, me.seccomp == 2) {
        (false, true) => " (no CAP_DAC_READ_SEARCH, and under a seccomp filter)",
        (false, false) => " (no CAP_DAC_READ_SEARCH)",
        (true, true) => " (CAP_DAC_READ_SEARCH is there: the seccomp filter refuses the call)",
        (true, false) => {
            " (though CAP_DAC_READ_SEARCH is there and no seccomp filter: a security module?)"
        }
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside any container, as root: a handle made up for inode 2 opens the
    /// root of the filesystem that holds the test's marker (or, where that is
    /// no ext2/3/4, this process's /): the host's / itself when the marker lies
    /// on it. Read only.
    #[test]
    #[ignore = "needs root: sudo ./test.sh"]
    fn a_made_up_handle_opens_the_root_of_an_ext4_filesystem() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("lab-handle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = Probe::of_this_process(2, &dir).unwrap();
        let ext = |path: &Path| {
            filesystem_of(std::fs::File::open(path).unwrap())
                .1
                .is_none()
        };
        let (ext_marker, ext_root) = (ext(&dir), ext(Path::new("/")));
        let on_root = std::fs::metadata(&dir).unwrap().dev() == p.host.root_dev;
        let attempt = forged_handle(&p);
        std::fs::remove_dir_all(&dir).unwrap();
        match attempt {
            Attempt::Reached(d) => {
                assert!(ext_marker || ext_root, "{d}");
                if ext_root && (on_root || !ext_marker) {
                    assert!(d.contains("the host's / itself"), "{d}");
                }
                if ext_marker && on_root {
                    assert!(d.contains("and read the host's"), "{d}");
                }
            }
            Attempt::Untried(d) => {
                assert!(!ext_marker && !ext_root && d.starts_with(NO_HANDLE), "{d}")
            }
            Attempt::Stopped(d) | Attempt::ClosedEarly(d) => panic!("{d}"),
        }
    }
}
