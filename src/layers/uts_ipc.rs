//! Layer 4: uts and ipc namespaces.
//!
//! The uts namespace holds the hostname (and the NIS domain name): with its own,
//! the container can call itself what it likes without renaming the host. The ipc
//! namespace holds System V IPC objects (message queues, semaphores, shared
//! memory) and POSIX message queues: processes that share one can talk through
//! them by number, so the container gets its own, empty set.

use super::Layer;
use crate::check::{host_hostname, Before, Check, Kind, Outcome, Probe};
use crate::plan::{quote, Action, Command, Namespace, Spec};
use crate::sys;
use anyhow::{Context, Result};

pub const LAYER: Layer = Layer {
    number: 4,
    title: "uts and ipc namespaces",
    idea: "the container gets its own hostname and its own System V IPC objects",
    namespaces: &[Namespace::Uts, Namespace::Ipc],
    commands,
    note: |_| None,
    checks,
};

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Vec<Command> {
    vec![Command::inside(
        4,
        "name the container: only its uts namespace changes",
        SetHostname(spec.name.clone()),
    )]
}

/// `hostname NAME`
struct SetHostname(String);

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for SetHostname {
    fn shell(&self) -> String {
        format!("hostname {}", quote(&self.0))
    }
    fn apply(&self) -> Result<()> {
        nix::unistd::sethostname(&self.0).with_context(|| format!("sethostname({})", self.0))
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(_step: u8) -> Vec<Check> {
    vec![
        Check {
            layer: 4,
            name: "the hostname inside is the container's",
            hint: "The hostname inside is the host's: no uts namespace, or `hostname NAME` did not run inside it. Compare `hostname` inside and on the host.",
            kind: Kind::Inside(hostname_is_own),
        },
        Check {
            layer: 4,
            name: "a System V message queue made on the host is invisible",
            hint: "The host's message queue is visible: the container shares the host's ipc namespace. Compare `ipcs -q` inside and on the host.",
            kind: Kind::Inside(host_queue_invisible),
        },
        Check {
            layer: 4,
            name: "after exit, the host's hostname is unchanged",
            hint: "The host was renamed: `hostname` ran outside a uts namespace. Set it back with `sudo hostname OLDNAME`.",
            kind: Kind::AfterExit(host_hostname_unchanged),
        },
    ]
}

fn hostname_is_own(p: &Probe) -> Outcome {
    let inside = host_hostname();
    let differs = inside != p.host_hostname;
    let expected = p.hostname.as_ref().map_or(true, |h| *h == inside);
    Outcome::from(
        differs && expected,
        format!("inside: {inside}, host: {}", p.host_hostname),
    )
}

fn host_queue_invisible(p: &Probe) -> Outcome {
    let visible = sys::msg_queue_exists(p.msg_queue);
    let listed = std::fs::read_to_string("/proc/sysvipc/msg")
        .map(|t| t.lines().skip(1).count().to_string())
        .unwrap_or_else(|_| "?".into());
    Outcome::from(
        !visible,
        format!(
            "host queue id {} {} inside; queues listed inside: {listed}",
            p.msg_queue,
            if visible {
                "is visible"
            } else {
                "does not exist"
            }
        ),
    )
}

fn host_hostname_unchanged(b: &Before) -> Outcome {
    Outcome::from(
        b.hostname == b.after_hostname,
        format!("before: {}, after: {}", b.hostname, b.after_hostname),
    )
}
