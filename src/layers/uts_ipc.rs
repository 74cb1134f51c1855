//! Layer 4: uts and ipc namespaces.
//!
//! The uts namespace holds the hostname (and the NIS domain name): with its own,
//! the container can call itself what it likes without renaming the host. The ipc
//! namespace holds System V IPC objects (message queues, semaphores, shared
//! memory) and POSIX message queues: processes that share one can talk through
//! them by number, so the container gets its own, empty set.

use super::Layer;
use crate::engine::check::{host_hostname, Before, Check, Kind, Outcome, Probe};
use crate::engine::plan::{quote, Action, Command, Namespace, RunContext, Spec};
use crate::sys;
use anyhow::{Context, Result};
use std::any::Any;
use std::path::Path;

pub const LAYER: Layer = Layer {
    number: 4,
    title: "uts and ipc namespaces",
    idea: "the container gets its own hostname and its own System V IPC objects",
    look: "hostname: the container's own; hostname other renames it in here only. cat /proc/sysvipc/msg: no message queue of the host.",
    elsewhere: "`--uts host` and `--ipc host` (Docker, Podman) share the host's hostname and System V IPC. Compare `sudo readlink /proc/PID/ns/uts /proc/PID/ns/ipc` with the same files of /proc/self.",
    namespaces: &[Namespace::Uts, Namespace::Ipc],
    commands,
    note: |_| None,
    checks,
    hooks: &UtsIpcHooks,
};

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    Ok(vec![LAYER.inside(
        "name the container: only its uts namespace changes",
        SetHostname(spec.name.clone()),
    )])
}

/// `hostname NAME`
struct SetHostname(String);

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for SetHostname {
    fn shell(&self) -> String {
        format!("hostname {}", quote(&self.0))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        nix::unistd::sethostname(&self.0).with_context(|| format!("sethostname({})", self.0))
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(_step: u8) -> Vec<Check> {
    vec![
        LAYER.check(
            "the hostname inside is the container's",
            "The hostname inside is the host's: no uts namespace, or the line that names the container (hostname NAME) did not run inside it. Compare `cat /proc/sys/kernel/hostname` inside and on the host.",
            Kind::Inside(hostname_is_own),
        ),
        LAYER.check(
            "a System V message queue made on the host is invisible",
            "The host's message queue is visible: the container shares the host's ipc namespace. Compare `cat /proc/sysvipc/msg` inside and on the host (the file `ipcs -q` reads; the root filesystem has no ipcs).",
            Kind::Inside(host_queue_invisible),
        ),
        LAYER.check(
            "after exit, the host's hostname is unchanged",
            "The host was renamed: `hostname` ran outside a uts namespace. Set it back with `sudo hostname OLDNAME`.",
            Kind::AfterExit(host_hostname_unchanged),
        ),
    ]
}

/// What the checks need from the host: its hostname, and a System V message
/// queue made there (removed after the checks, or by `lab clean` after a kill).
struct UtsIpcHooks;

struct HostSide {
    hostname: String,
    queue: i32,
}

impl Drop for HostSide {
    fn drop(&mut self) {
        sys::msg_queue_remove(self.queue);
    }
}

/// The file in the checks' fixtures that names the queue, for `lab clean`.
const QUEUE_RECORD: &str = "msg-queue";

impl super::Hooks for UtsIpcHooks {
    fn probe_data(&self, p: &Probe) -> Result<Option<super::Gathered>> {
        let queue = sys::msgget_private()?;
        let made = HostSide {
            hostname: host_hostname(),
            queue,
        };
        // Written down for `lab clean`, should lab be killed before it removes it.
        std::fs::write(p.fixtures.join(QUEUE_RECORD), format!("{queue}\n"))?;
        crate::engine::state::fault_point("the checks' message queue")?;
        super::gathered(Ok(made))
    }
    fn remove_left_fixtures(&self, dir: &Path) {
        let id = std::fs::read_to_string(dir.join(QUEUE_RECORD)).unwrap_or_default();
        if let Ok(id) = id.trim().parse() {
            sys::msg_queue_remove(id);
        }
    }
    fn host_before(&self, _state: &Path) -> Option<Box<dyn Any>> {
        Some(Box::new(Hostname(host_hostname())))
    }
    fn host_after(&self, _before: &dyn Any) -> Option<Box<dyn Any>> {
        Some(Box::new(Hostname(host_hostname())))
    }
}

struct Hostname(String);

fn host(p: &Probe) -> Result<&HostSide, Outcome> {
    p.data(LAYER.number)
}

fn hostname_is_own(p: &Probe) -> Outcome {
    let host = match host(p) {
        Ok(h) => h,
        Err(o) => return o,
    };
    let inside = host_hostname();
    let differs = inside != host.hostname;
    let expected = p.name.as_ref().map_or(true, |h| *h == inside);
    Outcome::from(
        differs && expected,
        format!("inside: {inside}, host: {}", host.hostname),
    )
}

fn host_queue_invisible(p: &Probe) -> Outcome {
    let host = match host(p) {
        Ok(h) => h,
        Err(o) => return o,
    };
    let visible = sys::msg_queue_exists(host.queue);
    let listed = std::fs::read_to_string("/proc/sysvipc/msg")
        .map(|t| t.lines().skip(1).count().to_string())
        .unwrap_or_else(|_| "?".into());
    Outcome::from(
        !visible,
        format!(
            "host queue id {} {} inside; queues listed inside: {listed}",
            host.queue,
            if visible {
                "is visible"
            } else {
                "does not exist"
            }
        ),
    )
}

fn host_hostname_unchanged(b: &Before) -> Outcome {
    let Some((Hostname(before), Hostname(after))) = b.compare(LAYER.number) else {
        return Outcome::Fail("the host's hostname was not recorded".into());
    };
    Outcome::from(before == after, format!("before: {before}, after: {after}"))
}
