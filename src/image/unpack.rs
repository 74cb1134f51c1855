//! Unpacking one tar into a directory without being tricked, and turning an
//! image layer's whiteouts into overlayfs's (part of image/, after mod.rs).
//!
//! Every directory is opened with O_NOFOLLOW relative to the one above it, so no
//! entry can lead out of the target through a symbolic link; absolute paths and
//! `..` are refused.

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, makedev, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

// ── Unpacking a tar safely ─────────────────────────────────────────────────────

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Contents {
    /// An image layer: whiteouts converted, links and special files allowed.
    Layer,
    /// The outer archive of `docker save` or an OCI layout: files, directories and
    /// the relative symlinks docker save uses between layer directories.
    Plain,
}

pub(super) struct Unpacker {
    root: OwnedFd,
    mode: Contents,
    pub(super) entries: usize,
    pub(super) whiteouts: usize,
    pub(super) opaque: usize,
}

fn nix_err(e: nix::Error, what: &str, path: &Path) -> anyhow::Error {
    anyhow!("{what} {}: {e}", path.display())
}

impl Unpacker {
    pub(super) fn new(root: &Path, mode: Contents) -> Result<Unpacker> {
        let root = nix::fcntl::open(
            root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            NO_MODE,
        )
        .map_err(|e| nix_err(e, "opening", root))?;
        Ok(Unpacker {
            root,
            mode,
            entries: 0,
            whiteouts: 0,
            opaque: 0,
        })
    }

    pub(super) fn unpack(&mut self, reader: impl Read) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().context("not a tar archive")? {
            let mut entry = entry.context("reading the archive")?;
            let raw = entry.path()?.into_owned();
            self.entry(&raw, &mut entry)
                .with_context(|| format!("refusing entry {:?}", raw.display().to_string()))?;
            self.entries += 1;
        }
        Ok(())
    }

    fn entry(&mut self, raw: &Path, entry: &mut tar::Entry<impl Read>) -> Result<()> {
        let rel = safe_relative(raw)?;
        let Some(name) = rel.file_name().map(|n| n.to_owned()) else {
            return Ok(()); // "./": the layer's own root
        };
        let name_str = name.to_string_lossy().into_owned();
        let parent = self.directory(rel.parent().unwrap_or(Path::new("")), true)?;
        let header = entry.header();
        let kind = header.entry_type();
        // Some archivers leave numeric fields empty: root, and plain permissions.
        let perm = Mode::from_bits_truncate(
            header
                .mode()
                .unwrap_or(if kind.is_dir() { 0o755 } else { 0o644 })
                & 0o7777,
        );
        let (uid, gid) = (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        );
        let device = (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        );

        if self.mode == Contents::Layer && name_str == ".wh..wh..opq" {
            crate::sys::set_opaque(parent.as_fd()).context("setting trusted.overlay.opaque")?;
            self.opaque += 1;
            return Ok(());
        }
        if self.mode == Contents::Layer {
            if let Some(hidden) = name_str.strip_prefix(".wh.") {
                // `.wh..` would name `.`, `.wh...` would name `..`: the layer itself
                // or what holds it. Only a plain name can be deleted.
                anyhow::ensure!(
                    !matches!(hidden, "" | "." | ".."),
                    "a whiteout must name a file ({name_str:?} names a directory above it)"
                );
                remove_existing(&parent, hidden)?;
                mknodat(
                    parent.as_fd(),
                    hidden,
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    makedev(0, 0),
                )
                .map_err(|e| nix_err(e, "mknod (whiteout)", &rel))?;
                self.whiteouts += 1;
                return Ok(());
            }
        }
        let is_dir = kind == tar::EntryType::Directory;
        if !is_dir {
            remove_existing(&parent, &name_str)?;
        }
        match kind {
            tar::EntryType::Directory => {
                if fstatat(
                    parent.as_fd(),
                    name_str.as_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_err()
                {
                    mkdirat(parent.as_fd(), name_str.as_str(), perm)
                        .map_err(|e| nix_err(e, "mkdir", &rel))?;
                }
                // Through O_NOFOLLOW: a symlink where a directory should be is refused.
                drop(self.directory(&rel, false)?);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = openat(
                    parent.as_fd(),
                    name_str.as_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| nix_err(e, "creating", &rel))?;
                std::io::copy(entry, &mut File::from(fd))
                    .with_context(|| format!("writing {}", rel.display()))?;
            }
            tar::EntryType::Symlink if self.mode == Contents::Layer || plain_link_ok(entry)? => {
                let target = entry.link_name()?.context("a symlink without a target")?;
                symlinkat(target.as_ref(), parent.as_fd(), name_str.as_str())
                    .map_err(|e| nix_err(e, "symlink", &rel))?;
            }
            tar::EntryType::Link if self.mode == Contents::Layer => {
                let target = entry.link_name()?.context("a hard link without a target")?;
                let target =
                    safe_relative(&target).context("a hard link must point inside the layer")?;
                let t_parent = self.directory(target.parent().unwrap_or(Path::new("")), false)?;
                let t_name = target
                    .file_name()
                    .context("a hard link to the layer's root")?;
                linkat(
                    t_parent.as_fd(),
                    t_name,
                    parent.as_fd(),
                    name_str.as_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| nix_err(e, "hard link", &rel))?;
            }
            tar::EntryType::Char | tar::EntryType::Block if self.mode == Contents::Layer => {
                let (major, minor) = device;
                let whiteout = kind == tar::EntryType::Char && (major, minor) == (0, 0);
                let harmless =
                    kind == tar::EntryType::Char && HARMLESS_DEVICES.contains(&(major, minor));
                anyhow::ensure!(
                    whiteout || harmless,
                    "device node ({kind:?} {major}:{minor}): an image layer may only hold the harmless character devices null, zero, full, random, urandom and tty (and 0/0 whiteouts)"
                );
                if whiteout {
                    self.whiteouts += 1; // already in overlayfs's spelling
                }
                let dev = makedev(major.into(), minor.into());
                mknodat(parent.as_fd(), name_str.as_str(), SFlag::S_IFCHR, perm, dev)
                    .map_err(|e| nix_err(e, "mknod", &rel))?;
            }
            tar::EntryType::Fifo if self.mode == Contents::Layer => {
                mknodat(parent.as_fd(), name_str.as_str(), SFlag::S_IFIFO, perm, 0)
                    .map_err(|e| nix_err(e, "mkfifo", &rel))?;
            }
            other => bail!("{other:?} entries are not allowed here"),
        }
        if self.mode == Contents::Layer {
            fchownat(
                parent.as_fd(),
                name_str.as_str(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| nix_err(e, "chown", &rel))?;
        }
        if kind != tar::EntryType::Symlink {
            fchmodat(
                parent.as_fd(),
                name_str.as_str(),
                perm,
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| nix_err(e, "chmod", &rel))?;
        }
        Ok(())
    }

    /// Open directory `rel` below the root, one component at a time with
    /// O_NOFOLLOW, so that no symlink in the layer can lead the unpacking outside;
    /// `create` makes missing directories.
    fn directory(&self, rel: &Path, create: bool) -> Result<OwnedFd> {
        let mut fd = nix::unistd::dup(self.root.as_fd())?;
        for c in rel.components() {
            let Component::Normal(c) = c else { continue };
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            let next = match openat(fd.as_fd(), c, flags, NO_MODE) {
                Err(nix::Error::ENOENT) if create => {
                    mkdirat(fd.as_fd(), c, Mode::from_bits_truncate(0o755))
                        .map_err(|e| nix_err(e, "mkdir", rel))?;
                    openat(fd.as_fd(), c, flags, NO_MODE)
                }
                other => other,
            };
            fd = next.map_err(|e| match e {
                nix::Error::ENOTDIR | nix::Error::ELOOP => {
                    anyhow!(
                        "{} goes through {:?}, which is not a directory (a symlink?)",
                        rel.display(),
                        c
                    )
                }
                e => nix_err(e, "opening", rel),
            })?;
        }
        Ok(fd)
    }
}

const NO_MODE: Mode = Mode::empty();

/// null, zero, full, random, urandom, tty: what a shell needs, and nothing that
/// reaches the host's disks or memory.
const HARMLESS_DEVICES: [(u32, u32); 6] = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)];

/// docker save links duplicate layer tars to each other with relative symlinks;
/// nothing else may be a symlink in the outer archive.
fn plain_link_ok(entry: &tar::Entry<impl Read>) -> Result<bool> {
    let target = entry.link_name()?.context("a symlink without a target")?;
    Ok(safe_relative_parent_ok(&target))
}

fn safe_relative_parent_ok(target: &Path) -> bool {
    !target.is_absolute()
        && target
            .components()
            .filter(|c| matches!(c, Component::ParentDir))
            .count()
            <= 1
}

/// `./a/b` as `a/b`; absolute paths and `..` refused.
fn safe_relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                bail!("absolute path: it would write outside the layer")
            }
            Component::ParentDir => bail!("`..` in the path: it would write outside the layer"),
        }
    }
    Ok(out)
}

/// Remove whatever is at `name` (a later entry replaces an earlier one).
fn remove_existing(dir: &OwnedFd, name: &str) -> Result<()> {
    match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(_) => Ok(()),
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            let fd = openat(
                dir.as_fd(),
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY,
                NO_MODE,
            )?;
            let path = PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ));
            let real = std::fs::read_link(&path)?;
            drop(fd);
            crate::state::remove_tree(&real)
        }
        Ok(_) => unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| anyhow!("removing {name}: {e}")),
    }
}
