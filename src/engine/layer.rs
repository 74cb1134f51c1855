//! What a layer is, to the engine: its description ([`Layer`]), what it does at
//! fixed moments of a run ([`Hooks`]), and a step of a curriculum ([`Step`]).
//! The layers themselves are in `src/layers/`, above the engine: the engine
//! runs whatever curriculum it is handed (curriculum.rs) and names none of them.

use super::check::{Check, Kind, Probe};
use super::plan::{Action, Command, Phase, Spec};
use super::state::Claim;
use crate::engine::namespace::Namespace;
use anyhow::Result;
use nix::unistd::Pid;
use std::any::Any;
use std::path::{Path, PathBuf};

/// One isolation layer, described as data.
pub struct Layer {
    pub number: u8,
    pub title: &'static str,
    /// One sentence: what this layer gives the container.
    pub idea: &'static str,
    /// What to try in the container's shell to see this layer (printed when
    /// `lab step N` opens a shell at this step).
    pub look: &'static str,
    /// For a container lab did not make (Docker's, Podman's, ...), the hint of
    /// every check of this layer: which of its runtime's settings give or take
    /// this layer, and where to look. lab's own hints speak of its recipe.
    pub elsewhere: &'static str,
    /// The namespaces this layer adds to the `unshare`/`clone` of the step.
    pub namespaces: &'static [Namespace],
    /// Its commands at a given step (a later layer may take over an earlier one's job),
    /// or what this machine lacks to make them: the error's outermost context
    /// says what could not be done (printed by hand in place of the commands).
    pub commands: fn(&Spec) -> Result<Vec<Command>>,
    /// A remark shown after the layer's commands at a step (or instead of them).
    pub note: fn(u8) -> Option<&'static str>,
    /// Its checks at a given step.
    pub checks: fn(u8) -> Vec<Check>,
    /// What else the layer does at fixed moments of a run, around its commands
    /// and checks (most layers need none of it: [`NoHooks`]).
    pub hooks: &'static dyn Hooks,
}

/// A layer's commands and checks carry its number (where `lab explain` prints
/// them, whose data a check reads): built here, from the layer itself, the
/// number is written once, in its `LAYER`.
impl Layer {
    /// A command of this layer, run at `phase`.
    pub fn at(
        &self,
        phase: Phase,
        why: impl Into<String>,
        action: impl Action + 'static,
    ) -> Command {
        Command::at(phase, self.number, why, action)
    }

    /// A command of this layer, run inside the container before the command starts.
    pub fn inside(&self, why: impl Into<String>, action: impl Action + 'static) -> Command {
        self.at(Phase::Inside, why, action)
    }

    /// A check of this layer: `name` says what it proves, `hint` what to do
    /// when it fails.
    pub fn check(&self, name: &'static str, hint: &'static str, kind: Kind) -> Check {
        Check {
            layer: self.number,
            name,
            hint,
            kind,
        }
    }
}

/// What the engine asks of a layer besides its commands and checks. The engine
/// (container.rs, check/, state/) calls these at fixed moments of every run
/// and never asks which layer it talks to: adding a layer adds a file in src/layers/
/// and a line to its table of steps, nothing in the engine. Every method does nothing unless a layer says
/// otherwise.
pub trait Hooks: Sync {
    /// Before anything is made: what this layer needs from the kernel and the
    /// host, looked up without changing anything (one clear error if missing).
    fn preflight(&self, _spec: &Spec) -> Result<()> {
        Ok(())
    }
    /// Before the plan is made: claim what this container takes from what all
    /// containers share (step 5: its address), written into its state
    /// directory (`claim.dir`) so that a killed run can be cleaned up.
    fn reserve(&self, _spec: &mut Spec, _claim: &Claim) -> Result<()> {
        Ok(())
    }
    /// The directory that becomes the container's `/`, when this layer decides it
    /// (step 7: the overlay's merged view). The highest layer that answers wins.
    fn new_root(&self, _spec: &Spec) -> Option<PathBuf> {
        None
    }
    /// Before the checks join the container: what this layer's checks need from
    /// the host, gathered while lab still sees it (a directory opened, a host
    /// object made). Checks get it back with [`Probe::data`]. Host objects it
    /// makes are removed when the value is dropped; their names go into
    /// `probe.fixtures` first, for [`Hooks::remove_left_fixtures`]. An error stops
    /// the checks (lab could not make what they need); a [`Gathered`] error only
    /// fails this layer's checks, with its reason.
    fn probe_data(&self, _probe: &Probe) -> Result<Option<Gathered>> {
        Ok(None)
    }
    /// A killed run left the checks' fixtures in `dir`: remove this layer's.
    fn remove_left_fixtures(&self, _dir: &Path) {}
    /// Before the container (when its checks run): the part of the host that this
    /// layer changes, to compare after exit. `state` is the container's state
    /// directory.
    fn host_before(&self, _state: &Path) -> Option<Box<dyn Any>> {
        None
    }
    /// After exit: the same part of the host again (`before` is what
    /// [`Hooks::host_before`] returned).
    fn host_after(&self, _before: &dyn Any) -> Option<Box<dyn Any>> {
        None
    }
    /// Joining a running container (the probe, `lab exec`): what to do first,
    /// while the host's files are still in view (step 6: join its cgroups).
    fn join_first(&self, _target: Pid) -> Result<Option<Box<dyn Action>>> {
        Ok(None)
    }
    /// Joining a running container (the probe's confined checks, `lab exec`):
    /// the restrictions its processes live under, read on the host before
    /// joining, to take on last (step 8: their capabilities, no_new_privs and
    /// seccomp filters).
    fn join_last(&self, _target: Pid) -> Result<Option<Box<dyn Action>>> {
        Ok(None)
    }
    /// The run that made the container in `state` was killed (`kill -9`), or
    /// `lab clean` stops it: remove what this layer made for it on the host.
    fn forget(&self, _state: &Path) {}
    /// The container in `state` is gone: release what this layer recorded
    /// there (step 6: the cgroup parents its run made, when empty).
    fn release(&self, _state: &Path) {}
    /// The container of `spec` is gone: what this layer left on the host on
    /// purpose, where it is and how it goes, one line for the summary (step
    /// 7: the writable layer kept with --keep).
    fn kept(&self, _spec: &Spec) -> Option<String> {
        None
    }
    /// What containers share, taken down when none uses it any more (step 5:
    /// lab0 and the rules). Returns what was removed, for the student.
    fn remove_shared_if_unused(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// `lab clean`: what hand-typed runs left on the host under lab's names
    /// (step 6: an empty `lab` cgroup parent), removed or reported, one line each.
    fn tidy(&self) -> Vec<String> {
        vec![]
    }
    /// The files this layer keeps in lab's run directory (`lab clean` removes them).
    fn run_files(&self) -> &'static [&'static str] {
        &[]
    }
    /// Without root (step 9, rootless): why this layer cannot be had, if it
    /// cannot. Its namespaces are still made; its commands and checks are left out.
    fn without_root(&self) -> Option<&'static str> {
        None
    }
    /// Without root, when this layer is left out: the lines a user can still
    /// have in the namespace it makes (step 5: bring its lo up), and their checks.
    fn without_root_commands(&self, _spec: &Spec) -> Vec<Command> {
        vec![]
    }
    fn without_root_checks(&self, _step: u8) -> Vec<Check> {
        vec![]
    }
}

/// What a layer gathered for its checks, or why it could not.
pub type Gathered = std::result::Result<Box<dyn Any>, String>;

/// A layer's data for its checks, or the reason its checks fail.
pub fn gathered<T: Any>(data: Result<T>) -> Result<Option<Gathered>> {
    Ok(Some(
        data.map(|d| Box::new(d) as Box<dyn Any>)
            .map_err(|e| format!("{e:#}")),
    ))
}

/// A layer with nothing to do besides its commands and checks.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// A step of the workshop: its title, and its layer once that layer is built.
pub struct Step {
    pub number: u8,
    pub title: &'static str,
    pub layer: Option<&'static Layer>,
}
