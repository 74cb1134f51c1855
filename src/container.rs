//! Running a step: the processes, and how they talk.
//!
//! ```text
//! lab (host)                              child (in the new namespaces)
//! ──────────                              ─────────────────────────────
//! take a name, note the host's state
//! clone(CLONE_NEW...)  ─────────────────▶ waits for the host side
//! host commands that need its PID
//! "connected" ──────────────────────────▶ applies the Inside commands
//!                      ◀── "ok" ───────── (or "error ...", then exits)
//! runs the checks (a probe joins it)      reaps children while it waits
//! "go" (or "stop" for lab verify) ──────▶ forks the command and is its init:
//! waits; passes SIGTERM/SIGHUP on          reaps every child, passes signals on,
//!                                          exits with the command's status
//! removes what it made, checks the host
//! ```
//!
//! With a pid namespace the child is PID 1 of it, and when it exits the kernel
//! kills whatever is left inside. Everything lab makes on the host is recorded in
//! its state directory first (state.rs), and removed on every way out: normal exit,
//! error, Ctrl-C, a closed terminal; after `kill -9`, by the next run or `lab clean`.

use crate::check::{self, Before, Report};
use crate::plan::{Phase, Plan, Spec};
use crate::render::{self, Item, Printer};
use crate::state::{fault_point, Claim};
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use colored::Colorize;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `lab step`: print everything, then run the command; `checks: false` skips the
    /// checks (`--no-checks`, to time the container itself); `walk` waits for Enter
    /// before each command (`--walk`).
    Step { checks: bool, walk: bool },
    /// `lab verify`: run the checks, then stop; print nothing (main prints the checks).
    Verify,
}

/// How a run ended.
pub struct Finished {
    pub reports: Vec<Report>,
    /// The command's exit status (128+N when killed by signal N).
    pub exit_code: i32,
}

/// lab was stopped by a signal before the command started.
#[derive(Debug)]
pub struct Interrupted(pub Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "interrupted by {}: the container was removed", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Build the container of `spec`, check it, run its command, tear it down.
pub fn run(mut spec: Spec, name: Option<&str>, mode: Mode) -> Result<Finished> {
    mark("");
    // What the kernel lacks is said before anything is made.
    crate::layers::preflight(&spec)?;
    mark("preflight");
    let claim = Claim::take(name)?;
    spec.name = claim.name.clone();
    fault_point("the container's state directory")?;
    // What the container takes from what containers share (its address), written
    // in its state before anything is made.
    for layer in crate::layers::up_to(spec.step) {
        layer.hooks.reserve(&mut spec, &claim.dir)?;
    }
    mark("state claimed, address reserved");
    let plan = Plan::new(spec);
    mark("planned");
    let loud = matches!(mode, Mode::Step { .. });
    let walk = matches!(mode, Mode::Step { walk: true, .. });
    let checks = !matches!(mode, Mode::Step { checks: false, .. });
    // (Only for the checks: it runs iptables-save, among others.)
    let before = checks.then(|| Before::take(plan.spec.step, &plan.spec.name));
    sys::catch_terminating_signals()?;

    let say = |text: &str| {
        if loud {
            render::out(text);
        }
    };
    let root = if plan.spec.new_root() == plan.spec.rootfs {
        format!("root filesystem {}", plan.spec.rootfs.display())
    } else {
        let layers: Vec<String> = plan
            .spec
            .image
            .iter()
            .map(|l| l.display().to_string())
            .collect();
        format!("image layers (bottom first) {}", layers.join(", "))
    };
    say(&format!(
        "{}\ncontainer {} · {root}\n",
        render::step_title(&plan).bold(),
        plan.spec.name,
    ));
    let mut printer = Printer::default();
    let sequence = plan.sequence();
    let (before_clone, connect, inside, run, teardown) = split(&sequence);
    // Declared before the child's guard, so dropped after it: on every way out, the
    // container is gone before its host side is taken down.
    let mut undo = Undo {
        items: teardown,
        next: 0,
    };
    on_host(before_clone, &plan, &mut printer, (loud, walk))?;
    mark("host side made");

    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (connected_r, connected_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let parent = Pid::this();
    let child = match sys::clone_into(plan.clone_flags())? {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            drop(connected_w);
            let pipes = ChildPipes {
                connected: connected_r,
                ready: ready_w,
                go: go_r,
            };
            let code = child_main(&plan, inside, parent, printer, (loud, walk), pipes);
            // Leave without the parent's destructors: the claim belongs to lab.
            std::process::exit(code);
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(go_r);
    drop(connected_r);
    let mut guard = ChildGuard {
        pid: child,
        reaped: false,
    };
    claim.record(child, plan.spec.step);
    fault_point("the container's first process")?;
    // The host's side of what needs the child's PID, before the child goes on.
    on_host(connect, &plan, &mut printer, (loud, walk))?;
    File::from(connected_w)
        .write_all(b"c")
        .context("telling the container to go on")?;

    let answer = read_answer(ready_r)?;
    if let Some(message) = answer.strip_prefix("error\t") {
        guard.wait();
        bail!("{}", message.replace('\t', "\n"));
    }
    if answer != "ok" {
        guard.wait();
        bail!("the container's first process died during setup");
    }
    fault_point("the container set up")?;
    mark("container set up");

    let mut reports = if checks {
        let name = Some(plan.spec.name.clone());
        check::run(plan.spec.step, child, &plan.spec.new_root(), name)?
    } else {
        vec![]
    };
    say(&render::reports("Checks", &reports));
    if let Some(signal) = sys::take_signal() {
        return Err(Interrupted(signal).into());
    }

    let mut go = File::from(go_w);
    let exit_code = if loud {
        for item in run {
            say(&printer.item(&plan, item));
        }
        if plan.spec.command == [Spec::DEFAULT_COMMAND]
            && std::io::IsTerminal::is_terminal(&std::io::stdin())
        {
            outln!(
                "\nYou are inside container {} (step {}). Look around: hostname, ps, ls /, cat /proc/mounts.\nType exit to leave; lab then removes the container.",
                plan.spec.name, plan.spec.step
            );
        }
        go.write_all(b"g").context("starting the command")?;
        drop(go);
        guard.wait_forwarding()
    } else {
        go.write_all(b"s").context("stopping the container")?;
        drop(go);
        guard.wait()
    };

    drop(guard);
    mark("container exited");
    for item in teardown {
        say(&printer.item(&plan, item));
    }
    undo.run()?;
    drop(claim);
    mark("torn down");
    let after = match before {
        Some(before) => check::after_exit(plan.spec.step, &before.now()),
        None => vec![],
    };
    say(&render::reports(
        &format!("After exit (container {} is gone)", plan.spec.name),
        &after,
    ));
    reports.extend(after);
    Ok(Finished { reports, exit_code })
}

/// The plan's sequence in five: what lab does before the clone (notes, host
/// commands, unshare), the host commands that need the child's PID, what the child
/// applies inside (with the notes that follow a layer), the line that runs the
/// command, and the teardown after exit.
type Parts<'a, 'p> = (
    &'a [Item<'p>],
    &'a [Item<'p>],
    &'a [Item<'p>],
    &'a [Item<'p>],
    &'a [Item<'p>],
);

fn split<'a, 'p>(seq: &'a [Item<'p>]) -> Parts<'a, 'p> {
    let phase = |i: &Item| match i {
        Item::Command(c) => Some(c.phase),
        Item::Note(..) | Item::Unshare(_) => None,
    };
    let first = |p: Phase| {
        seq.iter()
            .position(|i| phase(i) >= Some(p))
            .unwrap_or(seq.len())
    };
    let (connect, inside, run, teardown) = (
        first(Phase::Connect),
        first(Phase::Enter),
        first(Phase::Run),
        first(Phase::Teardown),
    );
    (
        &seq[..connect],
        &seq[connect..inside],
        &seq[inside..run],
        &seq[run..teardown],
        &seq[teardown..],
    )
}

/// Print and apply commands on the host side, one by one (with `--walk`, each
/// after Enter).
fn on_host(
    items: &[Item],
    plan: &Plan,
    printer: &mut Printer,
    (loud, walk): (bool, bool),
) -> Result<()> {
    for item in items {
        if loud {
            render::out(&printer.item(plan, item));
        }
        if let Item::Command(c) = item {
            if walk {
                wait_for_enter()?;
            }
            timed(c).map_err(|e| failed(c, e))?;
            fault_point(&c.action.shell())?;
        }
    }
    Ok(())
}

/// The teardown commands, run once: after the container exits, or on the way out
/// of an error or a panic (then quietly, each even if one before it failed).
struct Undo<'a, 'p> {
    items: &'a [Item<'p>],
    /// The first command not yet run: a panic halfway resumes from here.
    next: usize,
}

impl Undo<'_, '_> {
    /// Every command runs, even after one failed: one leftover is better than
    /// all of them. Returns the first error.
    fn run(&mut self) -> Result<()> {
        let mut first = None;
        while let Some(item) = self.items.get(self.next) {
            self.next += 1;
            if let Item::Command(c) = item {
                let done = timed(c).map_err(|e| failed(c, e));
                if let Err(e) = done.and_then(|()| fault_point(&c.action.shell())) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Undo<'_, '_> {
    fn drop(&mut self) {
        while let Some(item) = self.items.get(self.next) {
            self.next += 1;
            if let Item::Command(c) = item {
                let _ = c.action.apply();
            }
        }
    }
}

/// Apply a command. With `LAB_TIMINGS=1` in the environment, also say on stderr
/// how long it took: where the time of a step goes (the README's Benchmark).
fn timed(c: &crate::plan::Command) -> Result<()> {
    if std::env::var_os("LAB_TIMINGS").is_none() {
        return c.action.apply();
    }
    let start = std::time::Instant::now();
    let done = c.action.apply();
    errln!(
        "lab timing: {:7.3} ms  {}",
        start.elapsed().as_secs_f64() * 1000.0,
        c.action.shell()
    );
    done
}

/// With `LAB_TIMINGS=1`: say how long the step has taken so far, at a milestone
/// (the first call, with no milestone, starts the clock).
fn mark(milestone: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    if !milestone.is_empty() && std::env::var_os("LAB_TIMINGS").is_some() {
        errln!(
            "lab timing: {:7.3} ms since the start: {milestone}",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// A command that failed, said with the command and a hint for the student.
fn failed(c: &crate::plan::Command, e: anyhow::Error) -> anyhow::Error {
    let hint = hint_for(&e).map(|h| format!("\n{h}")).unwrap_or_default();
    anyhow!("`{}` failed: {e:#}{hint}", c.action.shell())
}

/// `--walk`: wait for Enter before a command. Read byte by byte from standard
/// input, without a buffer (lab and the container's first process take turns on
/// it), and with the raw read(2), which returns on Ctrl-C where Rust's line
/// reading would retry: lab then tears down as at any other moment.
fn wait_for_enter() -> Result<()> {
    render::out(&format!(
        "    {}",
        "[--walk] press Enter to run it, Ctrl-C to stop and remove everything ".bold()
    ));
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(std::io::stdin(), &mut byte) {
            Ok(0) => bail!("--walk: standard input was closed before the step was done"),
            Ok(_) if byte[0] == b'\n' => {
                // A terminal echoes the Enter; from a pipe, end the line here.
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    render::out("\n");
                }
                return Ok(());
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {
                if let Some(signal) = sys::take_signal() {
                    return Err(Interrupted(signal).into());
                }
            }
            Err(e) => return Err(e).context("--walk: reading standard input"),
        }
    }
}

/// The first line the child sends, read so that Ctrl-C still gets through.
fn read_answer(fd: OwnedFd) -> Result<String> {
    let mut file = File::from(fd);
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match file.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                if let Some(signal) = sys::take_signal() {
                    return Err(Interrupted(signal).into());
                }
            }
            Err(e) => return Err(e).context("reading from the container"),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The container's first process, killed if lab leaves early.
struct ChildGuard {
    pid: Pid,
    reaped: bool,
}

impl ChildGuard {
    /// Wait for the child; return its exit status.
    fn wait(&mut self) -> i32 {
        self.wait_with(|_| {})
    }

    /// Wait, passing SIGTERM and SIGHUP on to the child. Ctrl-C (SIGINT) is not
    /// passed on: the terminal already sends it to the command.
    fn wait_forwarding(&mut self) -> i32 {
        let pid = self.pid;
        self.wait_with(move |sig| {
            if matches!(sig, Signal::SIGTERM | Signal::SIGHUP) {
                let _ = kill(pid, sig);
            }
        })
    }

    fn wait_with(&mut self, mut on_signal: impl FnMut(Signal)) -> i32 {
        loop {
            match waitpid(self.pid, None) {
                Ok(status) => {
                    self.reaped = true;
                    return exit_code(status);
                }
                Err(Errno::EINTR) => {
                    if let Some(sig) = sys::take_signal() {
                        on_signal(sig);
                    }
                }
                Err(_) => {
                    self.reaped = true;
                    return 1;
                }
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 1,
    }
}

// ── The child: the container's first process ─────────────────────────────────

/// The child's ends of its three pipes with lab.
struct ChildPipes {
    /// lab has done the host side that needed the child's PID.
    connected: OwnedFd,
    /// "ok" or "error ..." once the inside commands are applied.
    ready: OwnedFd,
    /// "g": run the command, "s": stop.
    go: OwnedFd,
}

fn child_main(
    plan: &Plan,
    inside: &[Item],
    parent: Pid,
    mut printer: Printer,
    (loud, walk): (bool, bool),
    pipes: ChildPipes,
) -> i32 {
    let ChildPipes {
        connected,
        ready,
        go,
    } = pipes;
    let mut ready = File::from(ready);
    // Die with lab: if lab is killed, the container must not live on without it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != parent && nix::unistd::getpid().as_raw() != 1 {
        return 1;
    }
    let mut byte = [0u8; 1];
    if File::from(connected).read_exact(&mut byte).is_err() {
        return 1;
    }
    for item in inside {
        if loud {
            render::out(&printer.item(plan, item));
        }
        let Item::Command(c) = item else { continue };
        // Ctrl-C here reaches lab too, which then takes the container down.
        if walk {
            if let Err(e) = wait_for_enter() {
                let _ = writeln!(ready, "error\t{e:#}");
                return 1;
            }
        }
        if let Err(e) = timed(c) {
            let hint = hint_for(&e);
            let message = format!(
                "`{}` failed: {e:#}{}",
                c.action.shell(),
                hint.map(|h| format!("\t{h}")).unwrap_or_default()
            );
            let _ = writeln!(ready, "error\t{message}");
            return 1;
        }
    }
    if writeln!(ready, "ok").is_err() {
        return 1;
    }
    drop(ready);
    match wait_for_go(go) {
        Some(true) => {}
        Some(false) => return 0,
        None => return 1,
    }
    init(&plan.spec)
}

/// What usually causes an error, and what to do, for a student.
fn hint_for(e: &anyhow::Error) -> Option<&'static str> {
    let errno = e.chain().find_map(|c| c.downcast_ref::<Errno>().copied())?;
    let text = format!("{e:#}");
    Some(match errno {
        Errno::EPERM | Errno::EACCES => "Permission denied: lab needs root. Run it with sudo.",
        Errno::EINVAL if text.contains("pivot_root") => {
            "pivot_root refuses when the new root is not a mount point (mount --bind it onto itself first) or when / is a shared mount (mount --make-rprivate / first)."
        }
        Errno::ENOENT => "A path is missing in the root filesystem: check --rootfs (it needs /proc, /bin/sh, ...), or rebuild it with sudo lab rootfs.",
        Errno::EBUSY => "Something is still using that mount or directory.",
        _ => return None,
    })
}

/// Wait for lab's word, reaping any child meanwhile (the probe leaves orphans on
/// purpose). `Some(true)`: go, `Some(false)`: stop, `None`: lab is gone.
fn wait_for_go(go: OwnedFd) -> Option<bool> {
    let mut go = File::from(go);
    if sys::wake_on_child_exit().is_err() {
        return None;
    }
    loop {
        reap_all();
        let mut fds = [PollFd::new(go.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(20u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return None,
        }
        let mut byte = [0u8; 1];
        return match go.read(&mut byte) {
            Ok(1) if byte[0] == b'g' => Some(true),
            Ok(1) if byte[0] == b's' => Some(false),
            _ => None,
        };
    }
}

fn reap_all() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// lab's init: start the command, reap every child until the command exits, and
/// pass SIGTERM and SIGHUP on to it. Returns the command's status.
fn init(spec: &Spec) -> i32 {
    let command = match sys::fork() {
        Ok(ForkResult::Child) => exec_inside(&spec.command, spec.step),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            errln!("lab: {e:#}");
            return 1;
        }
    };
    loop {
        match waitpid(None, None) {
            Ok(status) if status.pid() == Some(command) => return exit_code(status),
            Ok(_) => {}
            Err(Errno::EINTR) => {
                if let Some(sig) = sys::take_signal() {
                    if matches!(sig, Signal::SIGTERM | Signal::SIGHUP) {
                        let _ = kill(command, sig);
                    }
                }
            }
            Err(_) => return 1,
        }
    }
}

/// Run `command` in place of this process, already inside the container, with the
/// container's environment (its PATH, a prompt that names the step). `lab exec`
/// uses it too.
pub fn exec_inside(command: &[String], step: u8) -> ! {
    use std::ffi::CString;
    sys::default_signals();
    let result = (|| -> Result<std::convert::Infallible> {
        let args: Vec<CString> = command
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .context("the command holds a NUL byte")?;
        let prompt = format!("[step {step}] \\h:\\w\\$ ");
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
            format!("PS1={prompt}"),
        ];
        if let Ok(term) = std::env::var("TERM") {
            env.push(format!("TERM={term}"));
        }
        let env: Vec<CString> = env
            .into_iter()
            .map(|e| CString::new(e).unwrap_or_default())
            .collect();
        let _ = std::env::set_current_dir("/");
        // PATH of the container, not lab's: the program is looked up inside.
        std::env::set_var(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        nix::unistd::execvpe(&args[0], &args, &env).map_err(|e| anyhow!(e))
    })();
    let Err(e) = result;
    errln!(
        "lab: cannot run {} inside the container: {e:#} (is it in the root filesystem?)",
        render::command(command)
    );
    std::process::exit(127);
}
