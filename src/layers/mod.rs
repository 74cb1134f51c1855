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

pub use crate::engine::layer::{gathered, Gathered, Hooks, Layer, NoHooks, Step};

/// The steps of the workshop, in order: handed to the engine by main.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::curriculum::{last_step, up_to};
    use crate::engine::plan::Spec;

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
            options: crate::engine::plan::LayerOptions::default()
                .with(cgroups::Limits {
                    version: Some(cgroups::Version::V2),
                    ..Default::default()
                })
                .with(network::Options {
                    subnet: Some(network::Subnet::parse("10.200.0.0/24").unwrap()),
                    ..Default::default()
                }),
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
