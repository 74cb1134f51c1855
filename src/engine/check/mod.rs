//! Checks: proof, from the kernel, that a layer did what it says.
//!
//! A check never looks at what lab printed. It runs in one of four places:
//! - `Inside`: in a probe process that joins the container the way `nsenter` does
//!   (setns into its namespaces, chroot into its root), so it sees what the
//!   container sees. The same probe works on a container made by `lab step` and on
//!   one built by hand or by `lab script` (`lab check N --pid PID`).
//! - `Confined`: in a probe that has joined the container and then taken on the
//!   restrictions of its processes (from step 8: their capabilities,
//!   no_new_privs and seccomp filters), so it can do exactly what they can. An
//!   `Escape` (layers/escapes.rs) runs there too: an attempt to reach the host
//!   that should work until the step that closes it, and fail from then on.
//! - `Host`: in lab, on the host, while the container runs.
//! - `AfterExit`: in lab, after the container is gone (is the host as it was?).
//!
//! This file: what a check is, and running a step's checks. `host.rs`: what the
//! checks know of the host (its facts, the fixtures they look for from inside,
//! the host before and after, the process a student names). `probe.rs`: the
//! probe that joins the container, as `nsenter` does.

mod host;
mod probe;
mod whose;

use host::Fixtures;
pub use host::{
    count_processes, graded, host_hostname, ns_inode, pids_in, read_superblock,
    remove_left_fixtures, Before, HostFacts,
};
use probe::run_inside;
pub use probe::{enter, join_first, join_last, namespaces_to_enter, start_inside};
pub use whose::{find_root, maker_of, Maker};

use crate::engine::layer::Gathered;
use anyhow::Result;
use nix::unistd::Pid;
use std::any::Any;
use std::fs::File;
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
    Confined(fn(&Probe) -> Outcome),
    Escape(Escape),
    Host(fn(&Probe) -> Outcome),
    AfterExit(fn(&Before) -> Outcome),
}

/// A way out of the container that works until the step whose layer closes it.
/// One check: at earlier steps it passes when the escape works (what the step
/// does not protect against), from `closed_at` on when it fails. The check's
/// `hint` is for an escape that still works from `closed_at`.
#[derive(Clone, Copy)]
pub struct Escape {
    pub closed_at: u8,
    pub attempt: fn(&Probe) -> Attempt,
    /// For an escape that failed before `closed_at`, where it should work.
    pub hint_open: &'static str,
}

/// What an escape attempt found.
pub enum Attempt {
    /// It reached the host: what it saw there.
    Reached(String),
    /// It was stopped: by what (the errno, and the layer that made it so).
    Stopped(String),
    /// Nothing to try here, and why.
    Untried(String),
    /// Stopped before the step that closes it everywhere, by what this machine
    /// adds (step 6 on a cgroup v2 mounted with nsdelegate): what stopped it.
    ClosedEarly(String),
}

impl Escape {
    /// The outcome at `step` of what the attempt found.
    pub fn outcome(&self, step: u8, attempt: Attempt) -> Outcome {
        let open = step < self.closed_at;
        let closer = self.closed_at;
        match (attempt, open) {
            (Attempt::Reached(d), true) => Outcome::Pass(format!(
                "it works at step {step}, as expected (step {closer} closes it): {d}"
            )),
            (Attempt::Stopped(d), true) => Outcome::Fail(format!(
                "expected to work until step {closer}, but it was stopped: {d}"
            )),
            (Attempt::Stopped(d), false) => {
                Outcome::Pass(format!("closed since step {closer}: {d}"))
            }
            (Attempt::Reached(d), false) => Outcome::Fail(format!(
                "still works at step {step}, though step {closer} should close it: {d}"
            )),
            (Attempt::ClosedEarly(d), true) => Outcome::Pass(format!(
                "closed already here, before step {closer} closes it everywhere: {d}"
            )),
            (Attempt::ClosedEarly(d), false) => {
                Outcome::Pass(format!("closed since step {closer}: {d}"))
            }
            (Attempt::Untried(d), _) => Outcome::Skip(d),
        }
    }
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
    /// The step whose checks run (the container may be of another step).
    pub step: u8,
    /// A process of the container, as the host numbers it.
    pub target: Pid,
    /// The container's name, when lab knows it (its hostname from step 4).
    pub name: Option<String>,
    /// Who made it: lab, the lessons' recipe by hand, or another runtime, whose
    /// container is then graded on what it has, never on lab's recipe.
    pub maker: Maker,
    /// Device and inode of the directory that should be the container's `/` (None:
    /// it does not exist on the host).
    pub root: Option<(u64, u64)>,
    pub root_path: PathBuf,
    /// A file that exists on the host, outside the root filesystem.
    pub marker: PathBuf,
    /// What the checks compare with on the host: its root disk, its namespaces.
    pub host: HostFacts,
    /// That directory, opened before joining: what a bind mount (a volume) brings
    /// into a container, a way to a host file (`root-only`, the host root's, mode
    /// 0600).
    pub host_dir: File,
    /// A directory of lab's run directory for what the checks make on the host
    /// (removed after them; `lab clean` removes what a killed run left there).
    pub fixtures: PathBuf,
    /// What each layer's checks need, gathered on the host (layers::Hooks::probe_data).
    data: Vec<(u8, Gathered)>,
}

/// A file of the fixtures that only the host's root may read and write.
pub const ROOT_ONLY: &str = "root-only";

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

/// Every check of layers 1..=step.
pub fn checks_for(step: u8) -> Vec<Check> {
    let active = crate::engine::curriculum::active(step);
    crate::engine::curriculum::up_to(step)
        .into_iter()
        .flat_map(|l| match active.iter().any(|a| a.number == l.number) {
            true => (l.checks)(step),
            // Without root, what a left-out layer still does in its namespace.
            false => l.hooks.without_root_checks(step),
        })
        .collect()
}

/// Run the `Inside` and `Host` checks of `step` against the container that `target`
/// belongs to. `AfterExit` checks are left for [`after_exit`].
pub fn run(
    step: u8,
    target: Pid,
    rootfs: &Path,
    name: Option<String>,
    maker: Maker,
) -> Result<Vec<Report>> {
    let checks: Vec<Check> = checks_for(step)
        .into_iter()
        .filter(|c| !matches!(c.kind, Kind::AfterExit(_)))
        .collect();
    run_these(checks, step, target, rootfs, name, maker)
}

/// The process to grade runs, or the error that says so.
pub fn ensure_running(target: Pid) -> Result<()> {
    if crate::engine::state::ProcessId::of(target.as_raw()).is_none() {
        anyhow::bail!(
            "process {target} not found: is the container still running? (lab ps lists lab's)"
        );
    }
    Ok(())
}

/// Run these checks (none of them `AfterExit`) as if at `step`: what `lab
/// inspect` runs, the escapes and a table of its own, goes through here too.
pub fn run_these(
    checks: Vec<Check>,
    step: u8,
    target: Pid,
    rootfs: &Path,
    name: Option<String>,
    maker: Maker,
) -> Result<Vec<Report>> {
    // Before any fixture is made: a wrong PID leaves nothing behind.
    ensure_running(target)?;
    let started = std::time::Instant::now();
    let fixtures = Fixtures::make(step, target, rootfs, name, maker)?;
    let probe = &fixtures.probe;
    let made = started.elapsed();
    // How long each check took (LAB_TIMINGS=1 prints it).
    let mut took = vec![std::time::Duration::ZERO; checks.len()];
    let mut outcomes: Vec<Option<Outcome>> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| match c.kind {
            Kind::Host(f) => {
                let start = std::time::Instant::now();
                let outcome = f(probe);
                took[i] = start.elapsed();
                Some(outcome)
            }
            _ => None,
        })
        .collect();
    let inside: Vec<usize> = (0..checks.len())
        .filter(|i| outcomes[*i].is_none())
        .collect();
    if !inside.is_empty() {
        for answer in run_inside(&checks, &inside, probe)? {
            let i = answer.index;
            anyhow::ensure!(
                i < outcomes.len(),
                "the probe answered for check {i}, of {}",
                outcomes.len()
            );
            took[i] = answer.took;
            outcomes[i] = Some(answer.outcome);
        }
    }
    if std::env::var_os("LAB_TIMINGS").is_some() {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        errln!("lab timing: {:7.3} ms  the checks' fixtures", ms(made));
        for (c, t) in checks.iter().zip(&took) {
            errln!(
                "lab timing: {:7.3} ms  check: layer {}: {}",
                ms(*t),
                c.layer,
                c.name
            );
        }
        errln!(
            "lab timing: {:7.3} ms  every check, in all",
            ms(started.elapsed())
        );
    }
    let other = probe.maker.is_other();
    Ok(checks
        .into_iter()
        .zip(outcomes)
        .map(|(c, o)| Report {
            layer: c.layer,
            name: c.name,
            hint: match c.kind {
                // Another runtime's container: what its settings are, in its
                // terms (for an escape, those of the layer that closes it).
                Kind::Escape(e) if other => {
                    crate::engine::curriculum::layer(e.closed_at).map_or("", |l| l.elsewhere)
                }
                _ if other => crate::engine::curriculum::layer(c.layer).map_or("", |l| l.elsewhere),
                // An escape that failed where it should still work.
                Kind::Escape(e) if step < e.closed_at => e.hint_open,
                _ => c.hint,
            },
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
