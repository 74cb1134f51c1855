//! From the command line to a `Spec`: what the student's options mean for the
//! container (part of the command line, after main.rs), checked against the step
//! before anything is made.

use crate::{cli::Target, image, layers, plan, rootfs};
use anyhow::{bail, Result};

/// The spec of a command line. `for_real`: the root filesystem must exist (and
/// the default one is built on first use).
pub fn spec(target: &Target, command: Vec<String>, for_real: bool) -> Result<plan::Spec> {
    let step = layers::step(target.step).expect("clap checked the range");
    if step.layer.is_none() {
        let built: Vec<String> = layers::built().iter().map(u8::to_string).collect();
        bail!(
            "step {} ({}) is not built yet: steps {} are. See `lab steps`.",
            step.number,
            step.title,
            built.join(", ")
        );
    }
    let overlay = layers::overlay::LAYER.number;
    if target.step < overlay
        && (target.image.is_some()
            || target.keep
            || target.entrypoint.is_some()
            || target.user.is_some())
    {
        bail!("--image, --entrypoint, --user and --keep belong to step {overlay} (the overlay filesystem, images) and later");
    }
    let cgroups = layers::cgroups::LAYER.number;
    let limits_given = target.memory.is_some() || target.cpus.is_some() || target.pids.is_some();
    let parent_given =
        target.cgroup_parent.is_some() && std::env::var_os("LAB_CGROUP_PARENT").is_none();
    if target.step < cgroups && (limits_given || parent_given || target.cgroup.is_some()) {
        bail!("--memory, --cpus, --pids, --cgroup-parent and --cgroup belong to step {cgroups} (cgroups) and later");
    }
    if for_real && target.cgroup.is_some() {
        bail!("--cgroup chooses what lab explain and lab script print: lab step uses the version this machine has");
    }
    let network = layers::network::LAYER.number;
    if target.step < network && (target.subnet.is_some() || !target.publish.is_empty()) {
        bail!("--subnet and --publish belong to step {network} (network) and later");
    }
    let defaults = plan::Limits::default();
    let limits = plan::Limits {
        memory_bytes: target.memory.unwrap_or(defaults.memory_bytes),
        cpus: target.cpus.unwrap_or(defaults.cpus),
        pids: target.pids.unwrap_or(defaults.pids),
        parent: target
            .cgroup_parent
            .clone()
            .or_else(|| std::env::var("LAB_CGROUP_PARENT").ok())
            .unwrap_or(defaults.parent),
        version: target.cgroup,
    };
    // Looked up first: a wrong name must not cost building the default rootfs.
    let (image, mut image_config) = match &target.image {
        Some(name) => {
            let store = image::Store::open();
            (Some(store.layers(name)?), store.config(name)?)
        }
        None => (None, image::Config::default()),
    };
    if let Some(program) = &target.entrypoint {
        anyhow::ensure!(
            target.image.is_some(),
            "--entrypoint replaces the Entrypoint of an image: give one with --image"
        );
        // As docker run --entrypoint: the image's Cmd goes with its Entrypoint.
        image_config.entrypoint = [program.clone()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        image_config.cmd.clear();
    }
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
    // As docker run: --user, else the image's User, else root.
    let user = match target.user.as_ref().or(image_config.user.as_ref()) {
        Some(u) => Some(layers::overlay::run_as(u, &image)?),
        None => None,
    };
    if let Some(u) = user.as_ref() {
        if for_real && layers::rootless() && (u.uid != 0 || u.gid != 0 || !u.groups.is_empty()) {
            bail!(
                "the command would run as {} (uid {}, gid {}, {} supplementary groups): without root, lab's user namespace maps only your own user and group, as root of the container, and may not set groups. Run it with sudo",
                u.named, u.uid, u.gid, u.groups.len()
            );
        }
    }
    Ok(plan::Spec {
        step: target.step,
        rootfs,
        name: target.name.clone().unwrap_or_else(|| "c1".into()),
        command,
        image,
        image_config,
        user,
        keep: target.keep,
        limits,
        network: layers::network::Options {
            subnet: target.subnet,
            publish: target.publish.clone(),
            address: None,
        },
        by_hand: !for_real,
    })
}
