//! `lab doctor`: does this machine have what the workshop needs?
//!
//! Every answer comes from the kernel or the filesystem, not from the name of the
//! distribution. As root, the features are tried for real in a child process that
//! throws away what it makes: it creates each kind of namespace, and a bridge and a
//! veth pair inside a network namespace of its own, so nothing on the host changes.

use crate::engine::namespace::{made_at, Namespace, NAMESPACES};
use crate::layers::userns::apparmor;
use crate::layers::{cgroups, network};
use crate::netlink::Netlink;
use crate::rootfs::which;
use crate::sys;
use colored::Colorize;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use std::fmt::Write as _;
use std::path::Path;

/// One thing looked for.
pub struct Finding {
    pub what: String,
    pub state: State,
    pub detail: String,
    /// The command that fixes it, when it is missing.
    pub fix: Option<String>,
}

#[derive(PartialEq)]
pub enum State {
    Ok,
    /// lab works without it, with less (e.g. no busybox: host programs instead).
    Optional,
    Missing,
}

fn found(what: &str, detail: impl Into<String>) -> Finding {
    Finding {
        what: what.into(),
        state: State::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn missing(what: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        what: what.into(),
        state: State::Missing,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub fn examine() -> Vec<Finding> {
    let root = nix::unistd::geteuid().is_root();
    let mut all = vec![if root {
        found("root", "running as root: features are tried for real")
    } else {
        missing(
            "root",
            "not root: steps 1 to 8 need it (step 9 may not: see rootless), and features are only looked up, not tried",
            "sudo lab doctor",
        )
    }];
    all.extend(namespaces(root));
    all.push(rootless_userns(root));
    all.push(overlay());
    all.push(seccomp(root));
    all.push(links(root));
    all.push(cgroup_version());
    all.extend(tools());
    all
}

// ── Kernel features ────────────────────────────────────────────────────────────

/// Every namespace of crate::engine::namespace: its file, its word, its flag,
/// and the step that makes it (from the curriculum). In the order of those
/// steps, and the user namespace, which owns all the others, last.
fn namespace_kinds() -> Vec<(&'static str, &'static str, CloneFlags, Option<u8>)> {
    let mut all: Vec<_> = NAMESPACES
        .iter()
        .map(|r| (r.file, r.word, r.flag, made_at(r.ns)))
        .collect();
    all.sort_by_key(|(file, _, _, step)| {
        (
            *file == Namespace::User.proc_name(),
            step.unwrap_or(u8::MAX),
        )
    });
    all
}

fn namespaces(root: bool) -> Vec<Finding> {
    namespace_kinds()
        .into_iter()
        .map(|(file, word, flag, step)| {
            let what = format!("{word} namespace");
            let what = what.as_str();
            let fix = format!("a kernel built with CONFIG_{}_NS", file.to_uppercase());
            let used = match step {
                Some(step) => format!("step {step}"),
                None => "Docker (no step of lab uses it)".to_string(),
            };
            if !Path::new("/proc/self/ns").join(file).exists() {
                return missing(what, format!("not in this kernel ({used} needs it)"), fix);
            }
            if !root {
                return found(what, format!("in the kernel, for {used}"));
            }
            match in_child(|| nix::sched::unshare(flag).map_err(Into::into)) {
                Ok(()) => found(what, format!("unshare works, for {used}")),
                Err(e) => missing(
                    what,
                    format!("unshare fails: {e} ({used} needs it)"),
                    "check sysctl user.max_*_namespaces and the kernel's lockdown or LSM settings",
                ),
            }
        })
        .collect()
}

/// Step 9 without root needs a user namespace that a user may make: Ubuntu
/// 24.04 lets AppArmor forbid it to programs without a profile that allows it
/// (lab has one: apparmor.rs), Debian's kernels have a switch for it.
fn rootless_userns(root: bool) -> Finding {
    let what = "rootless";
    let read = |f: &str| {
        std::fs::read_to_string(f)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let aa = match apparmor_says(apparmor::decide(&apparmor::Seen::read())) {
        Ok(note) => note,
        Err(blocked) => return blocked,
    };
    let ok = |what: &str, detail: &str| found(what, format!("{detail}{aa}"));
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
        || read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0")
    {
        return Finding {
            what: what.into(),
            state: State::Optional,
            detail: "users may not make user namespaces here: lab step 9 needs sudo".into(),
            fix: Some(
                "sudo sysctl kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000"
                    .into(),
            ),
        };
    }
    if root {
        return ok(
            what,
            "users may make user namespaces: lab step 9 runs without sudo",
        );
    }
    match in_child(|| nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(Into::into)) {
        Ok(()) => ok(
            what,
            "you may make a user namespace: lab step 9 runs without sudo",
        ),
        Err(e) => Finding {
            what: what.into(),
            state: State::Optional,
            detail: format!("you may not make a user namespace ({e}): lab step 9 needs sudo"),
            fix: Some("sudo lab doctor tells more".into()),
        },
    }
}

/// What AppArmor's restriction of user namespaces means for lab step 9 without
/// sudo: the finding when it stops this lab (with what to do, never to turn the
/// restriction off), else what to add to the finding that follows.
fn apparmor_says(r: apparmor::Restriction) -> Result<&'static str, Finding> {
    use apparmor::Restriction::*;
    match r {
        Absent => Ok(""),
        Off => Ok(" (AppArmor does not restrict them here: kernel.apparmor_restrict_unprivileged_userns = 0)"),
        Allowed => Ok(" (AppArmor restricts them here, kernel.apparmor_restrict_unprivileged_userns = 1, and lab runs under its own profile, which allows them)"),
        Blocked { why, fix } => Err(Finding {
            what: "rootless".into(),
            state: State::Optional,
            detail: format!("{}, and {why}: lab step 9 needs sudo until then", apparmor::ON),
            fix: Some(fix),
        }),
    }
}

/// overlayfs, built in or as a module the kernel loads on first mount.
fn overlay() -> Finding {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return found("overlayfs", "in /proc/filesystems, for step 7");
    }
    if kernel_module("overlay") {
        return found(
            "overlayfs",
            "a module, loaded on the first mount, for step 7",
        );
    }
    missing(
        "overlayfs",
        "neither in /proc/filesystems nor a module of this kernel (step 7 needs it)",
        "modprobe overlay (or apt-get install linux-image-$(uname -r))",
    )
}

/// seccomp filters, for step 8: as root, a filter that allows everything is
/// loaded in a child process.
fn seccomp(root: bool) -> Finding {
    let what = "seccomp filters";
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .contains("Seccomp:")
    {
        return missing(
            what,
            "not in this kernel (step 8 needs them)",
            "a kernel built with CONFIG_SECCOMP_FILTER",
        );
    }
    if !root {
        return found(what, "in the kernel, for step 8");
    }
    let allow = [nix::libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    }];
    match in_child(|| crate::sys::load_seccomp(&allow)) {
        Ok(()) => found(what, "a filter loads, for step 8"),
        Err(e) => missing(
            what,
            format!("cannot load one: {e} (step 8 needs it)"),
            "a kernel built with CONFIG_SECCOMP_FILTER",
        ),
    }
}

/// veth and bridge links: as root, made and removed in a network namespace of a
/// child process, which the kernel destroys with the links when the child exits.
fn links(root: bool) -> Finding {
    let what = "veth and bridge";
    if !root {
        // Built-in drivers need not show in /sys/module: only trying tells for sure.
        return Finding {
            what: what.into(),
            state: State::Optional,
            detail: "not tried: making links needs root (step 5 needs them)".into(),
            fix: Some("sudo lab doctor".into()),
        };
    }
    let tried = in_child(|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
        let mut nl = Netlink::open()?;
        nl.add_bridge("doctor0", None)?;
        nl.add_veth("doctor-a", "doctor-b", None, None)?;
        Ok(())
    });
    match tried {
        Ok(()) => found(
            what,
            "made and removed in a throwaway network namespace, for step 5",
        ),
        Err(e) => missing(
            what,
            format!("cannot make them: {e} (step 5 needs them)"),
            "modprobe veth bridge",
        ),
    }
}

fn cgroup_version() -> Finding {
    let what = "cgroups";
    match cgroups::detect() {
        Ok(cgroups::Version::V2) => found(
            what,
            "cgroup v2 at /sys/fs/cgroup with memory, cpu and pids, for step 6",
        ),
        Ok(cgroups::Version::V1) => found(
            what,
            "cgroup v1 hierarchies for memory, cpu, cpuacct and pids, for step 6",
        ),
        // `ip netns exec` mounts a fresh /sys for the namespace, without the
        // cgroup filesystem: the machine has cgroups, this shell does not see them.
        Err(_) if nothing_in("/sys/fs/cgroup") => missing(
            what,
            "/sys/fs/cgroup is empty in this shell: its /sys is not the host's (ip netns exec mounts a fresh one) (step 6 needs the cgroups)",
            "run lab doctor from a shell in the host's mounts, or enter a named network namespace with nsenter --net=/run/netns/NAME, which keeps them",
        ),
        Err(e) => missing(
            what,
            format!("{e:#} (step 6 needs them)"),
            "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2",
        ),
    }
}

/// Whether `dir` is missing or holds nothing.
fn nothing_in(dir: &str) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// Whether this kernel has `name` as a module (modules.dep lists every one).
fn kernel_module(name: &str) -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release);
    let listed = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let path = l.split(':').next().unwrap_or("");
                let base = path.rsplit('/').next().unwrap_or("");
                base.split('.').next() == Some(name)
            })
    };
    listed("modules.dep") || listed("modules.builtin")
}

/// Run `f` in a child process and report how it went; the child's namespaces and
/// everything made in them go with it.
fn in_child(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let (read_end, write_end) = nix::unistd::pipe()?;
    match sys::fork()? {
        ForkResult::Child => {
            drop(read_end);
            let code = match f() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::io::Write::write_all(
                        &mut std::fs::File::from(write_end),
                        format!("{e:#}").as_bytes(),
                    );
                    1
                }
            };
            // Leave without the parent's destructors.
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut why = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(read_end), &mut why);
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                other if why.is_empty() => anyhow::bail!("the trial ended with {other:?}"),
                _ => anyhow::bail!("{why}"),
            }
        }
    }
}

// ── Programs ───────────────────────────────────────────────────────────────────

fn tools() -> Vec<Finding> {
    let mut all = vec![match network::iptables_path() {
        Ok(p) => found("iptables", format!("{}, for step 5's NAT", p.display())),
        Err(_) => missing(
            "iptables",
            "not found (step 5 needs it for NAT and published ports)",
            "apt-get install iptables",
        ),
    }];
    all.push(match which("busybox") {
        Some(p) => found(
            "busybox",
            format!("{}: the default root filesystem is built from it", p.display()),
        ),
        None => Finding {
            what: "busybox".into(),
            state: State::Optional,
            detail: "not found: the default root filesystem is made of host programs and their libraries instead".into(),
            fix: Some("apt-get install busybox-static".into()),
        },
    });
    // What a student types: the commands lab explain prints.
    for (program, package, why) in [
        (
            "unshare",
            "util-linux",
            "to type the commands of lab explain",
        ),
        ("nsenter", "util-linux", "to type what lab exec prints"),
        ("ip", "iproute2", "to type the commands of step 5"),
        (
            "setpriv",
            "util-linux",
            "to type the last line of step 8 (and in the root filesystem)",
        ),
        (
            "bwrap",
            "bubblewrap",
            "to type the last line of step 8 (and in the root filesystem)",
        ),
        (
            "setcap",
            "libcap2-bin",
            "(with getcap) to type step 9's shifted copy, whose file capabilities chown clears",
        ),
    ] {
        all.push(match which(program) {
            Some(p) => found(program, format!("{}, {why}", p.display())),
            None => Finding {
                what: program.into(),
                state: State::Optional,
                detail: format!("not found: lab works without it, but it is needed {why}"),
                fix: Some(format!("apt-get install {package}")),
            },
        });
    }
    all
}

// ── The report ─────────────────────────────────────────────────────────────────

pub fn report(findings: &[Finding]) -> String {
    let mut out = String::from("What this machine has for the workshop:\n\n");
    for f in findings {
        let mark = match f.state {
            State::Ok => format!("{:<7}", "ok").green(),
            State::Optional => format!("{:<7}", "maybe").yellow(),
            State::Missing => format!("{:<7}", "MISSING").red().bold(),
        };
        let _ = writeln!(out, "  {mark} {:<18} {}", f.what, f.detail);
        if let (Some(fix), false) = (&f.fix, f.state == State::Ok) {
            let _ = writeln!(out, "  {:<7} {:<18} fix: {}", "", "", fix.cyan());
        }
    }
    let missing = findings
        .iter()
        .filter(|f| f.state == State::Missing)
        .count();
    let _ = writeln!(
        out,
        "\n{}",
        match missing {
            0 => "Nothing missing: every step can run.".to_string(),
            n => format!("{n} missing: run the fix lines above, then sudo lab doctor again."),
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::{apparmor::Restriction, apparmor_says, State};

    #[test]
    fn apparmor_stopping_lab_is_a_finding_with_what_to_do() {
        let f = apparmor_says(Restriction::Blocked {
            why: "lab's profile is not installed".into(),
            fix: "sudo ./lab.sh in lab's repository".into(),
        })
        .err()
        .unwrap();
        assert!(f.state == State::Optional);
        assert_eq!(f.detail, "AppArmor keeps users from making user namespaces here (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 24.04's default), and lab's profile is not installed: lab step 9 needs sudo until then");
        assert_eq!(f.fix.as_deref(), Some("sudo ./lab.sh in lab's repository"));
        // Otherwise the finding that follows says whether the restriction is on.
        let note = |r| apparmor_says(r).ok().unwrap();
        assert_eq!(note(Restriction::Absent), "");
        assert!(note(Restriction::Off).contains("= 0"));
        assert!(note(Restriction::Allowed).contains("= 1, and lab runs under its own profile"));
    }

    #[test]
    fn namespaces_come_in_the_order_of_the_steps_that_make_them() {
        let kinds: Vec<(&str, Option<u8>)> = super::namespace_kinds()
            .iter()
            .map(|k| (k.1, k.3))
            .collect();
        assert_eq!(
            kinds,
            [
                ("mount", Some(2)),
                ("pid", Some(3)),
                ("uts", Some(4)),
                ("ipc", Some(4)),
                ("network", Some(5)),
                ("cgroup", Some(6)),
                ("user", Some(9)),
            ]
        );
    }
}
