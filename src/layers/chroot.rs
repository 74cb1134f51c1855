//! Layer 1: chroot.
//!
//! A process has a root directory, and every absolute path it opens starts there.
//! `chroot` changes it: the root filesystem becomes `/` and the rest of the host's
//! files have no name any more. That is the first piece of a container: its own
//! files. It is not isolation, though: a root process can leave a chroot (the
//! first escape of escapes.rs), which is why step 2 replaces it with a mount
//! namespace and pivot_root.

use super::Layer;
use crate::engine::check::{Check, Kind, Outcome, Probe};
use crate::engine::plan::{quote, quote_path, Action, Command, RunContext, Spec};
use anyhow::{Context, Result};
use nix::unistd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub const LAYER: Layer = Layer {
    number: 1,
    title: "chroot",
    idea: "the container gets its own files: a root filesystem becomes its /",
    look: "ps prints only its header: nothing is mounted on /proc. mount -t proc proc /proc, then ps: the host's processes. umount /proc before you leave: at step 1 that mount is in the host's mount table.",
    elsewhere: "Every container runtime (Docker, Podman, runc, systemd-nspawn, bwrap) gives a container a root of its own; a process started by plain `unshare` or `nsenter` keeps the host's. Compare `sudo ls /proc/PID/root/` with `ls /`.",
    namespaces: &[],
    commands,
    note,
    checks,
    hooks: &super::NoHooks,
};

fn note(step: u8) -> Option<&'static str> {
    (step >= super::mount::LAYER.number).then_some(
        "From step 2 on, layer 2 enters the root filesystem with pivot_root instead of chroot.",
    )
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    // From layer 2 on, pivot_root enters the root filesystem instead.
    if spec.step >= super::mount::LAYER.number {
        return Ok(vec![]);
    }
    Ok(vec![LAYER.inside(
        "run the command with the root filesystem as its /",
        Chroot {
            root: spec.rootfs.clone(),
            command: spec.command.clone(),
        },
    )])
}

/// `chroot ROOTFS CMD`
struct Chroot {
    root: PathBuf,
    command: Vec<String>,
}

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for Chroot {
    fn shell(&self) -> String {
        let cmd: Vec<String> = self.command.iter().map(|w| quote(w)).collect();
        format!("chroot {} {}", quote_path(&self.root), cmd.join(" "))
    }
    fn script(&self) -> String {
        format!("chroot {} \"$@\"", quote_path(&self.root))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        unistd::chroot(&self.root).with_context(|| format!("chroot {}", self.root.display()))?;
        // chroot does not move the current directory: without this the process would
        // still stand in the host's tree.
        unistd::chdir("/").context("chdir /")?;
        Ok(())
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(_step: u8) -> Vec<Check> {
    let mut checks = vec![
        LAYER.check(
            "the root filesystem is the container's /",
            "The container's / is another directory: was --rootfs right? Compare `ls /` inside with `ls ROOTFS` on the host.",
            Kind::Inside(root_is_rootfs),
        ),
        LAYER.check(
            "a host file outside the root filesystem is invisible",
            "The container still sees the host's files: the root was not changed (chroot or pivot_root did not run).",
            Kind::Inside(host_file_invisible),
        ),
    ];
    // Escaping the chroot: works at step 1, closed by layer 2 (escapes.rs).
    checks.push(super::escapes::chroot());
    checks
}

fn root_is_rootfs(p: &Probe) -> Outcome {
    if crate::dirs::rootless() && p.step >= super::overlay::LAYER.number {
        return Outcome::Skip(
            "without root the overlay is mounted inside the container, out of the host's sight: layer 7's checks look at it".into(),
        );
    }
    let Some((dev, ino)) = p.root else {
        return Outcome::Fail(format!(
            "{} does not exist on the host",
            p.root_path.display()
        ));
    };
    // A root of its own: never the host's, whatever directory was named.
    if (dev, ino) == (p.host.root_dev, p.host.root_ino) {
        return Outcome::Fail(format!(
            "{} is the host's own / (device {dev} inode {ino}): the container has no root of its own",
            p.root_path.display()
        ));
    }
    match std::fs::metadata("/") {
        Ok(m) => Outcome::from(
            (m.dev(), m.ino()) == (dev, ino),
            format!(
                "/ inside is device {} inode {}; {} is device {dev} inode {ino}",
                m.dev(),
                m.ino(),
                p.root_path.display(),
            ),
        ),
        Err(e) => Outcome::Fail(format!("stat /: {e}")),
    }
}

fn host_file_invisible(p: &Probe) -> Outcome {
    let seen = p.marker.exists();
    Outcome::from(
        !seen,
        format!(
            "{} {} inside",
            p.marker.display(),
            if seen { "is visible" } else { "does not exist" }
        ),
    )
}
