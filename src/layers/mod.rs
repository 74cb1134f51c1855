//! The curriculum: one layer per step, in order. Step N switches on layers 1..=N.
//!
//! Every layer is one file that reads top to bottom: what the layer is, the
//! commands a person would type, the system calls that do them, and the checks that
//! prove the kernel did what we asked.

pub mod cgroups;
pub mod chroot;
pub mod mount;
pub mod network;
pub mod overlay;
pub mod pid;
pub mod uts_ipc;

use crate::check::Check;
use crate::plan::{Command, Namespace, Spec};

/// One isolation layer, described as data.
pub struct Layer {
    pub number: u8,
    pub title: &'static str,
    /// One sentence: what this layer gives the container.
    pub idea: &'static str,
    /// The namespaces this layer adds to the `unshare`/`clone` of the step.
    pub namespaces: &'static [Namespace],
    /// Its commands at a given step (a later layer may take over an earlier one's job).
    pub commands: fn(&Spec) -> Vec<Command>,
    /// A remark shown after the layer's commands at a step (or instead of them).
    pub note: fn(u8) -> Option<&'static str>,
    /// Its checks at a given step.
    pub checks: fn(u8) -> Vec<Check>,
}

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
    // Room for 8 (user namespaces, rootless) and 9 (capabilities and seccomp).
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
