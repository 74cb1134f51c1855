//! Layer 9: a user namespace: root inside is an ordinary user outside.
//!
//! After step 8 root inside has lost most of its power, but it is still user 0
//! of the host: a file of the host's root that reaches the container (a bind
//! mount, a volume) is root's to read and write, and a way past every other
//! layer (a kernel bug) would hand over the host. A user namespace translates
//! user and group IDs: its `uid_map` says, for example, that 0-65535 inside are
//! 200000-265535 outside (range.rs chooses). Every namespace made with it belongs
//! to it, so root inside has power over the container's own mounts, network
//! and processes, and none over anything else: to the host, it is user 200000.
//! Even over its own, the kernel keeps some powers for the host's root: no
//! device nodes, only filesystems marked safe to mount there, the mounts it
//! inherited locked, no modules. This is what Docker's `userns-remap` and
//! Podman's `--userns=auto` do (rootless Podman maps root to the user who runs
//! it, and 1-65536 to that user's range in /etc/subuid).
//!
//! The kernel makes the user namespace first and the others inside it. Its
//! first process is nobody until the host writes the maps (from inside, a
//! process may write only a one-line map of its own ID; a range takes
//! CAP_SETUID in the parent namespace); then it becomes root of the namespace. The
//! image's files, the host root's, would show as `nobody`: shift.rs gives the
//! container copies it owns.
//!
//! The layer reads in order: this file (the idea, the commands), `range.rs`
//! (which host IDs), `shift.rs` (the image), `caps.rs` (its file
//! capabilities), `checks.rs`; `apparmor.rs` is what Ubuntu's AppArmor asks of
//! it without root.

pub mod apparmor;
pub mod caps;
mod checks;
mod options;
pub mod range;
pub mod shift;

pub use options::Options;

use super::Layer;
use crate::engine::plan::{Action, Command, Namespace, Phase, RunContext, Spec};
use anyhow::{Context, Result};

pub const LAYER: Layer = Layer {
    number: 9,
    title: "user namespace",
    idea: "root inside is an ordinary user outside: container IDs map to a range of unprivileged host IDs",
    look: "id: uid 0 in here. On the host, ps -o user,pid,comm -C lab-init shows the same process as an unprivileged user.",
    elsewhere: "Root inside is the host's root unless the runtime maps it: Podman run without sudo (root is your user), `podman run --userns=auto` or `--uidmap`, rootless Docker, Docker's daemon-wide `userns-remap`. `cat /proc/PID/uid_map`: `0 0 4294967295` is no mapping at all.",
    namespaces: &[Namespace::User],
    commands,
    note: |_| None,
    checks: checks::checks,
    hooks: &UserHooks,
};

// ── The commands ───────────────────────────────────────────────────────────────

/// The maps of `spec`'s container: lab's range on this machine, or the one
/// --id-range asks `lab explain` to print. The overlay's shifted copies take the
/// same (overlay/mod.rs).
pub fn maps(spec: &Spec) -> Result<range::Maps> {
    range::maps(spec.options.get::<Options>().id_range)
}

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    let maps = maps(spec).context("find the range of host IDs")?;
    let (uid, gid) = (maps.uid, maps.gid);
    let rootless = crate::dirs::rootless();
    let mut c = Vec::new();
    if rootless {
        c.push(LAYER.at(
            Phase::Connect,
            "without root: first give up setgroups in the namespace (else a process there could drop a supplementary group that denies it access), which the kernel asks before it takes a group map from an ordinary user",
            WriteMap {
                file: "setgroups",
                line: "deny".into(),
                container: spec.name.clone(),
            },
        ));
    }
    c.push(LAYER.at(
        Phase::Connect,
        format!(
            "map the container's user IDs 0-{} to the host's {}-{} ({}): {}",
            uid.count - 1,
            uid.base,
            uid.base + uid.count - 1,
            maps.from,
            match rootless {
                true => "written from the parent namespace, once",
                false => "written once, by the host's root: a range of IDs takes CAP_SETUID in the parent namespace, and the container's shell holds its capabilities only in its own",
            }
        ),
        WriteMap {
            file: "uid_map",
            line: uid.map_line(),
            container: spec.name.clone(),
        },
    ));
    c.push(LAYER.at(
        Phase::Connect,
        "and the group IDs the same way",
        WriteMap {
            file: "gid_map",
            line: gid.map_line(),
            container: spec.name.clone(),
        },
    ));
    c.push(LAYER.at(
        Phase::Wait,
        format!(
            "first thing inside, once the host has written the maps: become root of the user namespace (until now this shell {}, and shows as nobody); the shell it starts runs as user 0 inside",
            match rootless {
                true => "is your user, which no map has given an ID inside yet",
                false => "is user 0 of the host, which the map leaves out",
            }
        ),
        BecomeRoot { rootless },
    ));
    Ok(c)
}

/// `echo '0 BASE COUNT' > /proc/$PID/uid_map` (or gid_map, or `deny` to
/// setgroups), on the host.
struct WriteMap {
    file: &'static str,
    line: String,
    container: String,
}

impl Action for WriteMap {
    fn shell(&self) -> String {
        format!("echo '{}' > /proc/$PID/{}", self.line, self.file)
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let pid = crate::engine::state::first_pid(&self.container)?;
        let path = format!("/proc/{pid}/{}", self.file);
        // One write: the kernel takes the whole map at once, and only once.
        std::fs::write(&path, &self.line)
            .with_context(|| format!("writing {} to {path}", self.line))
    }
}

/// `until ...; exec setpriv --reuid 0 --regid 0 --clear-groups bash`
struct BecomeRoot {
    /// With setgroups denied (without root), the groups cannot be cleared.
    rootless: bool,
}

/// Wait until the host has written the map.
const WAIT: &str = "until grep -q . /proc/self/uid_map; do sleep 0.1; done";

impl BecomeRoot {
    fn setpriv(&self) -> &'static str {
        match self.rootless {
            false => "setpriv --reuid 0 --regid 0 --clear-groups",
            true => "setpriv --reuid 0 --regid 0 --keep-groups",
        }
    }
}

impl Action for BecomeRoot {
    fn shell(&self) -> String {
        format!("{WAIT}; exec {} bash", self.setpriv())
    }
    fn script(&self) -> String {
        // The script's inside() starts again as root of the namespace.
        format!(
            "{}; [ \"$(id -u)\" = 0 ] || exec {} bash -c 'inside \"$@\"' inside \"$@\"",
            WAIT.replace("0.1", "0.01"),
            self.setpriv()
        )
    }
    /// lab's first process was cloned with every capability in the new
    /// namespace and has not exec'd since: it may take IDs that the map holds.
    fn apply(&self, _run: &RunContext) -> Result<()> {
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let (root, group) = (Uid::from_raw(0), Gid::from_raw(0));
        setresgid(group, group, group).context("setresgid(0, 0, 0) in the user namespace")?;
        if !self.rootless {
            setgroups(&[]).context("setgroups([])")?;
        }
        setresuid(root, root, root).context("setresuid(0, 0, 0) in the user namespace")
    }
}

/// Without root: can this user make a user namespace here? Ubuntu 24.04 lets
/// AppArmor stop it unless lab runs under its profile (apparmor.rs), Debian's
/// kernels have a switch, and every kernel a limit.
fn rootless_possible() -> Result<()> {
    let read = |f: &str| {
        std::fs::read_to_string(f)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if let apparmor::Restriction::Blocked { why, fix } = apparmor::decide(&apparmor::Seen::read()) {
        anyhow::bail!(
            "{}, and {why}: {fix}; or run lab with sudo (see lab doctor)",
            apparmor::ON
        );
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        anyhow::bail!("this kernel does not let users make user namespaces (kernel.unprivileged_userns_clone = 0): run lab with sudo, or sudo sysctl kernel.unprivileged_userns_clone=1");
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        anyhow::bail!("user namespaces are switched off here (user.max_user_namespaces = 0): run lab with sudo, or raise the limit with sudo sysctl user.max_user_namespaces=15000");
    }
    Ok(())
}

// ── What the engine asks of this layer ─────────────────────────────────────────

struct UserHooks;

impl super::Hooks for UserHooks {
    fn preflight(&self, spec: &Spec) -> Result<()> {
        maps(spec)?;
        if crate::dirs::rootless() {
            rootless_possible()?;
        }
        Ok(())
    }
    fn probe_data(&self, p: &crate::engine::check::Probe) -> Result<Option<super::Gathered>> {
        super::gathered(checks::gather(p))
    }
}
