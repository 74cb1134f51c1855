//! The curriculum: one layer per step, in order. Step N switches on layers 1..=N.
//!
//! Every layer is one file that reads top to bottom: what the layer is, the
//! commands a person would type, the system calls that do them, and the checks that
//! prove the kernel did what we asked.

pub mod cgroups;
pub mod chroot;
pub mod escapes;
pub mod mount;
pub mod network;
pub mod overlay;
pub mod pid;
pub mod privileges;
pub mod userns;
pub mod uts_ipc;

use crate::check::{Check, Kind, Probe};
use crate::plan::{Action, Command, Namespace, Phase, Spec};
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
/// and never asks which layer it talks to: adding a layer adds a file here and a
/// line to [`STEPS`], nothing else. Every method does nothing unless a layer says
/// otherwise.
pub trait Hooks: Sync {
    /// Before anything is made: what this layer needs from the kernel and the
    /// host, looked up without changing anything (one clear error if missing).
    fn preflight(&self, _spec: &Spec) -> Result<()> {
        Ok(())
    }
    /// Before the plan is made: claim what this container takes from what all
    /// containers share (step 5: its address), written into its state
    /// directory `state` so that a killed run can be cleaned up.
    fn reserve(&self, _spec: &mut Spec, _state: &Path) -> Result<()> {
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

pub const STEPS: &[Step] = &[
    Step {
        number: 1,
        title: chroot::LAYER.title,
        layer: Some(&chroot::LAYER),
    },
    Step {
        number: 2,
        title: mount::LAYER.title,
        layer: Some(&mount::LAYER),
    },
    Step {
        number: 3,
        title: pid::LAYER.title,
        layer: Some(&pid::LAYER),
    },
    Step {
        number: 4,
        title: uts_ipc::LAYER.title,
        layer: Some(&uts_ipc::LAYER),
    },
    Step {
        number: 5,
        title: network::LAYER.title,
        layer: Some(&network::LAYER),
    },
    Step {
        number: 6,
        title: cgroups::LAYER.title,
        layer: Some(&cgroups::LAYER),
    },
    Step {
        number: 7,
        title: overlay::LAYER.title,
        layer: Some(&overlay::LAYER),
    },
    Step {
        number: 8,
        title: privileges::LAYER.title,
        layer: Some(&privileges::LAYER),
    },
    Step {
        number: 9,
        title: userns::LAYER.title,
        layer: Some(&userns::LAYER),
    },
];

/// The highest step number of the curriculum.
pub fn last_step() -> u8 {
    STEPS.len() as u8
}

pub fn step(number: u8) -> Option<&'static Step> {
    STEPS.iter().find(|s| s.number == number)
}

/// The steps up to `step` whose layers are not built yet: step `step` runs without them.
pub fn missing_before(step: u8) -> Vec<u8> {
    STEPS
        .iter()
        .take(step as usize)
        .filter(|s| s.layer.is_none())
        .map(|s| s.number)
        .collect()
}

pub fn built() -> Vec<u8> {
    STEPS
        .iter()
        .filter(|s| s.layer.is_some())
        .map(|s| s.number)
        .collect()
}

/// Layers 1..=step. Callers check [`last_built`] first.
pub fn up_to(step: u8) -> Vec<&'static Layer> {
    STEPS
        .iter()
        .take(step as usize)
        .filter_map(|s| s.layer)
        .collect()
}

/// The layers whose commands, checks and hooks run at `step`: layers 1..=step,
/// but, without root, not those that need it.
pub fn active(step: u8) -> Vec<&'static Layer> {
    up_to(step)
        .into_iter()
        .filter(|l| !crate::dirs::rootless() || l.hooks.without_root().is_none())
        .collect()
}

/// Without root: the layers of `step` that are left out, and why.
pub fn left_out(step: u8) -> Vec<(&'static Layer, &'static str)> {
    if !crate::dirs::rootless() {
        return vec![];
    }
    up_to(step)
        .into_iter()
        .filter_map(|l| Some((l, l.hooks.without_root()?)))
        .collect()
}

/// Every built layer, whatever the step: for cleaning up after any container.
pub fn all() -> Vec<&'static Layer> {
    STEPS.iter().filter_map(|s| s.layer).collect()
}

/// Before `lab step N` makes anything: what the layers up to N need from the
/// kernel and the host, in one line for the first thing missing.
pub fn preflight(spec: &Spec) -> Result<()> {
    if crate::dirs::rootless() && !spec.in_user_namespace() {
        anyhow::bail!(
            "lab step {} changes the kernel's view of processes and needs root: run it with sudo (without sudo, only step 9 runs, in a user namespace of your own: lab step 9)",
            spec.step
        );
    }
    for layer in up_to(spec.step) {
        for ns in layer.namespaces {
            if !Path::new("/proc/self/ns").join(ns.proc_name()).exists() {
                anyhow::bail!(
                    "step {} needs the {} namespace, which this kernel lacks (CONFIG_{}_NS): see sudo lab doctor",
                    spec.step,
                    ns.word(),
                    ns.proc_name().to_uppercase()
                );
            }
        }
    }
    for layer in active(spec.step) {
        layer.hooks.preflight(spec)?;
    }
    Ok(())
}

/// Take down what containers share, where no container uses it any more.
/// Returns what was removed.
pub fn remove_shared_if_unused() -> Result<Vec<String>> {
    let mut said = Vec::new();
    for layer in all() {
        said.extend(layer.hooks.remove_shared_if_unused()?);
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_layers_match() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(s.number as usize, i + 1);
            if let Some(layer) = s.layer {
                assert_eq!(
                    layer.number, s.number,
                    "step {} holds another layer",
                    s.number
                );
            }
        }
    }

    /// The engine names no layer: adding a layer adds its file and a line to
    /// STEPS, and touches none of these (ARCHITECTURE.md).
    #[test]
    fn the_engine_names_no_layer() {
        let engine = [
            ("check/mod.rs", include_str!("../check/mod.rs")),
            ("check/host.rs", include_str!("../check/host.rs")),
            ("check/probe.rs", include_str!("../check/probe.rs")),
            ("container.rs", include_str!("../container.rs")),
            ("init.rs", include_str!("../init.rs")),
            ("render.rs", include_str!("../render.rs")),
            ("state/mod.rs", include_str!("../state/mod.rs")),
            ("state/clean.rs", include_str!("../state/clean.rs")),
            ("plan.rs", include_str!("../plan.rs")),
        ];
        let modules = [
            "chroot",
            "mount",
            "pid",
            "uts_ipc",
            "network",
            "cgroups",
            "overlay",
            "privileges",
            "userns",
            "escapes",
        ];
        for (file, text) in engine {
            for m in modules {
                for form in [format!("layers::{m}"), format!("{m}::LAYER")] {
                    // plan.rs holds the student's options of a layer (the command
                    // line's), nothing of how the layer works.
                    let allowed = file == "plan.rs"
                        && (text.matches(&form).count()
                            == text.matches(&format!("{form}::Options")).count()
                                + text.matches(&format!("{form}::Version")).count());
                    assert!(
                        allowed || !text.contains(&form),
                        "src/{file} names the layer {m} ({form}): ask it through its hooks (layers::Hooks)"
                    );
                }
            }
        }
    }

    /// What `lab explain N` asks for, without a look at this machine's cgroups
    /// or subnets.
    fn spec_at(step: u8) -> Spec {
        Spec {
            step,
            rootfs: "/var/lib/lab/rootfs".into(),
            name: "c1".into(),
            command: vec![Spec::DEFAULT_COMMAND.into()],
            image: vec!["/var/lib/lab/rootfs".into()],
            image_config: Default::default(),
            user: None,
            keep: false,
            limits: crate::plan::Limits {
                version: Some(cgroups::Version::V2),
                ..Default::default()
            },
            network: network::Options {
                subnet: Some(network::Subnet::parse("10.200.0.0/24").unwrap()),
                ..Default::default()
            },
            by_hand: true,
        }
    }

    /// Every command and check of a layer carries its number (made with
    /// `LAYER.at`, `LAYER.inside`, `LAYER.check`), at every step that has it:
    /// `lab explain` prints a command in its layer's section, and an escape is
    /// a check of the layer that first shows it (escapes.rs).
    #[test]
    fn a_layers_commands_and_checks_carry_its_number() {
        for step in 1..=last_step() {
            let spec = spec_at(step);
            for layer in up_to(step) {
                // (A layer that lacks something on this machine has no commands
                // to look at: Plan::new prints its reason instead.)
                for c in (layer.commands)(&spec).unwrap_or_default() {
                    assert_eq!(
                        c.layer,
                        layer.number,
                        "step {step}: a command of layer {} says layer {}: {}",
                        layer.number,
                        c.layer,
                        c.action.shell()
                    );
                }
                for c in (layer.checks)(step) {
                    assert_eq!(
                        c.layer, layer.number,
                        "step {step}: a check of layer {} says layer {}: {}",
                        layer.number, c.layer, c.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_built_layer_has_checks_at_its_own_step() {
        for s in STEPS.iter().filter(|s| s.layer.is_some()) {
            let layer = s.layer.unwrap();
            assert!(
                !(layer.checks)(s.number).is_empty(),
                "layer {} has no checks",
                s.number
            );
        }
    }
}
