//! Layer 8: capabilities, seccomp, no_new_privs and masked paths: what a
//! container runtime takes away from root.
//!
//! After step 7 a container looks like Docker's, yet root inside is root on the
//! host: every capability, every system call, the kernel's files in /proc and
//! /sys. The checks of steps 2-7 show it (escapes.rs): a device node reads the
//! host's disk, /proc/sys changes the host's kernel, the cgroup filesystem lifts
//! the container's own limits. This layer does what Docker does by default:
//! - masks and makes read-only the dangerous parts of /proc and /sys (masks.rs);
//! - sets no_new_privs: no exec can gain privileges any more (setuid binaries,
//!   file capabilities), so nothing undoes the rest;
//! - cuts the capability sets to Docker's default list, without CAP_MKNOD
//!   (capabilities.rs);
//! - installs a seccomp filter that denies the system calls a container has no
//!   business with (seccomp.rs).
//!
//! Typed by hand, the last two need tools: after pivot_root only the container's
//! files exist, so they must be in its root filesystem (lab's default root
//! filesystem carries util-linux's `setpriv` and bubblewrap's `bwrap` with their
//! libraries). `setpriv` cuts the capabilities and sets no_new_privs; no common
//! tool of Debian 12 or Ubuntu 24.04 installs a seccomp filter from the shell but
//! `bwrap --seccomp FD`, which loads a compiled program from a file descriptor:
//! the commands write that program, instruction by instruction, on the host.
//! (util-linux 2.41 adds `setpriv --seccomp-filter FILE`.)
//!
//! The layer reads in order: this file (the idea, the commands, the last line),
//! `capabilities.rs`, `seccomp.rs`, `masks.rs`, `checks.rs`.

pub mod capabilities;
mod checks;
mod masks;
mod seccomp;

use super::Layer;
use crate::engine::plan::{
    join_quoted, quote_path, Action, Command, MakeDirs, Phase, RunAs, RunContext, Spec,
};
use anyhow::{Context, Result};
use nix::unistd::Pid;
use std::path::PathBuf;

pub const LAYER: Layer = Layer {
    number: 8,
    title: "capabilities, seccomp, no_new_privs, masked paths",
    idea: "root inside loses what it could turn against the host: most capabilities, dangerous system calls, the kernel's files in /proc and /sys",
    look: "grep Cap /proc/self/status: cut capability sets; mount -t tmpfs t /mnt: permission denied; cat /proc/keys: empty.",
    elsewhere: "`--privileged`, `--cap-add` and `--security-opt seccomp=unconfined` (Docker, Podman) switch parts of this off; no_new_privs is set only with `--security-opt no-new-privileges`. Look at the Cap*, NoNewPrivs and Seccomp lines of /proc/PID/status (`capsh --decode=HEX` names the capabilities).",
    namespaces: &[],
    commands,
    note: |_| None,
    checks: checks::checks,
    hooks: &PrivilegeHooks,
};

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    let dir = spec.files_dir();
    let file = dir.join("seccomp.bpf");
    let program = seccomp::program().context("write the seccomp filter")?;
    let host = |why: &str, a: Box<dyn Action>| Command {
        layer: LAYER.number,
        phase: Phase::Host,
        why: why.into(),
        action: a,
    };
    let mut c = vec![
        host(
            "on the host: a place for the seccomp filter, a program of BPF instructions that the kernel will run on every system call of the container",
            Box::new(MakeDirs(vec![dir.clone()])),
        ),
        host(
            "a shell function that prints one BPF instruction as the 8 bytes the kernel reads: a 16-bit opcode, two jump offsets, a 32-bit constant (little-endian)",
            Box::new(seccomp::DefineIns),
        ),
        host(
            "the opcodes the filter uses: load a word of the call's data, jump if equal / greater or equal / any bit set, return a verdict",
            Box::new(seccomp::Opcodes),
        ),
        host("the file the program goes into", Box::new(seccomp::StartFile(file.clone()))),
    ];
    for insn in program {
        let why = insn.why.clone();
        c.push(host(
            &why,
            Box::new(seccomp::WriteInsn {
                insn,
                file: file.clone(),
            }),
        ));
    }
    c.push(LAYER.at(
        Phase::Enter,
        format!("inside, while the host's files are still in view: open the filter as file descriptor {}, which survives pivot_root; bwrap reads it at the end", seccomp::FD),
        seccomp::OpenFilter(file.clone()),
    ));
    let sys_why = "/sys, read-only: the machine's devices and kernel objects, to look at, not to change (its network part is the container's own namespace)";
    if spec.in_user_namespace() {
        // As for /proc (layer 3): in a user namespace, before the host's tree
        // is detached.
        c.push(LAYER.at(
            Phase::FromOldRoot,
            format!("{sys_why}; in a user namespace, mounted before the host's tree is detached, while the host's /sys is in view (on the host's tree, stacked on /)"),
            masks::MountSys("/sys".into()),
        ));
    } else {
        c.push(LAYER.inside(sys_why, masks::MountSys("/sys".into())));
    }
    for f in masks::MASKED_FILES {
        c.push(LAYER.inside(masked_file_why(f), masks::MaskFile(f)));
    }
    for d in masks::MASKED_DIRS {
        c.push(LAYER.inside(
            "mask a directory of the machine's hardware: an empty read-only tmpfs over it",
            masks::MaskDir(d),
        ));
    }
    for p in masks::READ_ONLY {
        c.push(LAYER.inside(read_only_why(p), masks::ReadOnly(p)));
    }
    c.push(LAYER.at(
        Phase::Run,
        "the last line, instead of exec: bwrap loads the seccomp filter from descriptor 10 (and sets no_new_privs); setpriv then cuts the capability sets to Docker's default list without mknod, and runs the command. bwrap starts it in a mount namespace of its own, a copy of the container's",
        RestrictedExec {
            command: spec.command.clone(),
            user: spec.user.clone(),
        },
    ));
    c.push(LAYER.at(
        Phase::Teardown,
        "after exit: the filter's file",
        RemoveFile(file),
    ));
    Ok(c)
}

fn masked_file_why(path: &str) -> &'static str {
    match path {
        "/proc/kcore" => {
            "mask the kernel's memory, as a core file: /dev/null over it reads as empty"
        }
        "/proc/keys" => "mask the kernel's keyrings (of the whole machine)",
        "/proc/timer_list" | "/proc/timer_stats" | "/proc/sched_debug" | "/proc/latency_stats" => {
            "mask what the kernel knows of every process of the machine (timers, scheduling)"
        }
        _ => "mask a file of the kernel",
    }
}

fn read_only_why(path: &str) -> &'static str {
    match path {
        "/proc/sys" => "the kernel's settings, most of them the machine's, not the container's: read-only (bind it onto itself, then remount that bind read-only)",
        "/proc/sysrq-trigger" => "one byte written here reboots or crashes the host: read-only",
        _ => "the machine's buses, filesystems and interrupts: read-only",
    }
}

/// The words that run a command with the container's restrictions: bwrap for
/// the seccomp filter (and no_new_privs), setpriv for the capabilities. bwrap
/// always starts its command in a new mount namespace, here a copy of the
/// container's (`--dev-bind`: with `--bind` it would mount it nodev, and even
/// /dev/null could not be opened).
/// With a user of the image (step 7), the same setpriv switches to it too.
fn restricted(command: &str, user: Option<&RunAs>) -> String {
    let user = user
        .map(|u| format!("{} ", u.setpriv_words()))
        .unwrap_or_default();
    format!(
        "bwrap --dev-bind / / --seccomp {} -- setpriv {user}--no-new-privs --bounding-set {} --inh-caps -all --ambient-caps -all -- {command}",
        seccomp::FD,
        capabilities::setpriv_list()
    )
}

/// `exec bwrap --dev-bind / / --seccomp 10 -- setpriv ... -- CMD`: the last line.
struct RestrictedExec {
    command: Vec<String>,
    user: Option<RunAs>,
}

impl Action for RestrictedExec {
    fn shell(&self) -> String {
        let command = join_quoted(&self.command);
        format!("exec {}", restricted(&command, self.user.as_ref()))
    }
    fn script(&self) -> String {
        format!("exec {}", restricted("\"$@\"", self.user.as_ref()))
    }
    /// lab's init takes these on itself before it starts the command, which
    /// inherits them (init.rs). The order is the kernel's: no_new_privs first, so
    /// that loading the filter needs no CAP_SYS_ADMIN any more; the bounding set
    /// before the permitted set, because dropping from it needs CAP_SETPCAP;
    /// the filter last, so that no rule of it can stop the calls before it.
    fn apply(&self, _run: &RunContext) -> Result<()> {
        nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
        let kept = capabilities::kept_set();
        capabilities::apply(capabilities::Sets {
            bounding: kept,
            permitted: kept,
            effective: kept,
            inheritable: 0,
            ambient: 0,
        })?;
        let program = seccomp::program()?;
        crate::sys::load_seccomp(&seccomp::filter(&program))
    }
}

/// `rm -f FILE`
struct RemoveFile(PathBuf);

impl Action for RemoveFile {
    fn shell(&self) -> String {
        format!("rm -f {}", quote_path(&self.0))
    }
    fn script(&self) -> String {
        // And the container's directory, once nothing else is in it.
        let parent = self.0.parent().unwrap_or(&self.0);
        format!(
            "{}; rmdir {} 2>/dev/null || true",
            self.shell(),
            quote_path(parent)
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.0.display()))
            }
            _ => Ok(()),
        }
    }
}

// ── What the engine asks of this layer ─────────────────────────────────────────

struct PrivilegeHooks;

impl super::Hooks for PrivilegeHooks {
    fn preflight(&self, _spec: &Spec) -> Result<()> {
        seccomp::program().map(|_| ())
    }
    /// A process that joins a container takes on what its processes live under,
    /// as `docker exec` does: read here, on the host.
    fn join_last(&self, target: Pid) -> Result<Option<Box<dyn Action>>> {
        Ok(TakeOn::of(target)?.map(|t| Box::new(t) as Box<dyn Action>))
    }
}

/// The capabilities, no_new_privs and seccomp filters of a container's process,
/// to take on after joining it.
struct TakeOn {
    target: Pid,
    status: capabilities::Status,
    filters: Vec<Vec<nix::libc::sock_filter>>,
}

impl TakeOn {
    /// Nothing to take on when the target holds every capability and has no
    /// filter (steps 1-7).
    fn of(target: Pid) -> Result<Option<TakeOn>> {
        let status = capabilities::Status::of(&target.to_string())
            .with_context(|| format!("reading /proc/{target}/status"))?;
        let all = (1u64 << (capabilities::last_cap() + 1)) - 1;
        let unrestricted =
            status.caps.bounding & all == all && !status.no_new_privs && status.seccomp == 0;
        if unrestricted {
            return Ok(None);
        }
        let filters = if status.seccomp != 2 {
            vec![]
        } else if crate::dirs::rootless() {
            // Copying a filter takes CAP_SYS_ADMIN on the host. Without root lab
            // only ever joins its own containers: their filter is lab's.
            vec![seccomp::filter(&seccomp::program()?)]
        } else {
            crate::sys::seccomp_filters_of(target)
                .with_context(|| format!("copying the seccomp filters of process {target}"))?
        };
        Ok(Some(TakeOn {
            target,
            status,
            filters,
        }))
    }
}

impl Action for TakeOn {
    fn shell(&self) -> String {
        format!(
            "# take on what process {} lives under: its capabilities ({}), no_new_privs {}, {} seccomp filter(s)",
            self.target,
            capabilities::names(self.status.caps.effective),
            u8::from(self.status.no_new_privs),
            self.filters.len()
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let load = |filters: &[Vec<nix::libc::sock_filter>]| -> Result<()> {
            filters.iter().try_for_each(|f| crate::sys::load_seccomp(f))
        };
        if self.status.no_new_privs {
            nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
            capabilities::apply(self.status.caps)?;
            load(&self.filters)
        } else {
            // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: first.
            load(&self.filters)?;
            capabilities::apply(self.status.caps)
        }
    }
}
