//! From the command line to a `Spec`: what the student's options mean for the
//! container (part of the command line, after cli.rs), checked against the step
//! before anything is made. A layer's own options check themselves and make
//! their part of the Spec (`layers::*::Options`); this file puts the parts
//! together with the root filesystem and the command.

use crate::{cli::Target, engine::plan, rootfs};
use anyhow::{bail, Result};

/// The spec of a command line. `for_real`: the root filesystem must exist (and
/// the default one is built on first use).
pub fn spec(target: &Target, command: Vec<String>, for_real: bool) -> Result<plan::Spec> {
    let step = crate::engine::curriculum::step(target.step).expect("clap checked the range");
    if step.layer.is_none() {
        let built: Vec<String> = crate::engine::curriculum::built()
            .iter()
            .map(u8::to_string)
            .collect();
        bail!(
            "step {} ({}) is not built yet: steps {} are. See `lab steps`.",
            step.number,
            step.title,
            built.join(", ")
        );
    }
    // Each layer checks its own options against the step.
    target.overlay.check(target.step)?;
    target.cgroups.check(target.step, for_real)?;
    target.network.check(target.step)?;
    target.userns.check(target.step, for_real)?;
    let limits = target.cgroups.limits();
    let (image, image_config) = target.overlay.image()?;
    // As docker run: the image's Entrypoint, then the command given or its Cmd.
    let command = image_config.command(&command);
    let rootfs = match (&target.rootfs, for_real) {
        (Some(dir), true) => {
            if !dir.join("bin").is_dir() && !dir.join("usr/bin").is_dir() {
                bail!(
                    "{} does not look like a root filesystem (no bin/ in it)",
                    dir.display()
                );
            }
            dir.canonicalize()?
        }
        (Some(dir), false) => std::env::current_dir()?.join(dir),
        (None, true) => rootfs::ensure_default()?,
        (None, false) => rootfs::default_path(),
    };
    let command = if command.is_empty() {
        vec![plan::Spec::DEFAULT_COMMAND.to_string()]
    } else {
        command
    };
    if for_real && image.is_none() {
        // A missing program would only show once the container is built.
        if let Some(program) = command.first().filter(|c| c.starts_with('/')) {
            if rootfs.join(&program[1..]).symlink_metadata().is_err() {
                bail!(
                    "{} has no {program}: give a command that is in it (lab step N --rootfs DIR -- /bin/busybox sh), or use a root filesystem with it",
                    rootfs.display()
                );
            }
        }
    }
    let image = image.unwrap_or_else(|| vec![rootfs.clone()]);
    let user = target.overlay.user(&image_config, &image, for_real)?;
    Ok(plan::Spec {
        step: target.step,
        rootfs,
        name: target.name.clone().unwrap_or_else(|| "c1".into()),
        command,
        image,
        image_config,
        user,
        keep: target.overlay.keep,
        options: plan::LayerOptions::default()
            .with(limits)
            .with(target.network.clone())
            .with(target.userns.clone()),
        by_hand: !for_real,
    })
}
