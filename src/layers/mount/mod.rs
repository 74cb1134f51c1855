//! Layer 2: a mount namespace, and pivot_root instead of chroot.
//!
//! A mount namespace gives the container its own copy of the mount table: what it
//! mounts or unmounts is its own business. Inside it, pivot_root swaps the root
//! *mount* (not just a process's root directory, as chroot does): the root
//! filesystem becomes `/`, the host's tree is stacked on top of it and then
//! detached. Once the host's tree is no longer mounted anywhere in the namespace,
//! no `..` and no chroot trick leads back to it.
//!
//! `pivot_root . .`, as runc does it: the new root and the place for the old one
//! are the same directory, so lab needs no name of its own in the image's tree
//! (an image may hold anything at any path, a symbolic link included). The old
//! root lands on top of the new one, at `/` too; a path starts from the
//! process's root, the new root below, so `/etc` is the container's, and only
//! `/..` climbs onto the mount stacked there: the host's tree, until `umount -l
//! .` detaches it (umount acts on the topmost mount of the directory it is given).
//!
//! This file is the mount namespace and pivot_root; `dev.rs` gives the container
//! its own /dev.

pub mod dev;

use super::{Gathered, Layer};
use crate::engine::check::{Before, Check, Kind, Outcome, Probe};
use crate::engine::plan::{quote_path, Action, Command, Namespace, Phase, RunContext, Spec};
use crate::mountinfo::parse_mountinfo;
use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd;
use std::any::Any;
use std::fs::File;
use std::path::{Path, PathBuf};

pub const LAYER: Layer = Layer {
    number: 2,
    title: "mount namespace and pivot_root",
    idea: "the container gets its own mount table, and its root is a mount the host's tree is detached from",
    look: "cat /proc/mounts fails: no /proc yet. mount -t proc proc /proc, then ps: still the host's processes (no pid namespace), while cat /proc/mounts lists this namespace's mounts only. ls -l /dev: six devices of its own on a tmpfs, a devpts and a shm (the root filesystem's /dev is covered).",
    elsewhere: "Docker, Podman and runc always give a container a mount namespace, pivot_root into its root and a /dev of its own. Look at its mount table from the host, `sudo cat /proc/PID/mountinfo`, and compare `sudo readlink /proc/PID/ns/mnt` with `readlink /proc/self/ns/mnt`.",
    namespaces: &[Namespace::Mount],
    commands,
    note: |_| None,
    checks,
    hooks: &MountHooks,
};

/// A path of the host's tree as it is named between `pivot_root . .` and the
/// detaching of the old root (the `FromOldRoot` phase): `/..` climbs from the
/// new root onto the host's root, stacked on top of it.
pub fn in_old_root(host_path: &Path) -> PathBuf {
    Path::new("/..").join(host_path.strip_prefix("/").unwrap_or(host_path))
}

/// Make the directory `path` where it is missing, as runc does for what it
/// mounts on, and return the directory the kernel will mount on. Called after
/// pivot_root, where `/` is the container's root: an image's symbolic link
/// (`/proc -> /host/proc`) is followed as the container sees it, one component at
/// a time, and leads to a path of the container, never to one of the host
/// (a `..` at `/` stays there, as it does for the container once the host's
/// tree is detached; the kernel would climb onto the host's tree until then).
/// (Typed by hand, `mkdir -p` refuses a link to a missing path: File exists.)
pub fn mount_point(path: &Path) -> Result<PathBuf> {
    walk(Path::new("/"), path, false)
}

/// As [`mount_point`], for a file mounted over another (`mount --bind FILE
/// PATH`): where `path` leads, an empty file made there if it is missing (from
/// step 7 it lands in the container's writable layer), with its directories.
pub fn file_mount_point(path: &Path) -> Result<PathBuf> {
    walk(Path::new("/"), path, true)
}

/// Follow `path` from `root` (the container's `/`), one component at a time,
/// each symbolic link as the container sees it (an absolute one from `root`, a
/// `..` at `root` staying there); make what is missing: directories, and with
/// `file`, the last component as an empty file.
fn walk(root: &Path, path: &Path, file: bool) -> Result<PathBuf> {
    use std::ffi::OsString;
    use std::path::Component;
    let reversed = |p: &Path| -> Vec<OsString> {
        p.components()
            .rev()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut todo = reversed(path);
    let mut at = root.to_path_buf();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            if at != root {
                at.pop();
            }
            continue;
        }
        let next = at.join(&name);
        // The last component of the path, once every link before it is followed.
        let last = todo.is_empty();
        match next.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                anyhow::ensure!(links <= 40, "{}: too many symbolic links", path.display());
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    at = root.to_path_buf();
                }
                todo.extend(reversed(&target));
            }
            Ok(m) if m.is_dir() => at = next,
            Ok(_) if last && file => at = next,
            Ok(_) => {
                let what = match next == path {
                    true => format!("{} is not a directory", path.display()),
                    false => format!(
                        "{} leads to {}, not a directory",
                        path.display(),
                        next.display()
                    ),
                };
                return Err(anyhow::Error::new(nix::errno::Errno::ENOTDIR).context(what));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && last && file => {
                std::fs::write(&next, "").with_context(|| {
                    format!(
                        "{} is missing and cannot be made (as {})",
                        path.display(),
                        next.display()
                    )
                })?;
                at = next;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&next).with_context(|| {
                    format!("mkdir {} (for {})", next.display(), path.display())
                })?;
                at = next;
            }
            Err(e) => return Err(e).with_context(|| format!("looking at {}", next.display())),
        }
    }
    Ok(at)
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    let root = spec.new_root();
    Ok(vec![
        LAYER.at(
            Phase::Root,
            "make every mount private first: the namespace starts as a copy of the host's, and shared mounts (systemd's default) would pass our mounts back to the host; pivot_root also refuses a shared /. (The unshare command has done it already, by default; the unshare(2) system call that lab makes does not.)",
            MakePrivate,
        ),
        LAYER.at(
            Phase::Root,
            "bind the root filesystem onto itself: pivot_root needs the new root to be a mount point",
            BindSelf(root.clone()),
        ),
        LAYER.at(
            Phase::ChangeRoot,
            "pivot_root works on the current directory",
            ChangeDir(root),
        ),
        LAYER.at(
            Phase::ChangeRoot,
            "the root filesystem becomes /, and the host's root is stacked on top of it, at / too (new root and old root the same directory, as runc does: no name of lab's in the image's tree). A path starts from the process's root, the new one below: from here on /etc is the container's; but a .. that reaches / (/.., /etc/..) then follows what is mounted there, the host's tree: that is how what comes from the host is named until it is detached, and why the image's links that climb to / wait for that",
            PivotRoot,
        ),
        LAYER.at(
            Phase::ChangeRoot,
            "make the shell forget where it found programs: those were paths of the host's tree",
            ForgetProgramPaths,
        ),
        LAYER.inside(
            "detach the host's tree, stacked on / until now: umount acts on the topmost mount of the directory it is given (here /, the current directory), and -l detaches it although it is busy",
            DetachOldRoot,
        ),
    ]
    .into_iter()
    .chain(dev::commands(spec))
    .collect())
}

/// `mount --make-rprivate /`
struct MakePrivate;
/// `mount --bind DIR DIR`
struct BindSelf(PathBuf);
/// `cd DIR`
struct ChangeDir(PathBuf);
/// `pivot_root . .`
struct PivotRoot;
/// `hash -r`
struct ForgetProgramPaths;
/// `umount -l .`
struct DetachOldRoot;

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for MakePrivate {
    fn shell(&self) -> String {
        "mount --make-rprivate /".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("mount(\"/\", MS_REC|MS_PRIVATE)")
    }
}

impl Action for BindSelf {
    fn shell(&self) -> String {
        let p = quote_path(&self.0);
        format!("mount --bind {p} {p}")
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        mount(
            Some(&self.0),
            &self.0,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("mount({}, MS_BIND)", self.0.display()))
    }
}

impl Action for ChangeDir {
    fn shell(&self) -> String {
        format!("cd {}", quote_path(&self.0))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        unistd::chdir(&self.0).with_context(|| format!("chdir {}", self.0.display()))
    }
}

impl Action for PivotRoot {
    fn shell(&self) -> String {
        "pivot_root . .".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        unistd::pivot_root(".", ".").map_err(|errno| {
            let e = anyhow::Error::new(errno).context("pivot_root(\".\", \".\")");
            match errno {
                nix::errno::Errno::EINVAL => crate::engine::error::hinted(e, PIVOT_ROOT_REFUSED),
                _ => e,
            }
        })
    }
}

/// What to do when pivot_root says EINVAL: its two usual causes, each undone by
/// a line of this layer.
const PIVOT_ROOT_REFUSED: &str = "pivot_root refuses when the new root is not a mount point (mount --bind it onto itself first) or when / is a shared mount (mount --make-rprivate / first).";

impl Action for ForgetProgramPaths {
    fn shell(&self) -> String {
        "hash -r".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // A shell caches the path of every program it ran (`mount` was /usr/bin/mount
        // on the host). lab keeps no such cache: it looks the command up when it runs
        // it, inside the new root, so there is nothing to forget.
        Ok(())
    }
}

impl Action for DetachOldRoot {
    fn shell(&self) -> String {
        "umount -l .".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // The current directory is the new root (pivot_root left it there);
        // umount2 resolves "." to the topmost mount on it, the host's root.
        // Lazy (MNT_DETACH): the old root is busy (lab's own binary came from it).
        umount2(".", MntFlags::MNT_DETACH).context("umount2(\".\", MNT_DETACH)")
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

/// What the checks of this layer gather on the host first, and compare after.
struct MountHooks;

impl super::Hooks for MountHooks {
    /// The host's mount table and the container's, both opened on the host before
    /// joining: they can be read from inside, even where the container has no /proc.
    fn probe_data(&self, p: &Probe) -> Result<Option<Gathered>> {
        let target = p.target;
        let ns = |p: &str| crate::engine::check::ns_inode(p, "mnt");
        let tables = MountTables {
            shares_host: ns(&target.to_string()).is_some() && ns(&target.to_string()) == ns("self"),
            host: File::open("/proc/self/mountinfo")?,
            container: File::open(format!("/proc/{target}/mountinfo")).with_context(|| {
                format!("process {target} not found (is the container still running?)")
            })?,
        };
        super::gathered(Ok(tables))
    }
    /// The host's mount table, before and after the container.
    fn host_before(&self, _state: &Path) -> Option<Box<dyn Any>> {
        Some(Box::new(HostMounts(read_mountinfo())))
    }
    fn host_after(&self, _before: &dyn Any) -> Option<Box<dyn Any>> {
        Some(Box::new(HostMounts(read_mountinfo())))
    }
}

struct MountTables {
    /// Is the container in the host's mount namespace (seen from the host:
    /// a probe in a chroot has no /proc to look)?
    shares_host: bool,
    host: File,
    container: File,
}

impl MountTables {
    /// The host's mount table, as it is now.
    fn host(&self) -> String {
        reread(&self.host)
    }
    /// The container's mount table, as it is now.
    fn container(&self) -> String {
        reread(&self.container)
    }
}

fn reread(mut f: &File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut text);
    text
}

fn tables(p: &Probe) -> Result<&MountTables, Outcome> {
    p.data(LAYER.number)
}

struct HostMounts(String);

fn read_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

fn checks(_step: u8) -> Vec<Check> {
    vec![
        LAYER.check(
            "the container's / is a private mount",
            "/ is still shared with the host: `mount --make-rprivate /` did not run first. See `findmnt -o TARGET,PROPAGATION /` inside.",
            Kind::Inside(root_is_private),
        ),
        LAYER.check(
            "a mount made inside does not appear on the host",
            "The mount leaked to the host: no mount namespace, or / was shared. Compare `cat /proc/self/mountinfo` inside and on the host.",
            Kind::Inside(mount_stays_inside),
        ),
        LAYER.check(
            "the host's root is detached",
            "The host's root is still mounted: after `pivot_root . .`, `umount -l .` did not run. Look for a second mount on / with `cat /proc/mounts` inside.",
            Kind::Inside(old_root_detached),
        ),
        dev::check(),
        LAYER.check(
            "after exit, the host's mount table is as before",
            "A mount was left on the host: run `sudo lab clean`, and compare `findmnt` with what you expect.",
            Kind::AfterExit(host_mounts_unchanged),
        ),
        // What root inside can still do to the host (escapes.rs): each passes
        // while the escape works, and from the step that closes it when it fails.
        super::escapes::proc_1_root(),
        super::escapes::device_node(),
        super::escapes::kernel_module(),
        super::escapes::file_handle(),
    ]
}

fn root_is_private(p: &Probe) -> Outcome {
    let t = match tables(p) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let mounts = parse_mountinfo(&t.container());
    match mounts.iter().rev().find(|m| m.mount_point == "/") {
        Some(m) => Outcome::from(
            !m.optional.contains("shared:"),
            format!(
                "propagation of /: {}",
                if m.optional.is_empty() {
                    "private"
                } else {
                    &m.optional
                }
            ),
        ),
        None => Outcome::Fail("no mount at / in /proc/self/mountinfo".into()),
    }
}

fn mount_stays_inside(p: &Probe) -> Outcome {
    let t = match tables(p) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let source = format!("lab-probe-{}", std::process::id());
    let Some(dir) = ["/mnt", "/tmp", "/root", "/home", "/var", "/etc"]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
    else {
        return Outcome::Skip("no directory to mount on inside".into());
    };
    if let Err(e) = mount(
        Some(source.as_str()),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=4k"),
    ) {
        return Outcome::Fail(format!("mount -t tmpfs {source} {dir}: {e}"));
    }
    let inside = parse_mountinfo(&t.container())
        .iter()
        .any(|m| m.source == source);
    let host_text = t.host();
    let on_host = parse_mountinfo(&host_text)
        .iter()
        .any(|m| m.source == source);
    let _ = umount2(dir, MntFlags::MNT_DETACH);
    if !inside {
        return Outcome::Fail(format!(
            "the tmpfs {source} on {dir} is not even in the container's mount table"
        ));
    }
    Outcome::from(
        !on_host,
        format!(
            "tmpfs {source} on {dir}: in the container's mount table, {} the host's ({} mounts)",
            if on_host { "and also in" } else { "not in" },
            host_text.lines().count()
        ),
    )
}

fn old_root_detached(p: &Probe) -> Outcome {
    let t = match tables(p) {
        Ok(t) => t,
        Err(o) => return o,
    };
    // In the host's mount namespace the host's tree is all around it, whatever
    // its mount table shows from its root (nothing, from inside a chroot).
    if t.shares_host {
        return Outcome::Fail("the container is in the host's mount namespace".into());
    }
    let inside = parse_mountinfo(&t.container());
    // After `pivot_root . .` the host's root is stacked on the container's, at
    // / too, until it is detached: more than one mount on /.
    let on_root = inside.iter().filter(|m| m.mount_point == "/").count();
    // The host's root filesystem, mounted whole (its root directory, not a
    // directory of it such as the root filesystem's bind mount), anywhere inside:
    // the host's tree, still reachable.
    let host_text = t.host();
    let host_root = parse_mountinfo(&host_text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == "/");
    let whole = host_root.as_ref().map_or(0, |h| {
        inside
            .iter()
            .filter(|m| m.dev == h.dev && m.root == h.root)
            .count()
    });
    Outcome::from(
        on_root <= 1 && whole == 0,
        format!(
            "the container has {} mounts: {on_root} on / (2 while the host's root is stacked on the container's), {whole} of the host's whole root filesystem",
            inside.len()
        ),
    )
}

fn host_mounts_unchanged(b: &Before) -> Outcome {
    let Some((HostMounts(before), HostMounts(after))) = b.compare(LAYER.number) else {
        return Outcome::Fail("the host's mount table was not recorded".into());
    };
    // The overlay mounts of other containers (step 7) come and go as they start
    // and stop, and one whose lab was killed leaves its own until the next run
    // or lab clean: not this container's doing, so left out of the comparison
    // (those of lab's containers and of containers typed by hand, by name).
    let home = crate::dirs::home();
    let whose = |l: &str| -> Option<String> {
        let point = crate::mountinfo::unescape(l.split(' ').nth(4)?);
        ["containers", "hand"].iter().find_map(|kind| {
            let rest = std::path::Path::new(&point)
                .strip_prefix(home.join(kind))
                .ok()?;
            let name = rest
                .components()
                .next()?
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            (name != b.name).then_some(name)
        })
    };
    let mut others: Vec<String> = before
        .lines()
        .chain(after.lines())
        .filter_map(whose)
        .collect();
    others.sort();
    others.dedup();
    let was: Vec<&str> = before.lines().filter(|l| whose(l).is_none()).collect();
    let now: Vec<&str> = after.lines().filter(|l| whose(l).is_none()).collect();
    let (before, after) = (was.len(), now.len());
    let aside = match others.len() {
        0 => String::new(),
        _ => format!(
            " (the mounts of other containers left out: {})",
            others.join(", ")
        ),
    };
    if was == now {
        return Outcome::Pass(format!(
            "{before} mounts before, the same {after} after{aside}"
        ));
    }
    let gone: Vec<&str> = was.iter().filter(|l| !now.contains(l)).copied().collect();
    let new: Vec<&str> = now.iter().filter(|l| !was.contains(l)).copied().collect();
    Outcome::Fail(format!(
        "{before} mounts before, {after} after{aside}; new: {}; gone: {}",
        new.join(" | "),
        gone.join(" | ")
    ))
}

#[cfg(test)]
mod tests {
    use super::walk;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A tree standing for the container's root, with the host's beside it.
    fn trees(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("lab-walk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (root, host) = (dir.join("root"), dir.join("host"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(host.join("etc")).unwrap();
        (root, host)
    }

    /// Between `pivot_root . .` and `umount -l .` a `..` at `/` climbs onto the
    /// host's tree for the kernel; lab's walk keeps it at the container's root,
    /// as it is once the host's tree is gone: a link with more `..` than it has
    /// directories above it (`../../run/...`, from /etc) leads inside.
    #[test]
    fn links_lead_inside_the_root_whatever_they_say() {
        let (root, host) = trees("links");
        symlink("../../../run/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        symlink("/..", root.join("etc/hosts")).unwrap();
        symlink(&host, root.join("proc")).unwrap();
        let at = |p: &str, file| walk(&root, Path::new(p), file).unwrap();
        assert_eq!(at("/etc/resolv.conf", true), root.join("run/resolv.conf"));
        assert!(root.join("run/resolv.conf").is_file());
        assert_eq!(at("/etc/hosts", false), root);
        // An absolute link names a path of the container, however it reads.
        assert_eq!(
            at("/proc", false),
            root.join(host.strip_prefix("/").unwrap())
        );
        assert_eq!(std::fs::read_dir(host.join("etc")).unwrap().count(), 0);
        assert_eq!(at("/../../dev", false), root.join("dev"));
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }

    #[test]
    fn a_file_where_a_directory_is_wanted_is_refused() {
        let (root, _) = trees("file");
        std::fs::write(root.join("etc/hosts"), "").unwrap();
        assert_eq!(
            walk(&root, Path::new("/etc/hosts"), true).unwrap(),
            root.join("etc/hosts")
        );
        let e = walk(&root, Path::new("/etc/hosts/x"), false).unwrap_err();
        assert!(format!("{e:#}").contains("not a directory"), "{e:#}");
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }
}
