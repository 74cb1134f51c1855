//! Layer 9, part 3: the image as the container's root sees it. Next: `caps.rs`.
//!
//! The image's files belong to the host's root, user 0, which the container's
//! map leaves out: inside they would show as `nobody`, and the container's root
//! could not change one of them. Two ways out:
//! - an **idmapped mount** (mount_setattr with MOUNT_ATTR_IDMAP, Linux 5.12;
//!   overlayfs takes such layers from 5.19) shows a directory with its owners
//!   shifted, at no cost: what Podman and containerd do today. util-linux 2.39
//!   can make one (`mount --bind -o X-mount.idmap=...`), the 2.38 of Debian 12
//!   cannot, and the commands lab prints must work on both;
//! - a **shifted copy**: copy each layer once per range, every owner moved up by
//!   the range's base, what Podman did before idmapped mounts. It costs disk
//!   space and a copy the first time, and works with `cp` and `chown` anywhere.
//!
//! lab makes shifted copies, by hand and with system calls alike, under
//! LAB_HOME/shifted/BASE-COUNT/, and reuses them. The container's own layer
//! (upper, work) belongs to the mapped root. A `chown` drops a file's setuid bits
//! (put back) and its file capabilities (written back, caps.rs).

use super::caps;
use super::range::Range;
use crate::engine::plan::{quote_path, Action, RunContext};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the shifted copies of `range` live.
pub fn dir(range: Range) -> PathBuf {
    crate::dirs::shifted().join(format!("{}-{}", range.base, range.count))
}

/// The shifted copy of a layer directory (the default root filesystem, or an
/// image layer of the store).
pub fn copy_of(layer: &Path, range: Range) -> PathBuf {
    dir(range).join(layer.file_name().unwrap_or_default())
}

/// `shift_ids() ( ... )`: a shell function that moves every owner under a
/// directory up by a base, and puts back the mode (chown clears setuid bits).
///
/// Two names of one file (a hard link: Debian's images have them) are one inode,
/// and so one owner: a chown through the first name moves the owner the second
/// shows. So find lists the whole tree, every owner as it was, into a file
/// first, and the chowns come after: the second name is chowned to the same
/// owner again. (Read from find through a pipe, a long tree's second names
/// would be listed after the loop had moved the first: shifted twice.) A
/// subshell, for its `exit` and its trap: the list goes whatever happens.
pub struct DefineShiftIds;

impl Action for DefineShiftIds {
    fn shell(&self) -> String {
        r#"shift_ids() ( list=$(mktemp) && trap 'rm -f "$list"' EXIT && find "$2" -printf '%U %G %m %p\0' > "$list" || exit; while IFS=' ' read -r -d '' u g m p; do chown -h "$((u + $1)):$((g + $1))" "$p" && { [ -L "$p" ] || chmod "$m" "$p"; } || exit; done < "$list" )"#.into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab does it itself (Shift).
        Ok(())
    }
}

/// `[ -d COPY ] || { cp -a LAYER COPY.new-$$ && shift_ids BASE COPY.new-$$ && shift_caps ... && mv ... ; }`
/// (shift_caps: caps.rs):
/// a layer's shifted copy, made once.
pub struct Shift {
    pub layer: PathBuf,
    pub range: Range,
}

impl Shift {
    fn copy(&self) -> PathBuf {
        copy_of(&self.layer, self.range)
    }
}

impl Action for Shift {
    fn shell(&self) -> String {
        let copy = quote_path(&self.copy());
        let new = format!("{}.new-$$", self.copy().display());
        format!(
            "[ -d {copy} ] || {{ mkdir -p {} && cp -a {layer} {new} && shift_ids {base} {new} && shift_caps {base} {layer} {new} && mv {new} {copy}; }}",
            quote_path(&dir(self.range)),
            layer = quote_path(&self.layer),
            base = self.range.base
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let copy = self.copy();
        // The default root filesystem changes (steps 1 to 6 write into it): a
        // copy made before is made again, unless a container runs on it. The
        // image store's layers never change.
        let store = crate::dirs::home().join("layers");
        let stamp = (!self.layer.starts_with(&store)).then(|| fingerprint(&self.layer));
        let stamp_file = copy.with_extension("source");
        let stale = stamp.as_ref().is_some_and(|s| {
            std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(s.as_str())
        });
        if copy.is_dir() && (!stale || in_use(&copy)) {
            return Ok(());
        }
        let parent = dir(self.range);
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        // Made beside it and renamed: a half-made copy is never used, and lab
        // clean removes what a killed run left (.new-PID).
        let new = parent.join(format!(
            "{}.new-{}",
            copy.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let made = copy_tree(&self.layer, &new, self.range.base, &mut HashMap::new());
        if let Err(e) = made {
            let _ = crate::dirs::remove_tree(&new);
            return Err(e).with_context(|| format!("making the shifted copy {}", copy.display()));
        }
        if copy.is_dir() {
            // The stale copy goes: renamed first, so the name is never empty.
            let old = parent.join(format!(
                "{}.old-{}",
                copy.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            std::fs::rename(&copy, &old).with_context(|| format!("renaming {}", copy.display()))?;
            crate::dirs::remove_tree(&old)?;
        }
        match std::fs::rename(&new, &copy) {
            // Another lab made it at the same moment: as good as ours.
            Err(_) if copy.is_dir() => crate::dirs::remove_tree(&new)?,
            other => other.with_context(|| format!("renaming into {}", copy.display()))?,
        }
        if let Some(stamp) = stamp {
            std::fs::write(&stamp_file, stamp)
                .with_context(|| format!("writing {}", stamp_file.display()))?;
        }
        Ok(())
    }
}

/// What a directory tree holds, in a line: every entry's path, type, mode,
/// owner, size and modification time, hashed. Any file written, added or removed
/// changes it.
fn fingerprint(root: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            (
                e.path(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
            )
                .hash(&mut h);
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    format!("{:016x}\n", h.finish())
}

/// Is `copy` a lower layer of a mounted overlay (a running container's)?
fn in_use(copy: &Path) -> bool {
    let lower = format!("{}", copy.display());
    crate::mountinfo::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    )
    .iter()
    .filter(|m| m.fs_type == "overlay")
    .any(|m| {
        m.options
            .split(',')
            .filter_map(|o| o.strip_prefix("lowerdir="))
            .any(|l| l.split(':').any(|d| d == lower))
    })
}

/// Copy `from` to `to` as `cp -a` does (content, modes, links, device nodes,
/// extended attributes, hard links within the tree), then shift every owner up
/// by `base` and put back the mode, as `shift_ids` does. Each owner is read
/// from `from`, which no chown touches, and a file with two names is copied and
/// chowned once, its second name linked to the copy: never shifted twice.
pub(super) fn copy_tree(
    from: &Path,
    to: &Path,
    base: u32,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let meta =
        std::fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    let kind = meta.file_type();
    let mode = meta.mode() & 0o7777;
    if kind.is_dir() {
        std::fs::create_dir(to).with_context(|| format!("mkdir {}", to.display()))?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), base, links)?;
        }
    } else if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else if kind.is_file() {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&key) {
                std::fs::hard_link(first, to)?;
                return Ok(());
            }
            links.insert(key, to.to_path_buf());
        }
        std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    } else {
        use std::os::unix::fs::FileTypeExt;
        let sflag = if kind.is_char_device() {
            SFlag::S_IFCHR
        } else if kind.is_block_device() {
            SFlag::S_IFBLK
        } else if kind.is_fifo() {
            SFlag::S_IFIFO
        } else {
            // A socket means nothing in a copy.
            return Ok(());
        };
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        mknod(
            to,
            sflag,
            Mode::from_bits_truncate(mode),
            makedev(major, minor),
        )
        .with_context(|| format!("mknod {}", to.display()))?;
    }
    // As `cp -a`, then `chown`: the attributes first, but for a file capability,
    // which the chown would clear; then the owner, then the mode.
    let mut caps = None;
    for (name, value) in crate::sys::xattrs(from)? {
        match caps::is_capability(&name) {
            true => caps = Some(value),
            false => crate::sys::set_xattr(to, &name, &value)?,
        }
    }
    let (uid, gid) = (meta.uid() + base, meta.gid() + base);
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        to,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("chown {}", to.display()))?;
    if !kind.is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    }
    // Then the file capability, as shift_caps writes it: the container's root's.
    if let Some(value) = caps {
        caps::write_namespaced(to, &value, base)
            .with_context(|| format!("the file capability of {}", from.display()))?;
    }
    Ok(())
}

/// `chown BASE:BASE DIR...`: the container's own layer belongs to its root.
pub struct OwnBy {
    pub dirs: Vec<PathBuf>,
    pub range: Range,
}

impl Action for OwnBy {
    fn shell(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| quote_path(d)).collect();
        format!("chown {0}:{0} {1}", self.range.base, dirs.join(" "))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let id = self.range.base;
        for d in &self.dirs {
            nix::unistd::chown(
                d,
                Some(nix::unistd::Uid::from_raw(id)),
                Some(nix::unistd::Gid::from_raw(id)),
            )
            .with_context(|| format!("chown {id}:{id} {}", d.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree to shift in the temporary directory, removed when dropped. `a/`
    /// and `b/` hold the same 500 files, each a file with two names (hard
    /// links), owned by 0, 1000 or 2000; the names are long, so that find's list
    /// of one directory is more than a pipe holds (64 KiB), and a setuid file.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let root =
                std::env::temp_dir().join(format!("lab-shift-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for d in ["a", "b"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            for i in 0..500u32 {
                let name = format!("{}{i}", "x".repeat(200));
                let first = root.join("a").join(&name);
                std::fs::write(&first, i.to_string()).unwrap();
                let owner = Some(1000 * (i % 3));
                std::os::unix::fs::chown(&first, owner, owner).unwrap();
                std::fs::hard_link(&first, root.join("b").join(&name)).unwrap();
            }
            std::fs::write(root.join("setuid"), "").unwrap();
            std::fs::set_permissions(root.join("setuid"), std::fs::Permissions::from_mode(0o4755))
                .unwrap();
            Tree(root)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Every entry under `root` with its owner, group and mode, by path from it.
    fn owners(root: &Path) -> Vec<(PathBuf, u32, u32, u32)> {
        let mut all = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(p) = todo.pop() {
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            all.push((rel, m.uid(), m.gid(), m.mode() & 0o7777));
        }
        all.sort();
        all
    }

    /// Each entry of `shifted` is the entry of `before` with its owners moved
    /// up by `base`, once, and the same mode.
    fn shifted_once(before: &[(PathBuf, u32, u32, u32)], shifted: &Path, base: u32) {
        let after = owners(shifted);
        assert_eq!(before.len(), after.len());
        for ((p, u, g, m), (q, u2, g2, m2)) in before.iter().zip(&after) {
            assert_eq!(p, q);
            assert_eq!(
                (u + base, g + base, m),
                (*u2, *g2, m2),
                "{}: owner {u}:{g} became {u2}:{g2}",
                p.display()
            );
        }
    }

    fn root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root (chown): sudo ./test.sh"
        );
    }

    /// The printed `shift_ids`, run by bash, moves a file with two names once.
    #[test]
    #[ignore = "needs root: sudo ./test.sh"]
    fn the_printed_shift_moves_a_file_with_two_names_once() {
        root();
        let tree = Tree::new("printed");
        let before = owners(&tree.0);
        let script = format!(
            "{}\nshift_ids 100000 {}",
            DefineShiftIds.shell(),
            quote_path(&tree.0)
        );
        crate::engine::run_bash("-c", &script);
        shifted_once(&before, &tree.0, 100_000);
    }

    /// lab's own copy does the same, and keeps the two names one file.
    #[test]
    #[ignore = "needs root: sudo ./test.sh"]
    fn labs_shifted_copy_moves_a_file_with_two_names_once() {
        root();
        let tree = Tree::new("lab");
        let copy = Tree(tree.0.with_extension("copy"));
        copy_tree(&tree.0, &copy.0, 100_000, &mut HashMap::new()).unwrap();
        shifted_once(&owners(&tree.0), &copy.0, 100_000);
        let name = format!("{}7", "x".repeat(200));
        let (a, b) = (copy.0.join("a").join(&name), copy.0.join("b").join(&name));
        assert_eq!(a.metadata().unwrap().ino(), b.metadata().unwrap().ino());
    }
}
