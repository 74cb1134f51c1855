//! What `lab inspect` learns from inside the container: its PID 1 and
//! whether it reaps, its hostname, and what a few telling system calls get.

use crate::engine::check::{self, Outcome, Probe};
use crate::sys::{try_harmless, Harmless};

/// The system calls the table tries, each with arguments that make it do
/// nothing (sys::Harmless): what a seccomp profile and the capabilities let
/// through shows in what they answer.
pub(super) const TELLING: [(&str, Harmless); 10] = [
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
pub(super) fn telling_calls(_p: &Probe) -> Outcome {
    let answers: Vec<String> = TELLING
        .iter()
        .map(|(name, call)| format!("{name}: {}", answer(try_harmless(*call))))
        .collect();
    Outcome::Pass(answers.join("; "))
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

/// PID 1 of its pid namespace and whether it can reap orphans: a known init, or a process
/// that catches SIGCHLD (an init waits in its handler), blocks it to wait for
/// it (tini) or ignores it (then the kernel reaps for it) can; a program like
/// `sleep`, that does none of these, cannot.
pub(super) fn first_process(pid: i32) -> String {
    let own = check::ns_inode(&pid.to_string(), "pid");
    let first = check::pids_in(std::path::Path::new("/proc"))
        .into_iter()
        .find(|p| {
            check::ns_inode(&p.to_string(), "pid") == own && nspid_of(*p as i32).last() == Some(&1)
        });
    let Some(first) = first else {
        return "PID 1 of its namespace: not found (the host's init, or it has ended)".into();
    };
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
        .trim();
    let reaps = if INITS.contains(&name) {
        "an init: it reaps orphans"
    } else if mask("SigCgt:") & chld != 0 {
        "it catches SIGCHLD: it may reap orphans (an init does; a program that waits only for its own children does not)"
    } else if mask("SigBlk:") & chld != 0 {
        "it blocks SIGCHLD to wait for it (as tini does): it may reap orphans"
    } else if mask("SigIgn:") & chld != 0 {
        "it ignores SIGCHLD: the kernel reaps its orphans"
    } else {
        "it neither catches nor ignores SIGCHLD: orphans stay zombies"
    };
    format!("PID 1 is {name} (host PID {first}): {reaps}")
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
