//! Layer 1: chroot.
//!
//! A process has a root directory, and every absolute path it opens starts there.
//! `chroot` changes it: the root filesystem becomes `/` and the rest of the host's
//! files have no name any more. That is the first piece of a container: its own
//! files. It is not isolation, though: a root process can leave a chroot (see
//! [`try_escape`]), which is why step 2 replaces it with a mount namespace and
//! pivot_root.

use super::Layer;
use crate::check::{Check, Kind, Outcome, Probe};
use crate::plan::{quote, quote_path, Action, Command, Spec};
use anyhow::{Context, Result};
use nix::unistd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub const LAYER: Layer = Layer {
    number: 1,
    title: "chroot",
    idea: "the container gets its own files: a root filesystem becomes its /",
    namespaces: &[],
    commands,
    note,
    checks,
    hooks: &super::NoHooks,
};

fn note(step: u8) -> Option<&'static str> {
    (step > 1).then_some(
        "From step 2 on, layer 2 enters the root filesystem with pivot_root instead of chroot.",
    )
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Vec<Command> {
    if spec.step > 1 {
        return vec![];
    }
    vec![Command::inside(
        1,
        "run the command with the root filesystem as its /",
        Chroot {
            root: spec.rootfs.clone(),
            command: spec.command.clone(),
        },
    )]
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
    fn apply(&self) -> Result<()> {
        unistd::chroot(&self.root).with_context(|| format!("chroot {}", self.root.display()))?;
        // chroot does not move the current directory: without this the process would
        // still stand in the host's tree.
        unistd::chdir("/").context("chdir /")?;
        Ok(())
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(step: u8) -> Vec<Check> {
    let mut checks = vec![
        Check {
            layer: 1,
            name: "the root filesystem is the container's /",
            hint: "The container's / is another directory: was --rootfs right? Compare `ls /` inside with `ls ROOTFS` on the host.",
            kind: Kind::Inside(root_is_rootfs),
        },
        Check {
            layer: 1,
            name: "a host file outside the root filesystem is invisible",
            hint: "The container still sees the host's files: the root was not changed (chroot or pivot_root did not run).",
            kind: Kind::Inside(host_file_invisible),
        },
    ];
    if step == 1 {
        checks.push(Check {
            layer: 1,
            name: "chroot alone can be escaped (expected at step 1)",
            hint: "The escape should work at step 1: a root process in a chroot can always leave it. Did the probe lack root?",
            kind: Kind::Inside(escape_works),
        });
    }
    checks
}

fn root_is_rootfs(p: &Probe) -> Outcome {
    let Some((dev, ino)) = p.root else {
        return Outcome::Fail(format!(
            "{} does not exist on the host",
            p.root_path.display()
        ));
    };
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

fn escape_works(p: &Probe) -> Outcome {
    match try_escape(p) {
        Ok(true) => Outcome::Pass(format!(
            "a root process left the chroot and read the host's {}",
            p.marker.display()
        )),
        Ok(false) => Outcome::Fail("the escape did not reach the host's files".into()),
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

/// The classic escape from a chroot, run by a throwaway process as root:
///
/// ```text
/// mkdir x; chroot x        # a new root below us, but our directory stays outside it
/// cd ..; cd ..; ...        # `..` stops only at the root, and we are no longer under it
/// chroot .                 # we stand at the real /, make it our root
/// ```
///
/// Returns whether the host's marker file is visible afterwards. This changes the
/// root of the calling process, so call it only in a probe that exits afterwards.
pub fn try_escape(p: &Probe) -> Result<bool> {
    let name = format!("lab-escape-{}", std::process::id());
    let root = std::fs::File::open("/").context("open /")?;
    std::fs::create_dir(&name).with_context(|| format!("mkdir /{name} inside the container"))?;
    let result = (|| -> Result<bool> {
        unistd::chroot(name.as_str()).context("chroot into the new directory")?;
        for _ in 0..64 {
            unistd::chdir("..").context("chdir ..")?;
        }
        unistd::chroot(".").context("chroot .")?;
        Ok(p.marker.exists())
    })();
    let _ = nix::unistd::unlinkat(&root, name.as_str(), nix::unistd::UnlinkatFlags::RemoveDir);
    result
}
