//! Removing what lab left on the host (part of state/, after mod.rs): what a
//! killed run left, found by its owner being gone, and `lab clean`.

use super::{containers_dir, read_id, ProcessId};
use crate::dirs::{home, remove_tree, run_dir};
use anyhow::Result;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};

/// Left by a lab that is gone. A directory without an owner file yet is being made
/// right now by another lab, unless it is older than a few seconds.
pub(super) fn is_stale(dir: &Path) -> bool {
    // A running lab holds a lock on its owner file (Claim): if it cannot be
    // taken, the container runs. Cheaper than reading the owner and its
    // /proc/PID/stat, and a start looks at every running container. Taken, the
    // lock says nothing (a lab of an older version held none): ask /proc.
    if let Ok(owner) = std::fs::File::open(dir.join("owner")) {
        if let Err((_, nix::errno::Errno::EWOULDBLOCK)) =
            nix::fcntl::Flock::lock(owner, nix::fcntl::FlockArg::LockSharedNonblock)
        {
            return false;
        }
    }
    match read_id(dir, "owner") {
        Some(owner) => !owner.alive(),
        None => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().map(|e| e.as_secs() > 5).unwrap_or(false))
            .unwrap_or(true),
    }
}

/// What runs that were killed (kill -9, a crash) left: their containers and the
/// checks' fixtures. Removed, and said, at the start of the next run. Returns
/// what it said, and the containers it found running.
pub(super) fn remove_stale() -> Result<(Vec<String>, Vec<PathBuf>)> {
    let mut said = Vec::new();
    let mut running = Vec::new();
    for e in std::fs::read_dir(containers_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = e.path();
        // Each is checked again under its own name by take() too; here only the
        // ones whose lab is gone.
        if !is_stale(&dir) {
            running.push(dir);
            continue;
        }
        if read_id(&dir, "owner").is_some() {
            // Two runs starting at once may both try: what counts is that it is gone.
            let result = remove_container(&dir);
            if dir.exists() {
                result?;
            }
            said.push(format!(
                "removed container {} that a killed run left behind (its processes, mounts, links, rules and cgroups)",
                e.file_name().to_string_lossy()
            ));
        }
    }
    for e in std::fs::read_dir(run_dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("check-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if ProcessId::of(pid).is_none() {
            crate::engine::check::remove_left_fixtures(&e.path());
            let result = remove_tree(&e.path());
            if e.path().exists() {
                result?;
            }
            said.push(format!(
                "removed the checks' fixtures a killed run left in {}",
                e.path().display()
            ));
        }
    }
    // Half-made copies (a shifted copy of step 9: NAME.new-PID) of killed runs.
    for dir in half_made(&crate::dirs::shifted()) {
        if remove_tree(&dir).is_ok() {
            said.push(format!(
                "removed {}, which a killed run left half made",
                dir.display()
            ));
        }
    }
    if !said.is_empty() {
        said.extend(crate::engine::curriculum::remove_shared_if_unused()?);
    }
    Ok((said, running))
}

/// The `NAME.new-PID` directories one level below `dir`'s subdirectories whose
/// PID is gone.
fn half_made(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for range in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(range.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .rsplit_once(".new-")
                .and_then(|(_, p)| p.parse::<i32>().ok());
            if pid.is_some_and(|p| ProcessId::of(p).is_none()) {
                found.push(e.path());
            }
        }
    }
    found
}

/// Stop a container's processes if any are left, and remove its directories (with
/// its writable layer, when the run that made it was killed).
pub(super) fn remove_container(dir: &Path) -> Result<()> {
    if let Some(pid) = read_id(dir, "pid").filter(|p| p.alive()) {
        // Killing PID 1 of a pid namespace kills every process in it.
        let _ = kill(Pid::from_raw(pid.pid), Signal::SIGKILL);
    }
    if let Some(name) = dir.file_name() {
        remove_tree(&home().join("containers").join(name))?;
    }
    // What each layer made for it on the host (step 5: its published ports'
    // rules; step 6: its cgroups, once its processes are gone).
    for layer in crate::engine::curriculum::all() {
        layer.hooks.forget(dir);
    }
    remove_tree(dir)
}

/// `lab clean`: stop every container lab started, then remove all of lab's state.
/// Returns what was removed, for the student to read.
/// `lab clean`: stop lab's containers and remove what lab left on the host (its
/// state, the shared objects, what killed runs left half-made, what hand-typed
/// runs left with lab's names); with `all`, also what lab keeps on purpose (the
/// default root filesystem, images and their layers, shifted copies, --keep
/// layers). Returns what it did and what it kept, one line each.
pub fn clean(all: bool) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if let Ok(entries) = std::fs::read_dir(containers_dir()) {
        for e in entries.flatten() {
            let dir = e.path();
            let running = read_id(&dir, "pid").filter(|p| p.alive());
            remove_container(&dir)?;
            done.push(match running {
                Some(p) => format!(
                    "stopped container {} (host PID {})",
                    e.file_name().to_string_lossy(),
                    p.pid
                ),
                None => format!(
                    "removed state of container {}",
                    e.file_name().to_string_lossy()
                ),
            });
        }
    }
    done.extend(crate::engine::curriculum::remove_shared_if_unused()?);
    for layer in crate::engine::curriculum::all() {
        done.extend(layer.hooks.tidy());
    }
    // Only what lab makes in its two directories, whatever LAB_HOME and LAB_RUN
    // point at; then the directories themselves if nothing else is in them.
    let (run, home) = (run_dir(), home());
    let mut ours = vec![run.join("containers")];
    for layer in crate::engine::curriculum::all() {
        ours.extend(layer.hooks.run_files().iter().map(|f| run.join(f)));
    }
    // What lab keeps on purpose: built or imported once, or kept with --keep.
    let kept = ["rootfs", "images", "layers", "shifted", "containers"].map(|d| home.join(d));
    if all {
        ours.extend(kept.iter().cloned());
    } else {
        done.extend(kept_on_purpose(&home));
    }
    let mut left = Vec::new();
    for dir in [&run, &home, &crate::dirs::shifted()] {
        left.extend(std::fs::read_dir(dir).into_iter().flatten().flatten());
    }
    for name in left {
        let n = name.file_name().to_string_lossy().into_owned();
        // Left by interrupted runs: probe fixtures, half-built root filesystems,
        // half-made shifted copies.
        if n.starts_with("check-")
            || n.starts_with(".rootfs-")
            || n.contains(".new-")
            || n.contains(".old-")
        {
            crate::engine::check::remove_left_fixtures(&name.path());
            ours.push(name.path());
        }
    }
    for dir in ours {
        // (Gone already is fine: the process removing lab0 after a run removes
        // its note when done, and may do so while lab clean runs.)
        if dir.symlink_metadata().is_ok() {
            remove_tree(&dir)?;
            done.push(format!("removed {}", dir.display()));
        }
    }
    // The directories of containers typed by hand are the student's: empty,
    // they go; else lab says what it keeps and why.
    for hand in [run.join("hand"), home.join("hand")] {
        if std::fs::remove_dir(&hand).is_ok() {
            done.push(format!("removed {} (empty)", hand.display()));
        } else if let Ok(entries) = std::fs::read_dir(&hand) {
            let names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            done.push(format!(
                "kept {} ({}): containers typed by hand, which lab never removes; their teardown lines do",
                hand.display(),
                names.join(", ")
            ));
        }
    }
    for dir in [run, home] {
        if std::fs::remove_dir(&dir).is_ok() {
            done.push(format!("removed {}", dir.display()));
        }
    }
    Ok(done)
}

/// What `lab clean` keeps unless `--all`, one line each (nothing when none is there).
fn kept_on_purpose(home: &Path) -> Vec<String> {
    let count = |d: &str| {
        std::fs::read_dir(home.join(d))
            .map(|e| e.flatten().count())
            .unwrap_or(0)
    };
    let mut kept = Vec::new();
    if home.join("rootfs/bin").is_dir() {
        kept.push(format!(
            "the default root filesystem ({})",
            home.join("rootfs").display()
        ));
    }
    match count("images") {
        0 => {}
        n => kept.push(format!("{n} imported image(s) (lab image ls)")),
    }
    match count("shifted") {
        0 => {}
        n => kept.push(format!(
            "{n} shifted copy range(s) of step 9 ({})",
            crate::dirs::shifted().display()
        )),
    }
    match count("containers") {
        0 => {}
        n => kept.push(format!(
            "{n} writable layer(s) left by --keep ({})",
            home.join("containers").display()
        )),
    }
    kept.into_iter()
        .map(|k| format!("kept {k}: lab clean --all removes it"))
        .collect()
}
