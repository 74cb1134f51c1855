//! Checks: proof, from the kernel, that a layer did what it says.
//!
//! A check never looks at what lab printed. It runs in one of three places:
//! - `Inside`: in a probe process that joins the container the way `nsenter` does
//!   (setns into its namespaces, chroot into its root), so it sees what the
//!   container sees. The same probe works on a container made by `lab step` and on
//!   one built by hand or by `lab script` (`lab check N --pid PID`).
//! - `Host`: in lab, on the host, while the container runs.
//! - `AfterExit`: in lab, after the container is gone (is the host as it was?).

use crate::layers::{Gathered, Layer};
use crate::sys;
use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::any::Any;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Check {
    pub layer: u8,
    /// What is being proved, as a short sentence.
    pub name: &'static str,
    /// For a student whose check failed: the usual cause and how to look.
    pub hint: &'static str,
    pub kind: Kind,
}

pub enum Kind {
    Inside(fn(&Probe) -> Outcome),
    Host(fn(&Probe) -> Outcome),
    AfterExit(fn(&Before) -> Outcome),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl Outcome {
    /// Pass when `ok`, else fail, with the same detail either way.
    pub fn from(ok: bool, detail: impl Into<String>) -> Outcome {
        if ok {
            Outcome::Pass(detail.into())
        } else {
            Outcome::Fail(detail.into())
        }
    }
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass(_))
    }
    /// A skipped check (nothing to prove here, e.g. no port published) is no failure.
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass(d) | Outcome::Fail(d) | Outcome::Skip(d) => d,
        }
    }
}

/// A check and how it came out.
pub struct Report {
    pub layer: u8,
    pub name: &'static str,
    pub hint: &'static str,
    pub outcome: Outcome,
}

/// What the checks know about the container and the host. Made on the host before
/// the probe joins the container; plain data, so it survives the fork.
pub struct Probe {
    /// A process of the container, as the host numbers it.
    pub target: Pid,
    /// The container's name, when lab knows it (its hostname from step 4).
    pub name: Option<String>,
    /// Device and inode of the directory that should be the container's `/` (None:
    /// it does not exist on the host).
    pub root: Option<(u64, u64)>,
    pub root_path: PathBuf,
    /// A file that exists on the host, outside the root filesystem.
    pub marker: PathBuf,
    /// A directory of lab's run directory for what the checks make on the host
    /// (removed after them; `lab clean` removes what a killed run left there).
    pub fixtures: PathBuf,
    /// What each layer's checks need, gathered on the host (layers::Hooks::probe_data).
    data: Vec<(u8, Gathered)>,
}

impl Probe {
    /// The data layer `layer` gathered for its checks, or the failed check that
    /// says why it could not.
    pub fn data<T: Any>(&self, layer: u8) -> Result<&T, Outcome> {
        match self.data.iter().find(|(l, _)| *l == layer) {
            Some((_, Ok(d))) => d
                .downcast_ref()
                .ok_or_else(|| Outcome::Fail(format!("layer {layer} gathered something else"))),
            Some((_, Err(e))) => Err(Outcome::Fail(e.clone())),
            None => Err(Outcome::Fail(format!(
                "layer {layer} gathered nothing for its checks"
            ))),
        }
    }
}

/// The host as it was before the container started, and after it is gone, as
/// each layer that changes it sees it (layers::Hooks::host_before).
pub struct Before {
    /// The container's name.
    pub name: String,
    layers: Vec<&'static Layer>,
    /// The other containers of lab running at the start and at the end: what
    /// they made on the host may come and go meanwhile, and is not this one's.
    pub others_before: Vec<String>,
    pub others_after: Vec<String>,
    states: Vec<HostState>,
}

/// What one layer recorded of the host: before, and (once [`Before::now`] ran) after.
struct HostState {
    layer: u8,
    before: Box<dyn Any>,
    after: Option<Box<dyn Any>>,
}

impl Before {
    pub fn take(step: u8, name: &str) -> Before {
        let state = crate::state::container_dir(name);
        let layers = crate::layers::up_to(step);
        let states = layers
            .iter()
            .filter_map(|l| {
                Some(HostState {
                    layer: l.number,
                    before: l.hooks.host_before(&state)?,
                    after: None,
                })
            })
            .collect();
        Before {
            name: name.to_string(),
            layers,
            others_before: crate::state::live_names_but(name),
            others_after: vec![],
            states,
        }
    }
    /// Record the host as it is now, after the container is gone.
    pub fn now(mut self) -> Before {
        for s in &mut self.states {
            if let Some(layer) = self.layers.iter().find(|l| l.number == s.layer) {
                s.after = layer.hooks.host_after(s.before.as_ref());
            }
        }
        self.others_after = crate::state::live_names_but(&self.name);
        self
    }
    /// What layer `layer` recorded before and after, if it did.
    pub fn compare<T: Any>(&self, layer: u8) -> Option<(&T, &T)> {
        let s = self.states.iter().find(|s| s.layer == layer)?;
        Some((s.before.downcast_ref()?, s.after.as_ref()?.downcast_ref()?))
    }
    /// The other containers running at the start or at the end, by name.
    pub fn others(&self) -> Vec<String> {
        let mut all = self.others_before.clone();
        all.extend(self.others_after.iter().cloned());
        all.sort();
        all.dedup();
        all
    }
}

pub fn host_hostname() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The inode of `/proc/PID/ns/NAME`: two processes share a namespace exactly when
/// these are equal.
pub fn ns_inode(pid: &str, name: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{name}"))
        .ok()
        .map(|m| m.ino())
}

/// Everything the checks of `step` need from the host: the files and objects they
/// look for from inside. Removed again when dropped.
struct Fixtures {
    probe: Probe,
}

impl Fixtures {
    fn make(step: u8, target: Pid, rootfs: &Path, name: Option<String>) -> Result<Fixtures> {
        let dir = crate::state::run_dir().join(format!("check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, what is made is removed on every way out, errors included.
        let mut fixtures = Fixtures {
            probe: Probe {
                target,
                name,
                root: std::fs::metadata(rootfs).ok().map(|m| (m.dev(), m.ino())),
                root_path: rootfs.to_path_buf(),
                marker: dir.join("host-file"),
                fixtures: dir,
                data: vec![],
            },
        };
        crate::state::fault_point("the checks' fixtures")?;
        std::fs::write(
            &fixtures.probe.marker,
            "this file lives on the host, outside the container\n",
        )?;
        for layer in crate::layers::up_to(step) {
            if let Some(data) = layer.hooks.probe_data(&fixtures.probe)? {
                fixtures.probe.data.push((layer.number, data));
            }
        }
        Ok(fixtures)
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        // The layers' host objects first (they are removed as they are dropped),
        // then the directory.
        self.probe.data.clear();
        let _ = crate::state::remove_tree(&self.probe.fixtures);
    }
}

/// `lab clean`, or the next run: the checks' fixtures of a run that was killed.
pub fn remove_left_fixtures(dir: &Path) {
    for layer in crate::layers::all() {
        layer.hooks.remove_left_fixtures(dir);
    }
}

/// How many processes a `/proc` shows.
pub fn count_processes(proc: &Path) -> usize {
    pids_in(proc).len()
}

pub fn pids_in(proc: &Path) -> Vec<u32> {
    std::fs::read_dir(proc)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every check of layers 1..=step.
pub fn checks_for(step: u8) -> Vec<Check> {
    crate::layers::up_to(step)
        .iter()
        .flat_map(|l| (l.checks)(step))
        .collect()
}

/// Run the `Inside` and `Host` checks of `step` against the container that `target`
/// belongs to. `AfterExit` checks are left for [`after_exit`].
pub fn run(step: u8, target: Pid, rootfs: &Path, name: Option<String>) -> Result<Vec<Report>> {
    let checks: Vec<Check> = checks_for(step)
        .into_iter()
        .filter(|c| !matches!(c.kind, Kind::AfterExit(_)))
        .collect();
    // Before any fixture is made: a wrong PID leaves nothing behind.
    if crate::state::ProcessId::of(target.as_raw()).is_none() {
        anyhow::bail!(
            "process {target} not found: is the container still running? (lab ps lists lab's)"
        );
    }
    let fixtures = Fixtures::make(step, target, rootfs, name)?;
    let probe = &fixtures.probe;
    let mut outcomes: Vec<Option<Outcome>> = checks
        .iter()
        .map(|c| match c.kind {
            Kind::Host(f) => Some(f(probe)),
            _ => None,
        })
        .collect();
    let inside: Vec<usize> = (0..checks.len())
        .filter(|i| outcomes[*i].is_none())
        .collect();
    if !inside.is_empty() {
        let lines = run_inside(&checks, &inside, probe)?;
        for line in lines.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(i), Some(status), Some(detail)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            if i < outcomes.len() {
                outcomes[i] = Some(match status {
                    "pass" => Outcome::Pass(detail.into()),
                    "skip" => Outcome::Skip(detail.into()),
                    _ => Outcome::Fail(detail.into()),
                });
            }
        }
    }
    Ok(checks
        .into_iter()
        .zip(outcomes)
        .map(|(c, o)| Report {
            layer: c.layer,
            name: c.name,
            hint: c.hint,
            outcome: o.unwrap_or_else(|| {
                Outcome::Fail("the probe inside the container gave no answer".into())
            }),
        })
        .collect())
}

/// The checks that compare the host after the container is gone with before.
pub fn after_exit(step: u8, before: &Before) -> Vec<Report> {
    checks_for(step)
        .into_iter()
        .filter_map(|c| match c.kind {
            Kind::AfterExit(f) => Some(Report {
                layer: c.layer,
                name: c.name,
                hint: c.hint,
                outcome: f(before),
            }),
            _ => None,
        })
        .collect()
}

/// Fork a probe that joins the container, forks again so that it is inside the pid
/// namespace too, and runs the inside checks there. Answers come back over a pipe,
/// one line per check: `INDEX<TAB>pass|fail|skip<TAB>DETAIL`.
fn run_inside(checks: &[Check], which: &[usize], probe: &Probe) -> Result<String> {
    let (read_end, write_end) = nix::unistd::pipe().context("pipe")?;
    match sys::fork()? {
        ForkResult::Child => {
            drop(read_end);
            let code = match probe_main(checks, which, probe, write_end) {
                Ok(()) => 0,
                Err(e) => {
                    errln!("lab: the probe could not join the container: {e:#}");
                    1
                }
            };
            // Leave without running the parent's destructors (they belong to lab).
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut out = String::new();
            File::from(read_end).read_to_string(&mut out)?;
            let _ = waitpid(child, None);
            Ok(out)
        }
    }
}

fn probe_main(checks: &[Check], which: &[usize], probe: &Probe, out: OwnedFd) -> Result<()> {
    join(probe.target)?;
    // setns(CLONE_NEWPID) only applies to children: fork once more to be inside.
    match sys::fork()? {
        ForkResult::Child => {
            let mut out = File::from(out);
            for &i in which {
                let Kind::Inside(f) = checks[i].kind else {
                    continue;
                };
                let outcome = f(probe);
                let (status, detail) = match &outcome {
                    Outcome::Pass(d) => ("pass", d),
                    Outcome::Fail(d) => ("fail", d),
                    Outcome::Skip(d) => ("skip", d),
                };
                let detail = detail.replace(['\n', '\t'], " ");
                let _ = writeln!(out, "{i}\t{status}\t{detail}");
            }
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(out);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                other => anyhow::bail!("the probe ended with {other:?}"),
            }
        }
    }
}

/// Enter the cgroups, namespaces and root of process `target`, as `nsenter --all
/// --root` does (nsenter leaves the cgroups alone).
pub fn join(target: Pid) -> Result<()> {
    // What layers do first, while the host's files are still in view (its cgroups).
    for action in join_first(target, crate::layers::last_step())? {
        action.apply()?;
    }
    enter(target)
}

/// What the layers up to `step` do first when a process joins the container of
/// `target` (step 6: join its cgroups).
pub fn join_first(target: Pid, step: u8) -> Result<Vec<Box<dyn crate::plan::Action>>> {
    let mut all = Vec::new();
    for layer in crate::layers::up_to(step) {
        all.extend(layer.hooks.join_first(target)?);
    }
    Ok(all)
}

/// The namespaces of `target` this process does not share, with nsenter's flag
/// for each.
pub fn namespaces_to_enter(target: Pid) -> Vec<(&'static str, &'static str, CloneFlags)> {
    let t = target.to_string();
    [
        ("net", "-n", CloneFlags::CLONE_NEWNET),
        ("ipc", "-i", CloneFlags::CLONE_NEWIPC),
        ("uts", "-u", CloneFlags::CLONE_NEWUTS),
        ("pid", "-p", CloneFlags::CLONE_NEWPID),
        ("mnt", "-m", CloneFlags::CLONE_NEWNS),
    ]
    .into_iter()
    .filter(|(name, _, _)| ns_inode(&t, name) != ns_inode("self", name))
    .collect()
}

/// Enter the namespaces and the root of process `target`. Every namespace file is
/// opened before the first setns: inside the container's mount namespace, the
/// host's /proc may be out of reach. The pid namespace applies to the children
/// forked after this, not to the caller.
pub fn enter(target: Pid) -> Result<()> {
    let t = target.to_string();
    let root = File::open(format!("/proc/{t}/root"))
        .with_context(|| format!("process {t} not found (is the container still running?)"))?;
    let mut files = Vec::new();
    for (name, _, flag) in namespaces_to_enter(target) {
        let f = File::open(format!("/proc/{t}/ns/{name}"))
            .with_context(|| format!("opening /proc/{t}/ns/{name}"))?;
        files.push((name, flag, f));
    }
    for (name, flag, f) in &files {
        setns(f.as_fd(), *flag)
            .with_context(|| format!("setns into the {name} namespace of {t}"))?;
    }
    nix::unistd::fchdir(&root).context("fchdir to the container's root")?;
    nix::unistd::chroot(".").context("chroot to the container's root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}
