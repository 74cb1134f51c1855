//! Layer 7: an overlay filesystem: a read-only image plus a writable layer.
//!
//! Until now every container wrote into the one root filesystem it shared with
//! the others. overlayfs stacks directories instead: the image's layers below
//! (`lowerdir`, read-only, shared by every container of that image), the
//! container's own `upperdir` on top, and a merged view of them all that becomes
//! the container's `/`. Reading finds the topmost copy of a file; writing copies
//! it up into `upperdir` first; deleting leaves a *whiteout* in `upperdir` (a
//! character device 0/0) that hides the file below. Nothing is copied to start a
//! container, so it costs the same for an image of 5 MB or 500 MB.
//!
//! This file is the overlay; `config.rs` is what an image's config asks of the
//! container (environment, working directory, command).

mod config;
mod options;
pub use config::run_as;
pub use options::Options;

use super::Layer;
use crate::engine::check::{Check, Kind, Outcome, Probe};
use crate::engine::plan::{quote_path, Action, Command, MakeDirs, Phase, RunContext, Spec};
use anyhow::{Context, Result};
use nix::fcntl::AtFlags;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstatat, SFlag};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const LAYER: Layer = Layer {
    number: 7,
    title: "overlay filesystem",
    idea: "the image stays read-only: the container's writes go to a layer of its own",
    look: "touch /new-file: the write lands in this container's own writable layer, and the image below stays as it was.",
    elsewhere: "Docker's overlay2 driver and Podman's storage mount the image's layers read-only under the container's own writable layer; runc, bwrap and systemd-nspawn use a directory as it is. The line for / in `sudo cat /proc/PID/mountinfo` shows which: `overlay ... lowerdir=...,upperdir=...`.",
    namespaces: &[],
    commands,
    note: |_| None,
    checks,
    hooks: &OverlayHooks,
};

/// What the engine asks of this layer besides its commands and checks.
struct OverlayHooks;

impl super::Hooks for OverlayHooks {
    /// From this step on, the container's `/` is the overlay's merged view.
    fn new_root(&self, spec: &Spec) -> Option<PathBuf> {
        Some(spec.container_dir().join("merged"))
    }
    fn probe_data(&self, p: &Probe) -> Result<Option<super::Gathered>> {
        let dirs = probe_dirs(&p.target.to_string(), &p.fixtures.join("second"));
        match dirs {
            // Another runtime may keep its layers out of the host's sight
            // (Podman's copies for --uidmap): not the container's failure.
            Err(e) if p.maker.is_other() && layers_of(&p.target.to_string()).is_ok() => {
                super::gathered(Ok(Unseen(format!(
                "its layers cannot be reached from the host, to compare ({e:#}): the runtime keeps them in a mount namespace of its own"
            ))))
            }
            dirs => super::gathered(dirs),
        }
    }
    /// The container is gone: the copy that the whiteout check wrote back into
    /// a kept upper layer goes too (lab's, not the student's).
    fn release(&self, state: &Path) {
        remove_check_traces(&state.join(TRACES));
    }
    /// With --keep: where the container's writable layer is, and that it holds
    /// the container's name until removed (engine/state: never reused).
    fn kept(&self, spec: &Spec) -> Option<String> {
        let dir = spec.container_dir();
        spec.keep.then(|| {
            format!(
                "{}: what container {} changed (--keep). It holds the name {1} until you remove it: {}rm -rf {}",
                dir.join("upper").display(),
                spec.name,
                crate::dirs::sudo(),
                quote_path(&dir)
            )
        })
    }
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    let dir = spec.container_dir();
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    let mut commands = Vec::new();
    let mut lower = spec.image.clone();
    // In a user namespace (step 9) the container's root is an ordinary user of the host: it gets
    // the image as shifted copies that it owns, and its own layer (userns/shift.rs).
    // (Without root, the user's own files are root's inside already.)
    let rootless = crate::dirs::rootless();
    let range = (spec.in_user_namespace() && !rootless)
        .then(|| super::userns::maps(spec))
        .and_then(|m| m.ok())
        .map(|m| m.uid);
    if let Some(range) = range {
        use super::userns::shift;
        commands.push(LAYER.at(
            Phase::Host,
            "a shell function that moves every owner of a tree up by a number, and puts back each mode (chown clears setuid bits). find lists the whole tree into a file before the first chown: a file with two names (a hard link) is one inode, and its second name, listed after the first was chowned, would be moved twice",
            shift::DefineShiftIds,
        ));
        commands.push(LAYER.at(
            Phase::Host,
            format!(
                "chown also clears file capabilities (Debian's ping has cap_net_raw): a shell function that writes those of a layer onto its copy, after the chowns, as the container's root's. setcap -n {} writes a namespaced one (revision 3 of security.capability, with the host ID of its root), which the kernel honours only in a user namespace whose root is host user {0}; the image's, the host root's, would count on the host too, for whoever ran the copy there",
                range.base
            ),
            super::userns::caps::DefineShiftCaps,
        ));
        for layer in &spec.image {
            commands.push(LAYER.at(
                Phase::Host,
                format!(
                    "once for every container of this range: a copy of the image layer with its owners moved up by {}, so that the container's root (user {0} outside) owns what the host's root owns, and its file capabilities the container's root's",
                    range.base
                ),
                shift::Shift {
                    layer: layer.clone(),
                    range,
                },
            ));
        }
        lower = spec
            .image
            .iter()
            .map(|l| shift::copy_of(l, range))
            .collect();
    }
    commands.push(LAYER.at(
        Phase::Host,
        "the container's own layer (upper), overlayfs's scratch space (work, same filesystem as upper), and where the merged view appears",
        MakeDirs(vec![upper.clone(), work.clone(), merged.clone()]),
    ));
    if let Some(range) = range {
        commands.push(LAYER.at(
            Phase::Host,
            format!(
                "the container's own layer belongs to its root, user {} outside: what it writes lands there owned by that user",
                range.base
            ),
            super::userns::shift::OwnBy {
                dirs: vec![upper.clone(), work.clone()],
                range,
            },
        ));
    }
    // Without root, the overlay is mounted inside, in the user's own namespaces
    // (the kernel allows that since Linux 5.11), not on the host.
    let (mount_phase, mount_why) = match rootless {
        false => (Phase::Host, "stack them: the image read-only below (the leftmost lowerdir is the top layer), every write into upper; the merged view becomes the new root"),
        true => (Phase::Enter, "inside, in the container's own mount namespace (a user may not mount on the host): stack them, the image read-only below, every write into upper"),
    };
    // A layer removed at exit need not reach the disk: `volatile` tells the kernel
    // to skip syncing it, above all the sync of the whole filesystem below upper
    // that unmounting an overlay does (Podman does the same for --rm containers).
    // A layer kept for the student (--keep) is synced as any file is.
    let volatile = !spec.keep;
    let mount_why = match volatile {
        true => format!("{mount_why}; volatile: the layer goes at exit, so the kernel need not write it to disk (nor flush the disk below it at umount)"),
        false => mount_why.to_string(),
    };
    commands.extend([LAYER.at(
        mount_phase,
        mount_why,
        MountOverlay {
            // overlayfs lists the top layer first; images list the bottom layer first.
            lower: lower.into_iter().rev().collect(),
            upper: upper.clone(),
            work: work.clone(),
            merged: merged.clone(),
            volatile,
        },
    )]);
    commands.extend(config::commands(spec));
    if !rootless {
        commands.push(LAYER.at(
            Phase::Teardown,
            "after exit: take the merged view away",
            Unmount(merged.clone()),
        ));
    }
    commands.push(if spec.keep {
        LAYER.at(
            Phase::Teardown,
            "--keep: leave upper, to look at what the container changed; remove the rest",
            RemoveAll(vec![work, merged]),
        )
    } else {
        LAYER.at(
            Phase::Teardown,
            "remove the container's layer: the image is untouched",
            RemoveAll(vec![dir]),
        )
    });
    Ok(commands)
}

/// `mount -t overlay overlay -o lowerdir=...,upperdir=...,workdir=...[,volatile] MERGED`
struct MountOverlay {
    lower: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
    volatile: bool,
}
/// `umount DIR`
struct Unmount(PathBuf);
/// `rm -rf DIR...`
struct RemoveAll(Vec<PathBuf>);

// ── The system calls ───────────────────────────────────────────────────────────

fn paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| quote_path(d))
        .collect::<Vec<_>>()
        .join(" ")
}

impl MountOverlay {
    fn options(&self) -> String {
        let lower: Vec<String> = self
            .lower
            .iter()
            .map(|l| l.to_string_lossy().into_owned())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}{}",
            lower.join(":"),
            self.upper.display(),
            self.work.display(),
            if self.volatile { ",volatile" } else { "" }
        )
    }
}

impl Action for MountOverlay {
    fn shell(&self) -> String {
        format!(
            "mount -t overlay overlay -o {} {}",
            crate::engine::plan::quote(&self.options()),
            quote_path(&self.merged)
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let options = self.options();
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .with_context(|| format!("mount -t overlay -o {options} {}", self.merged.display()))
    }
}

impl Action for Unmount {
    fn shell(&self) -> String {
        format!("umount {}", quote_path(&self.0))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        umount2(&self.0, MntFlags::empty()).with_context(|| format!("umount {}", self.0.display()))
    }
}

impl Action for RemoveAll {
    fn shell(&self) -> String {
        if crate::dirs::rootless() {
            // overlayfs makes work/work with mode 0: its owner, the user, opens it first.
            let p = paths(&self.0);
            return format!("chmod -R u+rwX {p} && rm -rf {p}");
        }
        format!("rm -rf {}", paths(&self.0))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        for d in &self.0 {
            crate::dirs::remove_tree(d)?;
        }
        Ok(())
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(_step: u8) -> Vec<Check> {
    vec![
        LAYER.check(
            "a file written inside lands in the upper directory, not in the image",
            "The write did not reach upperdir: is / an overlay mount? Look at the root line of `cat /proc/mounts` inside.",
            Kind::Confined(write_lands_in_upper),
        ),
        LAYER.check(
            "a file of the image deleted inside leaves a whiteout and stays in the image",
            "Deleting should leave a character device 0/0 in upperdir and the image untouched: is the image a lowerdir (read-only) and not the upperdir?",
            Kind::Confined(delete_leaves_whiteout),
        ),
        LAYER.check(
            "a second container of the same image does not see the first one's changes",
            "Two containers share a writable layer: each needs an upperdir of its own.",
            Kind::Confined(second_container_sees_image_only),
        ),
    ]
}

/// In a container's state directory: what the whiteout check will leave in its
/// upper layer (the upper directory, the file it writes back, the directories
/// that copying it up makes), for `release` to remove.
const TRACES: &str = "overlay-check-traces";

/// The file of the image the whiteout check deletes and writes back: the first
/// of [`VICTIMS`] that is a file of the image and untouched in the upper layer.
/// Chosen the same way on the host (to note it) and inside (to use it).
fn victim(upper: &File, lower: &[File]) -> Option<&'static str> {
    VICTIMS.iter().copied().find(|v| {
        matches!(look(upper, v), Found::Missing)
            && lower.iter().any(|l| matches!(look(l, v), Found::File))
    })
}

/// Remove what the whiteout check left in a kept upper layer: its copy of the
/// image's file, if it still is that copy (a change the student made stays),
/// then the directories the copy-up made, if empty.
fn remove_check_traces(traces: &Path) {
    let Ok(text) = std::fs::read_to_string(traces) else {
        return;
    };
    let mut lines = text.lines();
    let (Some(upper), Some(lower), Some(victim)) = (lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let (copy, image) = (Path::new(upper).join(victim), Path::new(lower).join(victim));
    if std::fs::read(&copy)
        .ok()
        .is_some_and(|c| std::fs::read(&image).ok() == Some(c))
    {
        let _ = std::fs::remove_file(&copy);
    }
    for dir in lines {
        let _ = std::fs::remove_dir(Path::new(upper).join(dir));
    }
}

/// Why another runtime's layers cannot be reached from the host.
struct Unseen(String);
/// What the overlay checks need, opened on the host before the probe joins the
/// container: its layers, and the root of a second overlay of the same image.
struct ProbeDirs {
    pub upper: File,
    pub lower: Vec<File>,
    /// The merged root of a second container's overlay (same image, its own upper),
    /// already unmounted: the open directory keeps it alive for the probe alone.
    pub second: Option<File>,
}

/// The overlay under `target`'s root, as /proc/PID/mountinfo describes it, with a
/// second overlay of the same image made in `scratch`.
fn probe_dirs(target: &str, scratch: &Path) -> Result<ProbeDirs> {
    let (upper, lower) = layers_of(target)?;
    let open = |p: &str| File::open(p).with_context(|| format!("opening {p}"));
    // Without root lab may not mount on the host: no second overlay to compare.
    let second = if crate::dirs::rootless() {
        None
    } else {
        let (s_upper, s_work, s_merged) = (
            scratch.join("upper"),
            scratch.join("work"),
            scratch.join("merged"),
        );
        for d in [&s_upper, &s_work, &s_merged] {
            std::fs::create_dir_all(d)?;
        }
        let second = MountOverlay {
            lower: lower.iter().map(PathBuf::from).collect(),
            upper: s_upper,
            work: s_work,
            merged: s_merged.clone(),
            volatile: true,
        };
        second.apply(&RunContext::default())?;
        let merged = File::open(&s_merged);
        // Detach it at once: the host's mount table is as before, the open
        // directory keeps the second overlay alive for the probe.
        umount2(&s_merged, MntFlags::MNT_DETACH)?;
        Some(merged?)
    };
    let dirs = ProbeDirs {
        upper: open(&upper)?,
        lower: lower.iter().map(|l| open(l)).collect::<Result<_>>()?,
        second,
    };
    // A container of lab's: note what the whiteout check will leave in its upper
    // layer, to be removed when the container is gone (a --keep layer holds only
    // what the container itself changed). Typed by hand, the layer is the
    // student's, and their teardown removes it.
    let pid = target.parse().unwrap_or(0);
    if let (Some(c), Some(v)) = (
        crate::engine::state::container_of(pid),
        victim(&dirs.upper, &dirs.lower),
    ) {
        let source = lower
            .iter()
            .find(|l| Path::new(l).join(v).is_file())
            .cloned()
            .unwrap_or_default();
        let mut note = format!("{upper}\n{source}\n{v}\n");
        // The directories copy-up will make, deepest first.
        let mut dir = Path::new(v).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if !Path::new(&upper).join(d).exists() {
                note.push_str(&format!("{}\n", d.display()));
            }
            dir = d.parent();
        }
        std::fs::write(
            crate::engine::state::container_dir(&c.name).join(TRACES),
            note,
        )?;
    }
    Ok(dirs)
}

/// The upper and lower directories of the overlay that is process `target`'s
/// `/`, as /proc/PID/mountinfo describes it.
pub fn layers_of(target: &str) -> Result<(String, Vec<String>)> {
    let text = std::fs::read_to_string(format!("/proc/{target}/mountinfo"))?;
    let root = crate::mountinfo::parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == "/")
        .context("the container has no / in its mount table")?;
    anyhow::ensure!(
        root.fs_type == "overlay",
        "the container's / is {}, not an overlay",
        root.fs_type
    );
    let option = |key: &str| {
        root.options
            .split(',')
            .find_map(|o| o.strip_prefix(key).map(String::from))
    };
    let upper = option("upperdir=").context("the overlay has no upperdir")?;
    let lower = option("lowerdir=")
        .context("the overlay has no lowerdir")?
        .split(':')
        .map(String::from)
        .collect();
    Ok((upper, lower))
}

enum Found {
    Missing,
    File,
    Whiteout,
    Other,
}

fn look(dir: &File, name: &str) -> Found {
    match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(_) => Found::Missing,
        Ok(st) => {
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFCHR && st.st_rdev == 0 {
                Found::Whiteout
            } else if kind == SFlag::S_IFREG {
                Found::File
            } else {
                Found::Other
            }
        }
    }
}

fn dirs(p: &Probe) -> Result<&ProbeDirs, Outcome> {
    if let Ok(Unseen(why)) = p.data::<Unseen>(LAYER.number) {
        return Err(Outcome::Skip(why.clone()));
    }
    p.data(LAYER.number)
}

fn in_image(d: &ProbeDirs, name: &str) -> bool {
    d.lower
        .iter()
        .any(|l| !matches!(look(l, name), Found::Missing))
}

fn write_lands_in_upper(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let name = format!(".lab-check-{}", std::process::id());
    if let Err(e) = std::fs::write(format!("/{name}"), "written inside the container\n") {
        return Outcome::Fail(format!("writing /{name} inside: {e}"));
    }
    let upper = matches!(look(&d.upper, &name), Found::File);
    let image = in_image(d, &name);
    let _ = std::fs::remove_file(format!("/{name}"));
    Outcome::from(
        upper && !image,
        format!(
            "/{name} written inside: {} upperdir, {} the image",
            if upper { "in" } else { "not in" },
            if image { "also in" } else { "not in" }
        ),
    )
}

/// Files most images have, and whose loss for a moment hurts nobody: the check
/// deletes one, looks, and writes it back.
const VICTIMS: &[&str] = &["etc/lab-rootfs", "etc/issue", "etc/os-release", "etc/group"];
// (Not /etc/hostname, /etc/hosts or /etc/resolv.conf: from step 5 each is the
// container's own file, mounted over the image's, and cannot be deleted.)

fn delete_leaves_whiteout(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let Some(victim) = victim(&d.upper, &d.lower).filter(|v| Path::new("/").join(v).is_file())
    else {
        return Outcome::Skip(format!(
            "none of /{} is in the image and untouched",
            VICTIMS.join(", /")
        ));
    };
    let path = Path::new("/").join(victim);
    let (content, mode) = match (std::fs::read(&path), std::fs::metadata(&path)) {
        (Ok(c), Ok(m)) => (c, m.permissions().mode()),
        _ => return Outcome::Fail(format!("cannot read {}", path.display())),
    };
    if let Err(e) = std::fs::remove_file(&path) {
        return Outcome::Fail(format!("rm {}: {e}", path.display()));
    }
    let gone = !path.exists();
    let whiteout = matches!(look(&d.upper, victim), Found::Whiteout);
    let kept = in_image(d, victim);
    // Put it back: the container should not miss it (upper now holds a copy).
    let restored = std::fs::write(&path, &content)
        .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)));
    Outcome::from(
        gone && whiteout && kept && restored.is_ok(),
        format!(
            "rm {}: {} inside, {} in upperdir, {} in the image{}",
            path.display(),
            if gone { "gone" } else { "still there" },
            if whiteout {
                "a whiteout (character device 0/0)"
            } else {
                "no whiteout"
            },
            if kept { "still" } else { "not" },
            if restored.is_ok() {
                "; then written back"
            } else {
                "; could not write it back"
            }
        ),
    )
}

fn second_container_sees_image_only(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let Some(second_root) = &d.second else {
        return Outcome::Skip(
            "without root lab may not mount a second overlay on the host to compare".into(),
        );
    };
    let name = format!(".lab-second-{}", std::process::id());
    if let Err(e) = std::fs::write(format!("/{name}"), "only in the first container\n") {
        return Outcome::Fail(format!("writing /{name} inside: {e}"));
    }
    let first = matches!(look(&d.upper, &name), Found::File);
    let second = !matches!(look(second_root, &name), Found::Missing);
    // And the second container does see the image itself.
    let image_seen = ["bin", "etc", "usr"]
        .iter()
        .any(|e| !matches!(look(second_root, e), Found::Missing));
    let _ = std::fs::remove_file(format!("/{name}"));
    Outcome::from(
        first && !second && image_seen,
        format!(
            "/{name} written in this container: {} its upperdir, {} a second overlay of the same image{}",
            if first { "in" } else { "not in" },
            if second { "visible in" } else { "invisible in" },
            if image_seen { "" } else { " (which does not even show the image)" }
        ),
    )
}
