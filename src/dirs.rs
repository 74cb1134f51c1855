//! Where lab keeps its files on the host, and how it removes a tree it made.
//!
//! Below the engine and the layers: the image store and the default root
//! filesystem keep their files here too.
//!
//! - `LAB_HOME` (`/var/lib/lab`): root filesystems, images and their layers,
//!   containers' writable layers, the progress file;
//! - `LAB_RUN` (`/run/lab`): what lives only while containers run.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Is lab running without root? Then only the step with a user namespace runs,
/// one of the user's own, with the layers a user can have (rootless), and lab's
/// files go where a user's belong.
pub fn rootless() -> bool {
    // Decided once, by lab's user when it starts: a probe that has become root
    // of a container's user namespace is still lab without root.
    static ROOTLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOTLESS.get_or_init(|| !nix::unistd::geteuid().is_root())
}

/// How a command the student types to change lab's files starts: `sudo ` with
/// root, nothing without.
pub fn sudo() -> &'static str {
    if rootless() {
        ""
    } else {
        "sudo "
    }
}

/// Without root (step 9 only), lab keeps its files where the XDG base directory
/// specification says a user's belong: data in ~/.local/share/lab, what lives
/// only while containers run in $XDG_RUNTIME_DIR/lab.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("LAB_HOME") {
        return h.into();
    }
    if nix::unistd::geteuid().is_root() {
        return "/var/lib/lab".into();
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("lab-{}", nix::unistd::geteuid())));
    data.join("lab")
}

pub fn run_dir() -> PathBuf {
    if let Some(r) = std::env::var_os("LAB_RUN") {
        return r.into();
    }
    if nix::unistd::geteuid().is_root() {
        return "/run/lab".into();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => Path::new(&d).join("lab"),
        None => std::env::temp_dir().join(format!("lab-run-{}", nix::unistd::geteuid())),
    }
}

/// Copies of a layer or a root filesystem made for a range of IDs (step 9's
/// copies with shifted owners) live in `shifted/RANGE/NAME`, beside the tree
/// they were made from: whoever replaces or removes that tree removes them too.
pub fn shifted() -> PathBuf {
    home().join("shifted")
}

/// Every shifted copy of a layer directory named `name`, in every range, with
/// the note of what it was copied from (NAME.source).
pub fn shifted_copies(name: &std::ffi::OsStr) -> Vec<PathBuf> {
    let shifted = shifted();
    let mut source = name.to_os_string();
    source.push(".source");
    std::fs::read_dir(shifted)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|range| [range.path().join(name), range.path().join(&source)])
        .filter(|p| p.exists())
        .collect()
}

/// `rm -rf`, but first detach anything mounted below `path`, so that removing the
/// tree never deletes files of a filesystem mounted into it.
pub fn remove_tree(path: &Path) -> Result<()> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    match path.symlink_metadata() {
        Err(_) => return Ok(()),
        Ok(m) if !m.is_dir() => {
            return match std::fs::remove_file(path) {
                Err(e) if !gone(&e) => {
                    Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        Ok(_) => {}
    }
    // What is mounted below goes first. /proc/self/mountinfo says where: it is
    // read only when a walk of the tree's directories (each one's mount, statx)
    // finds a mount, or removing finds a busy file (a file mounted on), as the
    // kernel makes it anew each time, 4 µs a line here, and each running
    // container's overlay is a line.
    if mounts_below(path) {
        unmount_below(path)?;
    }
    let remove = || match std::fs::remove_dir_all(path) {
        // Without root: overlayfs makes its work/work with mode 0, and a container
        // may make directories nobody may enter. The user owns them: open them.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && rootless() => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        Err(e) if gone(&e) => Ok(()),
        other => other,
    };
    match remove() {
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
            unmount_below(path)?;
            remove()
        }
        other => other,
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// Whether something may be mounted on `path` or a directory below it: yes when
/// a directory's mount differs from the tree's, or when it cannot tell (a
/// directory it may not read).
fn mounts_below(path: &Path) -> bool {
    fn walk(dir: &Path, mount: u64) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return true;
        };
        for e in entries {
            let Ok((e, kind)) = e.and_then(|e| e.file_type().map(|k| (e, k))) else {
                return true;
            };
            if kind.is_dir() {
                let d = e.path();
                if crate::sys::mount_id(&d) != Some(mount) || walk(&d, mount) {
                    return true;
                }
            }
        }
        false
    }
    let above = path.parent().and_then(crate::sys::mount_id);
    match crate::sys::mount_id(path) {
        Some(mount) if above == Some(mount) => walk(path, mount),
        _ => true,
    }
}

/// Detach everything mounted on `path` and below, deepest first.
fn unmount_below(path: &Path) -> Result<()> {
    let prefix = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut below: Vec<PathBuf> = crate::mountinfo::parse_mountinfo(&text)
        .into_iter()
        .map(|m| PathBuf::from(crate::mountinfo::unescape(&m.mount_point)))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in below {
        nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", m.display()))?;
    }
    Ok(())
}

/// chmod u+rwx every directory below `dir` that the user owns.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_dir() {
        let mode = meta.permissions().mode() | 0o700;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            open_up(&e.path());
        }
    }
}
