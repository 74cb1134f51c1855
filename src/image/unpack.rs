//! Unpacking one tar into a directory without being tricked, and turning an
//! image layer's whiteouts into overlayfs's (part of image/, after mod.rs).
//!
//! Every directory is opened with O_NOFOLLOW relative to the one above it, so no
//! entry can lead out of the target through a symbolic link; absolute paths and
//! `..` are refused.
//!
//! The image spec applies each layer on top of the tree made by the layers below
//! it; lab keeps each layer as a directory of its own for overlayfs instead. Two
//! things of a layer then depend on the layers below, and the unpacker reads them
//! there (`lowers`): a directory the layer leaves out (`dir/file` without `dir/`)
//! keeps the owner and mode it has below, and a hard link to a file of a lower
//! layer gets a copy of that file in this layer first, as overlayfs would copy it
//! up.

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, makedev, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::cell::Cell;
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
    /// The layers below this one, the nearest first.
    lowers: Vec<OwnedFd>,
    pub(super) entries: usize,
    pub(super) whiteouts: usize,
    pub(super) opaque: usize,
    /// Directories the layer left out, made with their owner and mode from below.
    pub(super) implicit: Cell<usize>,
    /// Files of lower layers copied into this one for a hard link to them.
    pub(super) copied_up: usize,
    /// Device nodes not made: a container gets no device of the host's from an image.
    pub(super) devices_skipped: Vec<String>,
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
            lowers: Vec::new(),
            entries: 0,
            whiteouts: 0,
            opaque: 0,
            implicit: Cell::new(0),
            copied_up: 0,
            devices_skipped: Vec::new(),
        })
    }

    /// The layers below, bottom first (as an image lists them).
    pub(super) fn on_top_of(mut self, lowers: &[PathBuf]) -> Result<Unpacker> {
        for l in lowers.iter().rev() {
            let fd = nix::fcntl::open(
                l.as_path(),
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                NO_MODE,
            )
            .map_err(|e| nix_err(e, "opening", l))?;
            self.lowers.push(fd);
        }
        Ok(self)
    }

    /// A layer whose content depends on the layers below it.
    pub(super) fn depends_on_lowers(&self) -> bool {
        !self.lowers.is_empty() && (self.implicit.get() > 0 || self.copied_up > 0)
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
                // A whiteout hides only what the layers below have: what this
                // layer itself made stays (the image spec says so). A directory
                // of this layer hides the lower one's content by being opaque.
                if let Ok(st) = fstatat(parent.as_fd(), hidden, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    if is_kind(&st, SFlag::S_IFDIR) {
                        let dir = self.directory(&rel.with_file_name(hidden), false)?;
                        crate::sys::set_opaque(dir.as_fd())
                            .context("setting trusted.overlay.opaque")?;
                    }
                    self.whiteouts += 1;
                    return Ok(());
                }
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
                let existing = fstatat(
                    parent.as_fd(),
                    name_str.as_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .ok();
                if existing.is_some_and(|st| !is_kind(&st, SFlag::S_IFDIR)) {
                    remove_existing(&parent, &name_str)?;
                }
                if existing.map_or(true, |st| !is_kind(&st, SFlag::S_IFDIR)) {
                    mkdirat(parent.as_fd(), name_str.as_str(), perm)
                        .map_err(|e| nix_err(e, "mkdir", &rel))?;
                }
                // Deleted by a whiteout of this layer, then made again: nothing
                // of the lower directory may show through.
                if existing.is_some_and(|st| is_whiteout(&st)) {
                    let dir = self.directory(&rel, false)?;
                    crate::sys::set_opaque(dir.as_fd())
                        .context("setting trusted.overlay.opaque")?;
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
                let t_name = target
                    .file_name()
                    .context("a hard link to the layer's root")?;
                if stat_in(&self.root, &target).is_none() {
                    self.copy_up(&target)
                        .with_context(|| format!("hard link to {}", target.display()))?;
                }
                let t_parent = self.directory(target.parent().unwrap_or(Path::new("")), false)?;
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
                let harmless = kind == tar::EntryType::Char
                    && crate::devices::DEVICES
                        .iter()
                        .any(|(_, ma, mi, _)| (*ma, *mi) == (major.into(), minor.into()));
                if !(whiteout || harmless) {
                    // A node for the host's disk or memory would open it: not made.
                    let letter = if kind == tar::EntryType::Block {
                        'b'
                    } else {
                        'c'
                    };
                    self.devices_skipped
                        .push(format!("/{} ({letter} {major}:{minor})", rel.display()));
                    return Ok(());
                }
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
        // A hard link is the file it names: its header's owner and mode are not
        // the file's (tar writes the link's own), and are left alone.
        if kind == tar::EntryType::Link {
            return Ok(());
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
        // Last: chown clears security.capability, as it clears setuid bits.
        if self.mode == Contents::Layer && kind != tar::EntryType::Symlink {
            for (key, value) in xattrs_of(entry)? {
                crate::sys::set_xattr(&through(&parent, &name_str), &key, &value)
                    .with_context(|| format!("extended attribute of {}", rel.display()))?;
            }
        }
        Ok(())
    }

    /// The nearest lower layer that has `rel`, with what it is there; None when
    /// none has it or a whiteout deleted it.
    fn below(&self, rel: &Path) -> Option<(&OwnedFd, nix::sys::stat::FileStat)> {
        for layer in &self.lowers {
            match stat_in(layer, rel) {
                Some(st) if is_whiteout(&st) => return None,
                Some(st) => return Some((layer, st)),
                None => continue,
            }
        }
        None
    }

    /// Copy the file `rel` of a lower layer into this one (its parents as below).
    fn copy_up(&mut self, rel: &Path) -> Result<()> {
        let (layer, st) = self
            .below(rel)
            .context("no layer has it: a hard link must point to a file of the image")?;
        anyhow::ensure!(
            is_kind(&st, SFlag::S_IFREG),
            "a hard link must point to a regular file"
        );
        let from_dir = open_dir_in(layer, rel.parent().unwrap_or(Path::new("")))
            .context("the file's directory in the lower layer")?;
        let name = rel
            .file_name()
            .context("no file name")?
            .to_string_lossy()
            .into_owned();
        let from = openat(
            from_dir.as_fd(),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            NO_MODE,
        )
        .map_err(|e| nix_err(e, "opening", rel))?;
        let parent = self.directory(rel.parent().unwrap_or(Path::new("")), true)?;
        let to = openat(
            parent.as_fd(),
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| nix_err(e, "creating", rel))?;
        std::io::copy(&mut File::from(from), &mut File::from(to))?;
        fchownat(
            parent.as_fd(),
            name.as_str(),
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| nix_err(e, "chown", rel))?;
        fchmodat(
            parent.as_fd(),
            name.as_str(),
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            FchmodatFlags::NoFollowSymlink,
        )
        .map_err(|e| nix_err(e, "chmod", rel))?;
        for (key, value) in crate::sys::xattrs(&through(&from_dir, &name))? {
            if kept_xattr(&key.to_string_lossy()) {
                crate::sys::set_xattr(&through(&parent, &name), &key, &value)?;
            }
        }
        self.copied_up += 1;
        Ok(())
    }

    /// Open directory `rel` below the root, one component at a time with
    /// O_NOFOLLOW, so that no symlink in the layer can lead the unpacking outside;
    /// `create` makes missing directories.
    fn directory(&self, rel: &Path, create: bool) -> Result<OwnedFd> {
        let mut fd = nix::unistd::dup(self.root.as_fd())?;
        let mut here = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(c) = c else { continue };
            let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
            here.push(c);
            let next = match openat(fd.as_fd(), c, flags, NO_MODE) {
                Err(nix::Error::ENOENT) if create => {
                    self.implicit_directory(&fd, c, &here)?;
                    openat(fd.as_fd(), c, flags, NO_MODE)
                }
                // Deleted by a whiteout of this layer, and made again by a file
                // below it: a new, opaque directory.
                Err(nix::Error::ENOTDIR)
                    if create
                        && fstatat(fd.as_fd(), c, AtFlags::AT_SYMLINK_NOFOLLOW)
                            .is_ok_and(|st| is_whiteout(&st)) =>
                {
                    unlinkat(fd.as_fd(), c, UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| nix_err(e, "removing a whiteout", rel))?;
                    mkdirat(fd.as_fd(), c, Mode::from_bits_truncate(0o755))
                        .map_err(|e| nix_err(e, "mkdir", rel))?;
                    let made = openat(fd.as_fd(), c, flags, NO_MODE);
                    if let Ok(dir) = &made {
                        crate::sys::set_opaque(dir.as_fd())
                            .context("setting trusted.overlay.opaque")?;
                    }
                    made
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

    /// A directory the layer left out: as the layers below have it (root's 0755
    /// when none has it, or in the outer archive of an image).
    fn implicit_directory(&self, dir: &OwnedFd, name: &std::ffi::OsStr, rel: &Path) -> Result<()> {
        let below = match self.mode {
            Contents::Layer => self
                .below(rel)
                .map(|(_, st)| st)
                .filter(|st| is_kind(st, SFlag::S_IFDIR)),
            Contents::Plain => None,
        };
        let (mode, uid, gid) = below
            .map(|st| (st.st_mode & 0o7777, st.st_uid, st.st_gid))
            .unwrap_or((0o755, 0, 0));
        mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o700))
            .map_err(|e| nix_err(e, "mkdir", rel))?;
        if self.mode == Contents::Layer {
            fchownat(
                dir.as_fd(),
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| nix_err(e, "chown", rel))?;
            self.implicit.set(self.implicit.get() + 1);
        }
        fchmodat(
            dir.as_fd(),
            name,
            Mode::from_bits_truncate(mode),
            FchmodatFlags::NoFollowSymlink,
        )
        .map_err(|e| nix_err(e, "chmod", rel))?;
        Ok(())
    }
}

const NO_MODE: Mode = Mode::empty();

fn is_kind(st: &nix::sys::stat::FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// overlayfs's whiteout: a character device 0/0.
fn is_whiteout(st: &nix::sys::stat::FileStat) -> bool {
    is_kind(st, SFlag::S_IFCHR) && st.st_rdev == 0
}

/// `name` in the directory open as `dir`, as a path the xattr calls take (the
/// directory was opened safely; the last component is not followed).
fn through(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}/{name}",
        std::os::fd::AsRawFd::as_raw_fd(dir)
    ))
}

/// Directory `rel` of a layer, one component at a time with O_NOFOLLOW.
fn open_dir_in(layer: &OwnedFd, rel: &Path) -> Option<OwnedFd> {
    let mut fd = nix::unistd::dup(layer.as_fd()).ok()?;
    for c in rel.components() {
        let Component::Normal(c) = c else { continue };
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        fd = openat(fd.as_fd(), c, flags, NO_MODE).ok()?;
    }
    Some(fd)
}

/// What `rel` is in a layer (not followed), or None when the layer lacks it. A
/// whiteout on the way (a deleted parent) counts as the answer.
fn stat_in(layer: &OwnedFd, rel: &Path) -> Option<nix::sys::stat::FileStat> {
    let mut fd = nix::unistd::dup(layer.as_fd()).ok()?;
    let mut components = rel.components().peekable();
    while let Some(c) = components.next() {
        let Component::Normal(c) = c else { continue };
        let st = fstatat(fd.as_fd(), c, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if components.peek().is_none() || is_whiteout(&st) {
            return Some(st);
        }
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        fd = openat(fd.as_fd(), c, flags, NO_MODE).ok()?;
    }
    None
}

/// The extended attributes a layer may carry (PAX headers `SCHILY.xattr.NAME`):
/// user ones, and file capabilities (Debian's ping has cap_net_raw). trusted.*
/// would speak to overlayfs itself, security.* others to the host's LSM: skipped.
fn kept_xattr(name: &str) -> bool {
    name.starts_with("user.") || name == "security.capability"
}

fn xattrs_of(entry: &mut tar::Entry<impl Read>) -> Result<Vec<(std::ffi::CString, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(pax) = entry.pax_extensions()? else {
        return Ok(out);
    };
    for ext in pax {
        let ext = ext?;
        let Ok(key) = ext.key() else { continue };
        let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        if kept_xattr(name) {
            let name = std::ffi::CString::new(name).context("an xattr name with a NUL")?;
            out.push((name, ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

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
            crate::dirs::remove_tree(&real)
        }
        Ok(_) => unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| anyhow!("removing {name}: {e}")),
    }
}
