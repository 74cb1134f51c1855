//! Layer 3: a pid namespace with its own /proc.
//!
//! A pid namespace numbers processes afresh: the first process in it is PID 1, and
//! it sees only the processes of its namespace (and of namespaces below it). The
//! host still sees them too, under other numbers. `/proc` shows the processes of
//! the pid namespace that mounted it, so the container needs a new one: the host's
//! /proc would still list every host process.
//!
//! PID 1 is special. Orphaned processes are handed to it, and it must reap them
//! when they exit, or they stay as zombies; and the kernel delivers it no signal it
//! has no handler for, so a plain `kill` does not stop it. A shell is poor at both.
//! `lab step` therefore keeps its own small init as PID 1 (container.rs), which
//! reaps every child and passes SIGTERM and SIGHUP on, and runs the command as
//! its child, as `docker run --init` does. Typed by hand, the shell you exec is PID 1.

use super::Layer;
use crate::engine::check::{ns_inode, pids_in, Check, Kind, Outcome, Probe};
use crate::engine::plan::{Action, Command, Namespace, Phase, RunContext, Spec};
use crate::sys;
use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LAYER: Layer = Layer {
    number: 3,
    title: "pid namespace and /proc",
    idea: "the container gets its own process numbers: its first process is PID 1 and it sees only its own processes",
    look: "ps: lab-init is PID 1, this shell is PID 2, and no process of the host is there.",
    elsewhere: "`--pid host` (Docker, Podman) shares the host's process numbers. PID 1 reaps orphans only when it is an init (`docker run --init`, `podman run --init`), not a program such as `sleep`. Compare `sudo readlink /proc/PID/ns/pid` with `readlink /proc/self/ns/pid`; `ps -o pid,stat,comm` inside shows zombies as Z.",
    namespaces: &[Namespace::Pid],
    commands,
    note,
    checks,
    hooks: &PidHooks,
};

fn note(_step: u8) -> Option<&'static str> {
    Some(
        "Typed by hand, the shell you exec becomes PID 1, which must reap orphans and gets no signal it has no handler for. lab step keeps a tiny init as PID 1 (lab-init in ps) that reaps orphans and passes SIGTERM and SIGHUP on, and runs your command as its child, PID 2.",
    )
}

// ── The commands ───────────────────────────────────────────────────────────────

fn commands(spec: &Spec) -> Result<Vec<Command>> {
    if spec.in_user_namespace() {
        // In a user namespace the kernel mounts a new proc only where a proc
        // mount is already fully in view in the mount namespace (so that the new
        // one shows nothing the old one hid): before the host's tree, with its
        // /proc, is detached.
        return Ok(vec![LAYER.at(
            Phase::FromOldRoot,
            "a fresh /proc, mounted before the host's tree is detached: in a user namespace the kernel wants a proc already in view in the mount namespace, the host's (on the host's tree, stacked on /), to allow it",
            MountProc("/proc".into()),
        )]);
    }
    Ok(vec![LAYER.inside(
        "a fresh /proc: it lists the processes of the pid namespace that mounts it",
        MountProc("/proc".into()),
    )])
}

/// `mount -t proc -o nosuid,nodev,noexec proc DIR`
struct MountProc(PathBuf);

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for MountProc {
    fn shell(&self) -> String {
        format!(
            "mount -t proc -o nosuid,nodev,noexec proc {}",
            crate::engine::plan::quote_path(&self.0)
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // As runc: made where the root filesystem has none.
        let at = super::mount::mount_point(&self.0)?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("proc"), &at, Some("proc"), flags, None::<&str>)
            .with_context(|| format!("mount(\"proc\", \"{}\", \"proc\")", self.0.display()))
    }
}

// ── The checks ─────────────────────────────────────────────────────────────────

fn checks(_step: u8) -> Vec<Check> {
    vec![
        LAYER.check(
            "the container's first process is PID 1",
            "The container shares the host's pid namespace: unshare --pid needs --fork, because only the next child of the caller enters it. Compare `ls -l /proc/self/ns/pid` inside and on the host.",
            Kind::Host(first_process_is_pid1),
        ),
        LAYER.check(
            "/proc is the container's own",
            "/proc is missing or is the host's: mount a new one inside with `mount -t proc proc /proc`.",
            Kind::Inside(proc_is_own),
        ),
        LAYER.check(
            "host processes are invisible",
            "Host processes show in /proc: /proc was not mounted fresh inside the new pid namespace. Try `ps` inside.",
            Kind::Inside(host_processes_invisible),
        ),
        LAYER.check(
            "PID 1 reaps orphaned processes",
            "An orphan stayed a zombie: PID 1 does not wait for children it did not start (a shell exec'd as PID 1, or `sleep`). `ps -o pid,stat,comm` inside shows Z.",
            Kind::Inside(orphans_are_reaped),
        ),
        // With its own /proc, root inside sees /proc/sys: still the host's
        // settings (escapes.rs).
        super::escapes::kernel_settings(),
    ]
}

/// What the checks compare with: the host's pid namespace, seen from lab.
struct PidHooks;

struct HostPids {
    /// lab's own pid namespace (the host's) and how many processes it shows.
    namespace: u64,
    processes: usize,
}

impl super::Hooks for PidHooks {
    fn probe_data(&self, _p: &Probe) -> Result<Option<super::Gathered>> {
        super::gathered(Ok(HostPids {
            namespace: ns_inode("self", "pid").unwrap_or(0),
            processes: crate::engine::check::count_processes(Path::new("/proc")),
        }))
    }
}

fn host(p: &Probe) -> Result<&HostPids, Outcome> {
    p.data(LAYER.number)
}

fn nspid(pid: &str) -> Option<Vec<String>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    Some(line.split_whitespace().skip(1).map(String::from).collect())
}

fn first_process_is_pid1(p: &Probe) -> Outcome {
    let host = match host(p) {
        Ok(h) => h,
        Err(o) => return o,
    };
    let target = p.target.to_string();
    let Some(ns) = ns_inode(&target, "pid") else {
        return Outcome::Fail(format!("process {target} is gone"));
    };
    if ns == host.namespace {
        return Outcome::Fail("the container's processes are in the host's pid namespace".into());
    }
    for pid in pids_in(Path::new("/proc")) {
        let pid = pid.to_string();
        if ns_inode(&pid, "pid") != Some(ns) {
            continue;
        }
        if let Some(ids) = nspid(&pid) {
            if ids.last().map(String::as_str) == Some("1") {
                return Outcome::Pass(format!(
                    "host PID {pid} is PID 1 inside (NSpid: {})",
                    ids.join(" ")
                ));
            }
        }
    }
    Outcome::Fail("no process of the container's pid namespace is PID 1 in it".into())
}

fn proc_is_own(p: &Probe) -> Outcome {
    let me = std::process::id().to_string();
    // The host's /proc passes the test below as well: in the host's pid
    // namespace the probe's number is the same in both.
    if let Ok(h) = host(p) {
        if ns_inode("self", "pid") == Some(h.namespace) {
            return Outcome::Fail(
                "the container is in the host's pid namespace: its /proc is the host's".into(),
            );
        }
    }
    match std::fs::read_link("/proc/self") {
        Ok(link) => Outcome::from(
            link.to_string_lossy() == me,
            format!(
                "/proc/self is {} and the probe is PID {me} inside",
                link.display()
            ),
        ),
        Err(e) => Outcome::Fail(format!("no /proc inside: readlink /proc/self: {e}")),
    }
}

fn host_processes_invisible(p: &Probe) -> Outcome {
    let host = match host(p) {
        Ok(h) => h,
        Err(o) => return o,
    };
    let Some(own) = ns_inode("self", "pid") else {
        return Outcome::Fail("no /proc inside".into());
    };
    let pids = pids_in(Path::new("/proc"));
    let foreign = pids
        .iter()
        .filter(|pid| ns_inode(&pid.to_string(), "pid").is_some_and(|ns| ns != own))
        .count();
    Outcome::from(
        foreign == 0 && !pids.is_empty() && pids.len() < host.processes,
        format!(
            "/proc inside lists {} processes ({} from other pid namespaces); the host has {}",
            pids.len(),
            foreign,
            host.processes
        ),
    )
}

/// Make an orphan: a child that starts a grandchild and exits at once. The
/// grandchild is handed to PID 1; when it exits, only PID 1 can reap it.
/// If process `pid` is blocked reading the terminal on its standard input (a
/// shell at its prompt), its name.
fn waits_at_a_terminal(pid: &str) -> Option<String> {
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).ok()?;
    let tty = stdin.to_string_lossy();
    if !(tty.starts_with("/dev/pts/") || tty.starts_with("/dev/tty") || tty == "/dev/console") {
        return None;
    }
    // Where in the kernel it sleeps: waiting for input (poll, select, a tty read).
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    let waiting = ["poll", "select", "n_tty_read", "wait_woken"]
        .iter()
        .any(|w| wchan.contains(w));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    // lab's own init waits too while the checks run (for lab to let the command
    // start), on the same terminal; it reaps whenever an orphan comes.
    let comm = comm.trim();
    (waiting && comm != crate::engine::init::NAME).then(|| comm.to_string())
}

fn orphans_are_reaped(p: &Probe) -> Outcome {
    // Without this pid namespace's own /proc, "gone from /proc" would prove nothing.
    if let o @ Outcome::Fail(_) = proc_is_own(p) {
        return o;
    }
    // A shell typed by hand as PID 1 reaps when it runs the next command, not
    // while it waits at its prompt: an orphan made now would stay a zombie in the
    // student's container until then. No fault, and nothing to prove now.
    if let Some(shell) = waits_at_a_terminal("1") {
        return Outcome::Skip(format!(
            "PID 1 ({shell}) waits for you at its prompt: a shell reaps orphans when it runs your next command, not while it waits, so lab makes no orphan here (it would stay a zombie in your container until you press Enter). A PID 1 that never reaps (sleep, or a program that never waits) fails this check; lab step's lab-init reaps at once"
        ));
    }
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("pipe: {e}")),
    };
    let child = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(rd);
            let parent = nix::unistd::getpid();
            if let Ok(ForkResult::Parent { child: orphan }) = sys::fork() {
                let _ = std::fs::File::from(wr).write_all(orphan.to_string().as_bytes());
                std::process::exit(0);
            }
            // The orphan: wait until its parent is gone and it has been handed to
            // PID 1, then exit and become a zombie that only PID 1 can reap.
            drop(wr);
            let start = Instant::now();
            while nix::unistd::getppid() == parent && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    drop(wr);
    let mut pid = String::new();
    let _ = std::fs::File::from(rd).read_to_string(&mut pid);
    let _ = waitpid(child, None);
    if pid.is_empty() {
        return Outcome::Fail("could not start the orphan".into());
    }
    // Poll: how soon PID 1 reaps it depends on scheduling, so the detail says
    // only what is certain (it is gone), which keeps the output reproducible.
    let start = Instant::now();
    let mut state = String::from("?");
    while start.elapsed() < Duration::from_secs(3) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return Outcome::Pass(format!("orphan PID {pid} exited and was reaped")),
            Ok(stat) => {
                // The field after "(comm)": R running, S sleeping, Z zombie, ...
                if let Some(s) = stat
                    .rsplit(')')
                    .next()
                    .and_then(|s| s.split_whitespace().next())
                {
                    state = s.to_string();
                }
            }
        }
        // Fine-grained: a PID 1 that reaps does so within a millisecond or two.
        std::thread::sleep(Duration::from_millis(1));
    }
    Outcome::Fail(if state == "Z" {
        format!("orphan PID {pid} is still a zombie after 3 s: PID 1 does not reap it (the zombie stays until the container ends: it holds no memory, only its number)")
    } else {
        format!("orphan PID {pid} is still there after 3 s, in state {state}")
    })
}
