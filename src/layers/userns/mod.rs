//! Layer 9: a user namespace: root inside is an ordinary user outside.
//!
//! After step 8 root inside has lost most of its power, but it is still user 0
//! of the host: a file of the host's root that reaches the container (a bind
//! mount, a volume) is root's to read and write, and a way past every other
//! layer (a kernel bug) would hand over the host. A user namespace translates
//! user and group IDs: its `uid_map` says that 0-65535 inside are 100000-165535
//! outside. Every namespace made with it belongs to it, so root inside has full
//! power over the container's own mounts, network and processes, and none over
//! anything else: to the host, it is user 100000. This is what rootless Podman and
//! Docker's `userns-remap` do.
//!
//! The kernel makes the user namespace first and the others inside it. Its
//! first process is nobody until the host writes the maps (a process may write
//! its own only for its own ID); then it becomes root of the namespace. The
//! image's files, the host root's, would show as `nobody`: shift.rs gives the
//! container copies it owns.
//!
//! The layer reads in order: this file (the idea, the commands), `range.rs`
//! (which host IDs), `shift.rs` (the image), `checks.rs`.

mod checks;
pub mod range;
pub mod shift;

use super::Layer;
use crate::plan::{Action, Command, Namespace, Phase, Spec};
use anyhow::{Context, Result};

pub const LAYER: Layer = Layer {
    number: 9,
    title: "user namespace",
    idea: "root inside is an ordinary user outside: container IDs map to a range of unprivileged host IDs",
    namespaces: &[Namespace::User],
    commands,
    note: |_| None,
    checks: checks::checks,
    hooks: &UserHooks,
};

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Vec<Command> {
    let (range, from) = match range::lab() {
        Ok(r) => r,
        Err(e) => {
            return vec![Command::at(
                Phase::Host,
                9,
                "find the range of host IDs",
                Unavailable(format!("{e:#}")),
            )]
        }
    };
    let last = range.base + range.count - 1;
    vec![
        Command::at(
            Phase::Connect,
            9,
            format!(
                "map the container's user IDs 0-{} to the host's {}-{last} ({from}): written by a process of the parent namespace with CAP_SETUID, once",
                range.count - 1,
                range.base
            ),
            WriteMap {
                file: "uid_map",
                range,
                container: spec.name.clone(),
            },
        ),
        Command::at(
            Phase::Connect,
            9,
            "and the group IDs the same way",
            WriteMap {
                file: "gid_map",
                range,
                container: spec.name.clone(),
            },
        ),
        Command::at(
            Phase::Wait,
            9,
            "first thing inside, once the host has written the maps: become root of the user namespace (until now this shell is user 0 of the host, which the map leaves out, and shows as nobody); the shell it starts runs as user 0 inside",
            BecomeRoot,
        ),
    ]
}

/// `echo '0 BASE COUNT' > /proc/$PID/uid_map` (or gid_map), on the host.
struct WriteMap {
    file: &'static str,
    range: range::Range,
    container: String,
}

impl Action for WriteMap {
    fn shell(&self) -> String {
        format!(
            "echo '{}' > /proc/$PID/{}",
            self.range.map_line(),
            self.file
        )
    }
    fn apply(&self) -> Result<()> {
        let pid = crate::state::first_pid(&self.container)?;
        let path = format!("/proc/{pid}/{}", self.file);
        // One write: the kernel takes the whole map at once, and only once.
        std::fs::write(&path, self.range.map_line())
            .with_context(|| format!("writing {} to {path}", self.range.map_line()))
    }
}

/// `until ...; exec setpriv --reuid 0 --regid 0 --clear-groups bash`
struct BecomeRoot;

/// Wait until the host has written the map.
const WAIT: &str = "until grep -q . /proc/self/uid_map; do sleep 0.1; done";
const SETPRIV: &str = "setpriv --reuid 0 --regid 0 --clear-groups";

impl Action for BecomeRoot {
    fn shell(&self) -> String {
        format!("{WAIT}; exec {SETPRIV} bash")
    }
    fn script(&self) -> String {
        // The script's inside() starts again as root of the namespace.
        format!(
            "{}; [ \"$(id -u)\" = 0 ] || exec {SETPRIV} bash -c 'inside \"$@\"' inside \"$@\"",
            WAIT.replace("0.1", "0.01")
        )
    }
    /// lab's first process was cloned with every capability in the new
    /// namespace and has not exec'd since: it may take IDs that the map holds.
    fn apply(&self) -> Result<()> {
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let (root, group) = (Uid::from_raw(0), Gid::from_raw(0));
        setresgid(group, group, group).context("setresgid(0, 0, 0) in the user namespace")?;
        setgroups(&[]).context("setgroups([])")?;
        setresuid(root, root, root).context("setresuid(0, 0, 0) in the user namespace")
    }
}

/// A step that cannot run on this machine, and why.
struct Unavailable(String);

impl Action for Unavailable {
    fn shell(&self) -> String {
        format!("# not possible here: {}", self.0)
    }
    fn apply(&self) -> Result<()> {
        anyhow::bail!("{}", self.0)
    }
}

// ── What the engine asks of this layer ─────────────────────────────────────────

struct UserHooks;

impl super::Hooks for UserHooks {
    fn preflight(&self, _spec: &Spec) -> Result<()> {
        range::lab().map(|_| ())
    }
    fn probe_data(&self, p: &crate::check::Probe) -> Result<Option<super::Gathered>> {
        super::gathered(checks::gather(p))
    }
}
