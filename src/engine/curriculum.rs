//! The curriculum the engine runs: the table of steps, handed over once by
//! `main` (from `src/layers/`), and what the engine asks of it: the layers of a
//! step, those left out without root, the checks before anything is made.

use super::layer::{Layer, Step};
use super::plan::Spec;
use anyhow::Result;
use std::path::Path;
use std::sync::OnceLock;

static CURRICULUM: OnceLock<&'static [Step]> = OnceLock::new();

/// Hand the engine its curriculum, once, before anything runs (main.rs).
pub fn set(steps: &'static [Step]) {
    let _ = CURRICULUM.set(steps);
}

/// The steps, in order.
pub fn steps() -> &'static [Step] {
    #[cfg(test)]
    tests::hand_over();
    CURRICULUM.get().expect(
        "main hands the engine its curriculum (engine::curriculum::set) before anything runs",
    )
}

/// The highest step number of the curriculum.
pub fn last_step() -> u8 {
    steps().len() as u8
}

pub fn step(number: u8) -> Option<&'static Step> {
    steps().iter().find(|s| s.number == number)
}

/// The steps up to `step` whose layers are not built yet: step `step` runs without them.
pub fn missing_before(step: u8) -> Vec<u8> {
    steps()
        .iter()
        .take(step as usize)
        .filter(|s| s.layer.is_none())
        .map(|s| s.number)
        .collect()
}

pub fn built() -> Vec<u8> {
    steps()
        .iter()
        .filter(|s| s.layer.is_some())
        .map(|s| s.number)
        .collect()
}

/// Layers 1..=step. Callers check [`last_built`] first.
pub fn up_to(step: u8) -> Vec<&'static Layer> {
    steps()
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
    steps().iter().filter_map(|s| s.layer).collect()
}

/// The built layer of this number.
pub fn layer(number: u8) -> Option<&'static Layer> {
    all().into_iter().find(|l| l.number == number)
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
    /// Unit tests start without main: they run lab's own curriculum.
    pub(super) fn hand_over() {
        super::set(crate::layers::STEPS);
    }
}
