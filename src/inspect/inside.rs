//! What `lab inspect` learns from inside the container: its PID 1 and
//! whether it reaps, its hostname, and what a few telling system calls get.

use crate::engine::check::{self, Outcome, Probe};
use crate::sys::{try_harmless, Harmless};

/// The system calls the table tries, each with arguments that make it do
/// nothing (sys::Harmless): what a seccomp profile and the capabilities let
/// through shows in what they answer.
const TELLING: [(&str, Harmless); 10] = [
    ("mount", Harmless::Mount),
    ("unshare(CLONE_NEWUSER)", Harmless::UnshareUser),
    ("clone3", Harmless::Clone3),
    ("keyctl", Harmless::Keyctl),
    ("bpf", Harmless::Bpf),
    ("perf_event_open", Harmless::PerfEventOpen),
    ("io_uring_setup", Harmless::IoUringSetup),
    ("userfaultfd", Harmless::Userfaultfd),
    ("open_by_handle_at", Harmless::OpenByHandleAt),
    ("finit_module", Harmless::FinitModule),
];

/// In a probe with the container's restrictions: each call and its answer.
/// (The probe sends back an outcome's words alone: the answers go as
/// "NAME: ANSWER; ...", read again by [`calls_of`].)
pub(super) fn telling_calls(_p: &Probe) -> Outcome {
    let answers: Vec<String> = TELLING
        .iter()
        .map(|(name, call)| format!("{name}: {}", answer(try_harmless(*call))))
        .collect();
    Outcome::Pass(answers.join("; "))
}

/// The calls and their answers, from what [`telling_calls`] sent back.
pub(super) fn calls_of(detail: &str) -> Vec<super::Call> {
    detail
        .split("; ")
        .filter_map(|c| {
            let (name, answer) = c.split_once(": ")?;
            let name = TELLING.iter().find(|(n, _)| *n == name)?.0;
            Some(super::Call {
                name,
                answer: answer.to_string(),
            })
        })
        .collect()
}

fn answer(e: nix::errno::Errno) -> String {
    use nix::errno::Errno;
    match e {
        Errno::EPERM => "EPERM (refused)".into(),
        Errno::ENOSYS => "ENOSYS (refused as unknown)".into(),
        Errno::EACCES => "EACCES (refused)".into(),
        Errno::UnknownErrno => "allowed".into(),
        other => format!("allowed (the kernel then refused its arguments: {other:?})"),
    }
}

/// Small inits that runtimes put first to reap orphans (`docker run --init`
/// is tini, as docker-init; Podman's is catatonit), and the big ones.
const INITS: [&str; 8] = [
    "docker-init",
    "tini",
    "catatonit",
    "dumb-init",
    "lab-init",
    "systemd",
    "init",
    "runit",
];

/// Whether PID 1 can reap orphans, as its signal masks say.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Reaps {
    /// A known init, or SIGCHLD ignored (the kernel reaps for it).
    Yes,
    /// SIGCHLD caught or blocked: an init does that, and so does a program
    /// that waits only for its own children.
    Maybe,
    /// Neither: orphans stay zombies.
    No,
}

/// PID 1 of the container's pid namespace.
pub(super) struct First {
    pub name: String,
    pub host_pid: u32,
    pub reaps: Reaps,
    /// Why, in words.
    pub why: &'static str,
}

impl First {
    pub fn fact(&self) -> String {
        format!(
            "PID 1 is {} (host PID {}): {}",
            self.name, self.host_pid, self.why
        )
    }
    pub fn summary(&self) -> String {
        let reaps = match self.reaps {
            Reaps::Yes => "reaps orphans",
            Reaps::Maybe => "may reap orphans",
            Reaps::No => "reaps no orphans",
        };
        format!("{}, {reaps}", self.name)
    }
}

/// PID 1 of its pid namespace and whether it can reap orphans: a known init,
/// or a process that catches SIGCHLD (an init waits in its handler), blocks it
/// to wait for it (tini) or ignores it (then the kernel reaps for it) can; a
/// program like `sleep`, that does none of these, cannot.
pub(super) fn first_process(pid: i32) -> Option<First> {
    let own = check::ns_inode(&pid.to_string(), "pid");
    let first = check::pids_in(std::path::Path::new("/proc"))
        .into_iter()
        .find(|p| {
            check::ns_inode(&p.to_string(), "pid") == own && nspid_of(*p as i32).last() == Some(&1)
        })?;
    let status = std::fs::read_to_string(format!("/proc/{first}/status")).unwrap_or_default();
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let chld = 1u64 << (nix::libc::SIGCHLD - 1);
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let (reaps, why) = if INITS.contains(&name.as_str()) {
        (Reaps::Yes, "an init: it reaps orphans")
    } else if mask("SigCgt:") & chld != 0 {
        (Reaps::Maybe, "it catches SIGCHLD: it may reap orphans (an init does; a program that waits only for its own children does not)")
    } else if mask("SigBlk:") & chld != 0 {
        (
            Reaps::Maybe,
            "it blocks SIGCHLD to wait for it (as tini does): it may reap orphans",
        )
    } else if mask("SigIgn:") & chld != 0 {
        (
            Reaps::Yes,
            "it ignores SIGCHLD: the kernel reaps its orphans",
        )
    } else {
        (
            Reaps::No,
            "it neither catches nor ignores SIGCHLD: orphans stay zombies",
        )
    };
    Some(First {
        name,
        host_pid: first,
        reaps,
        why,
    })
}

fn nspid_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn nspid(pid: i32) -> String {
    let n = nspid_of(pid);
    match n.last() {
        Some(inside) if n.len() > 1 => format!("host PID {pid} is PID {inside} inside"),
        _ => format!("PID {pid} is the same number inside"),
    }
}

/// The hostname of the uts namespace of `pid`, read by a thread that joins it
/// (a uts namespace is a thread's own to join: the rest of lab stays out).
pub(super) fn hostname_of(pid: i32) -> Option<String> {
    let file = std::fs::File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    std::thread::spawn(move || {
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWUTS).ok()?;
        Some(check::host_hostname())
    })
    .join()
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calls_sent_back_are_read_again_in_their_order() {
        let calls = calls_of("mount: EPERM (refused); clone3: allowed; nosuch: EPERM");
        let read: Vec<(&str, &str)> = calls.iter().map(|c| (c.name, c.answer.as_str())).collect();
        assert_eq!(read, [("mount", "EPERM (refused)"), ("clone3", "allowed")]);
    }

    #[test]
    fn pid_1_is_said_in_a_fact_and_a_summary() {
        let first = First {
            name: "sleep".into(),
            host_pid: 42,
            reaps: Reaps::No,
            why: "it neither catches nor ignores SIGCHLD: orphans stay zombies",
        };
        assert_eq!(first.summary(), "sleep, reaps no orphans");
        assert!(first
            .fact()
            .starts_with("PID 1 is sleep (host PID 42): it neither"));
    }
}
