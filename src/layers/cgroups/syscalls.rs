//! Layer 6, part 3: the commands done with system calls.
//!
//! A cgroup is a directory and its settings are files: mkdir, one write per
//! value, rmdir when the last process is gone. The parents lab makes are shared
//! by every container and removed by the last one out. Next: `checks.rs`.

use super::hierarchy::*;
use crate::engine::plan::{quote_path, Action, MakeDirs, RunContext};
use anyhow::{Context, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `mkdir -p DIR...`, recorded first in the container's state so that a killed run
/// can be cleaned up.
pub(super) struct MakeCgroups {
    pub(super) dirs: Vec<PathBuf>,
    pub(super) name: String,
}
/// `echo VALUE > FILE`
pub(super) struct WriteFile {
    pub(super) file: PathBuf,
    pub(super) value: String,
}
/// `echo $$ > DIR/cgroup.procs` for every DIR, by the shell that becomes the
/// container's first process (Phase::Join), before it makes its namespaces.
pub(super) struct Join(pub(super) Version, pub(super) Vec<PathBuf>);
/// `rmdir DIR...`
pub(super) struct RemoveCgroups(pub(super) Vec<PathBuf>);
/// `rmdir PARENT...`: the parents of the containers' cgroups, when empty.
pub(super) struct RemoveParents(pub(super) Vec<PathBuf>);

impl WriteFile {
    pub(super) fn new(file: PathBuf, value: impl ToString) -> WriteFile {
        WriteFile {
            file,
            value: value.to_string(),
        }
    }
}

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for MakeCgroups {
    fn shell(&self) -> String {
        MakeDirs(self.dirs.clone()).shell()
    }
    fn apply(&self, run: &RunContext) -> Result<()> {
        // Recorded before they are made: the container's cgroups, and the parents
        // this run creates (removed when no other container uses them). Under a
        // lock: a parent must not be removed between another run's check that it
        // exists and its mkdir of a cgroup inside.
        let _lock = crate::engine::state::lock("cgroups")?;
        let mut made = Vec::new();
        let mut parents = Vec::new();
        for d in &self.dirs {
            let mut p = d.parent();
            let mut missing = Vec::new();
            while let Some(dir) = p.filter(|dir| !dir.exists()) {
                missing.push(dir.display().to_string());
                p = dir.parent();
            }
            parents.extend(missing.iter().cloned());
            made.extend(missing);
            made.push(d.display().to_string());
        }
        // The parents go in a record all runs share: whichever container leaves
        // last removes them, not necessarily the one that made them.
        let shared = parents_record();
        let mut all: Vec<String> = std::fs::read_to_string(&shared)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        for p in parents {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        if !all.is_empty() {
            std::fs::write(&shared, all.join("\n") + "\n")
                .with_context(|| format!("recording {}", shared.display()))?;
        }
        let record = crate::dirs::run_dir()
            .join("containers")
            .join(&self.name)
            .join("cgroups");
        std::fs::write(&record, made.join("\n") + "\n")
            .with_context(|| format!("recording {}", record.display()))?;
        MakeDirs(self.dirs.clone()).apply(run)
    }
}

impl Action for WriteFile {
    fn shell(&self) -> String {
        let v = &self.value;
        let value = if v.contains(' ') {
            format!("\"{v}\"")
        } else {
            v.clone()
        };
        format!("echo {value} > {}", quote_path(&self.file))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .with_context(|| format!("opening {}", self.file.display()))?;
        // One write, as echo does: cgroup files take a whole value per write.
        f.write_all(self.value.as_bytes())
            .map_err(|e| explain_write_error(e, &self.file, &self.value))
    }
}

/// The error of a cgroup file write, with what usually causes it.
fn explain_write_error(e: std::io::Error, file: &Path, value: &str) -> anyhow::Error {
    let why = match e.raw_os_error() {
        Some(nix::libc::EBUSY) if file.ends_with("cgroup.subtree_control") => {
            " (the no-internal-process rule: a cgroup that holds processes cannot hand controllers to child cgroups. Put the container's cgroup under one without processes: --cgroup-parent /lab)"
        }
        Some(nix::libc::ENOENT) if file.ends_with("cgroup.subtree_control") => {
            " (a controller is not available in the parent: see its cgroup.controllers)"
        }
        Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => " (run with sudo; in a delegated cgroup tree, it must be delegated to you)",
        Some(nix::libc::EINVAL) => " (the value is not one this file takes)",
        _ => "",
    };
    anyhow::anyhow!("writing {value} to {}: {e}{why}", file.display())
}

impl Action for Join {
    fn shell(&self) -> String {
        let lines: Vec<String> = self
            .1
            .iter()
            .map(|d| format!("echo $$ > {}", quote_path(&d.join("cgroup.procs"))))
            .collect();
        lines.join("; ")
    }
    fn apply(&self, run: &RunContext) -> Result<()> {
        if self.done_at_birth(run) {
            return Ok(());
        }
        // The first process moves itself (see move_self_into).
        for d in &self.1 {
            move_self_into(d, self.0)?;
        }
        Ok(())
    }
    /// On v2, one cgroup: lab's container's first process is born in it.
    fn born_in(&self) -> Option<&Path> {
        match (self.0, self.1.as_slice()) {
            (Version::V2, [dir]) => Some(dir),
            _ => None,
        }
    }
}

/// Move the calling process, of one thread (lab and its children are), into
/// the cgroup `dir`: what `echo $$ > DIR/cgroup.procs` does.
fn move_self_into(dir: &Path, version: Version) -> Result<()> {
    let (file, value) = match version {
        // On v1, 0 in `tasks` moves the thread that writes it: for a process
        // of one thread, the same move as its PID in cgroup.procs, without the
        // machine-wide lock (it waits for an RCU grace period, about 10 ms
        // here) that moving a whole process takes. v2 has no such shortcut.
        Version::V1 => ("tasks", "0".to_string()),
        // $$: our own PID as our pid namespace numbers it (1 for a container's
        // first process); the kernel reads it in the writer's namespace, as it
        // does for `echo $$`.
        Version::V2 => ("cgroup.procs", std::process::id().to_string()),
    };
    WriteFile::new(dir.join(file), &value).apply(&RunContext::default())
}

impl Action for RemoveCgroups {
    fn shell(&self) -> String {
        let dirs: Vec<String> = self.0.iter().map(|d| quote_path(d)).collect();
        format!("rmdir {}", dirs.join(" "))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        for d in &self.0 {
            remove_cgroup(d)?;
        }
        Ok(())
    }
}

impl Action for RemoveParents {
    fn shell(&self) -> String {
        RemoveCgroups(self.0.clone()).shell()
    }
    fn script(&self) -> String {
        // While another container is in it, rmdir refuses: that is fine.
        format!("{} 2>/dev/null || true", self.shell())
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab removes only the parents it made (a delegated or pre-existing one
        // is not its own), under its lock, as every run does when it leaves.
        remove_unused_parents()
    }
}

/// rmdir a cgroup once its last process is gone (the kernel may take a moment
/// after the processes were reaped).
/// Where the cgroup parents lab made are listed, for every run.
fn parents_record() -> PathBuf {
    crate::dirs::run_dir().join("cgroup-parents")
}

/// Remove the cgroup parents lab made that no container uses any more (rmdir
/// fails on a cgroup that still has children), deepest first, and forget them.
pub fn remove_unused_parents() -> Result<()> {
    let record = parents_record();
    if !record.exists() {
        return Ok(());
    }
    let _lock = crate::engine::state::lock("cgroups")?;
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    let mut dirs: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    let kept: Vec<&str> = dirs
        .into_iter()
        .filter(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        })
        .collect();
    if kept.is_empty() {
        std::fs::remove_file(&record)?;
    } else {
        std::fs::write(&record, kept.join("\n") + "\n")?;
    }
    Ok(())
}

pub fn remove_cgroup(dir: &Path) -> Result<()> {
    for attempt in 0..200 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && attempt < 199 => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("rmdir {} (processes still inside?)", dir.display()))
            }
        }
    }
    Ok(())
}

/// `echo $$ > DIR/cgroup.procs` for the cgroups of a running container: the
/// calling process joins them (the probe, `lab exec`). On a hybrid machine the
/// list may hold both versions.
pub(super) struct JoinCgroupsOf(pub(super) Vec<(Version, PathBuf)>);

impl Action for JoinCgroupsOf {
    fn shell(&self) -> String {
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|(_, dir)| format!("echo $$ > {}", quote_path(&dir.join("cgroup.procs"))))
            .collect();
        lines.join(" && ")
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        for (version, dir) in &self.0 {
            move_self_into(dir, *version).context("joining the container's cgroups")?;
        }
        Ok(())
    }
    /// Its v2 cgroup: a process that joins can be born there instead
    /// (sys::fork_into); asked again after the fork, this list no longer holds it.
    fn born_in(&self) -> Option<&Path> {
        self.0
            .iter()
            .find(|(version, _)| *version == Version::V2)
            .map(|(_, dir)| dir.as_path())
    }
}

/// rmdir the cgroups a run recorded in its state directory, deepest first: all
/// of them once its processes are gone (`wait`: give the kernel a moment), or
/// only those that are empty (a parent another container uses stays).
pub(super) fn remove_recorded(state: &Path, wait: bool) {
    let text = std::fs::read_to_string(state.join("cgroups")).unwrap_or_default();
    let mut dirs: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    {
        // (The lock: see MakeCgroups.)
        let _lock = crate::engine::state::lock("cgroups");
        for d in dirs {
            let _ = if wait {
                remove_cgroup(Path::new(d))
            } else {
                std::fs::remove_dir(d).map_err(Into::into)
            };
        }
    }
    let _ = remove_unused_parents();
}

/// The cgroups of process `target` that the calling process is not in, with
/// their versions.
pub fn cgroups_to_join(target: &str) -> Result<Vec<(Version, PathBuf)>> {
    let text = std::fs::read_to_string(format!("/proc/{target}/cgroup"))?;
    let mounts =
        crate::mountinfo::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?);
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let key = controllers.split(',').next().unwrap_or("");
        if cgroup_of("self", key).as_deref() == Some(path) {
            continue;
        }
        // The v2 line has no controllers: its hierarchy is the cgroup2 mount.
        let version = match controllers.is_empty() {
            true => Version::V2,
            false => Version::V1,
        };
        let mount = mounts.iter().find(|m| match version {
            Version::V2 => m.fs_type == "cgroup2",
            Version::V1 => m.fs_type == "cgroup" && m.options.split(',').any(|o| o == key),
        });
        if let Some(m) = mount {
            dirs.push((
                version,
                Path::new(&m.mount_point).join(path.trim_start_matches('/')),
            ));
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::Action;

    /// On v2 the container's first process is born in its one cgroup; on v1,
    /// with a cgroup per controller, the host moves it.
    #[test]
    fn only_v2_joins_are_done_at_birth() {
        let v2 = vec![PathBuf::from("/sys/fs/cgroup/lab/c1")];
        let v1 = vec![
            PathBuf::from("/sys/fs/cgroup/memory/lab/c1"),
            PathBuf::from("/sys/fs/cgroup/pids/lab/c1"),
        ];
        let born = |version, dirs: &Vec<PathBuf>| {
            Join(version, dirs.clone()).born_in().map(Path::to_path_buf)
        };
        assert_eq!(born(Version::V2, &v2), Some(v2[0].clone()));
        assert_eq!(born(Version::V1, &v1), None);
        // What a shell types stays the move through cgroup.procs.
        assert_eq!(
            Join(Version::V2, v2.clone()).shell(),
            "echo $$ > /sys/fs/cgroup/lab/c1/cgroup.procs"
        );
    }
}
