//! Running a step: the phases a student sees, and how lab and the container talk.
//!
//! ```text
//! lab (host)                              child (init.rs, in the new namespaces)
//! ──────────                              ──────────────────────────────────────
//! 1 preflight: what the kernel lacks
//! 2 reserve: a name, a state directory,
//!   the layers' share (an address)
//! 3 the host's side (bridge, cgroups,
//!   overlay), each command recorded
//! 4 clone(CLONE_NEW...)  ───────────────▶ waits for the host side
//! 5 host commands that need its PID
//!   "connected" ────────────────────────▶ applies the Inside commands, forks the
//!                      ◀── "ok" ───────── command (PID 2), holds it; or "error ..."
//! 6 the checks (a probe joins it)          reaps children while it waits
//! 7 "go" (or "stop" for lab verify) ────▶ lets the command run and is its init
//!   waits; passes SIGTERM/SIGHUP on        (lab-init): reaps every child, passes
//!                                          signals on, exits with its status
//! 8 teardown, then the after-exit checks
//! ```
//!
//! What goes over the pipes ("connected", "ok", "go", ...) is message.rs's.
//!
//! With a pid namespace the child is PID 1 of it, and when it exits the kernel
//! kills whatever is left inside. Everything lab makes on the host is recorded in
//! its state directory first (state/), and removed on every way out: normal exit,
//! error, Ctrl-C, a closed terminal; after `kill -9`, by the next run or `lab clean`.

use crate::engine::apply::{failed, mark, timed};
use crate::engine::check::{self, Before, Report};
use crate::engine::init;
use crate::engine::message::{Setup, Word};
use crate::engine::plan::{Phase, Plan, RunContext, Spec};
use crate::engine::render::{self, Item, Printer};
use crate::engine::screen::{self, announce};
pub use crate::engine::screen::{Mode, Show};
use crate::engine::state::{fault_point, Claim};
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

/// How a run ended.
pub struct Finished {
    pub reports: Vec<Report>,
    /// The command's exit status (128+N when killed by signal N).
    pub exit_code: i32,
    /// The container's name.
    pub name: String,
    /// What the layers left on the host on purpose, one line each (a layer kept
    /// with --keep), for the summary.
    pub kept: Vec<String>,
}

/// lab was stopped before the command started: by a signal (Ctrl-C is
/// SIGINT), or by the student's "stop" at a --walk prompt (exit status as for
/// Ctrl-C).
#[derive(Debug)]
pub struct Interrupted {
    pub signal: Signal,
    pub chosen: bool,
}

impl Interrupted {
    pub fn by(signal: Signal) -> Interrupted {
        Interrupted {
            signal,
            chosen: false,
        }
    }

    /// "stop" at a --walk prompt.
    pub fn chosen() -> Interrupted {
        Interrupted {
            signal: Signal::SIGINT,
            chosen: true,
        }
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.chosen {
            true => write!(f, "stopped at a --walk prompt: the container was removed"),
            false => write!(
                f,
                "interrupted by {}: the container was removed",
                self.signal
            ),
        }
    }
}

impl std::error::Error for Interrupted {}

/// Build the container of `spec`, check it, run its command, tear it down: the
/// phases a student sees, in order.
pub fn run(mut spec: Spec, name: Option<&str>, mode: Mode) -> Result<Finished> {
    let show = Show::of(mode);
    mark("");
    // Caught from the start: a SIGTERM after the state is claimed must not end
    // lab before it has taken down what it made (one that comes before the
    // command runs is acted on there: run_command).
    sys::catch_terminating_signals()?;
    // 1. What the kernel lacks is said before anything is made.
    crate::engine::curriculum::preflight(&spec)?;
    mark("preflight");
    // 2. A name and a state directory, and what the container takes from what
    //    containers share (its address), written down before anything is made.
    let claim = reserve(&mut spec, name)?;
    mark("state claimed, address reserved");
    let plan = Plan::new(spec)?;
    mark("planned");
    // (Only for the checks: it runs iptables-save, among others.)
    let before = show
        .checks
        .then(|| Before::take(plan.spec.step, &plan.spec.name));
    announce(&plan, show);
    if !show.full {
        show.say(&screen::outline(&plan));
    }
    let mut printer = Printer::default();
    let sequence = plan.sequence();
    let parts = Parts::of(&sequence);
    // Declared before the container's guard, so dropped after it: on every way
    // out, the container is gone before its host side is taken down.
    // What this run learns as its lines apply, for the lines after them.
    let ctx = RunContext::default();
    let mut undo = Undo {
        items: parts.teardown,
        ctx: &ctx,
        next: 0,
    };
    // 3. The host's side: what exists before the container does.
    on_host(parts.before_clone, &plan, (&mut printer, &ctx), show)?;
    mark("host side made");
    // 4. The container's first process, in its new namespaces (init.rs).
    let mut child = clone(
        &plan,
        (parts.join, parts.inside, parts.run),
        (printer.clone(), &ctx),
        show,
    )?;
    claim.record(child.guard.pid, plan.spec.step);
    fault_point("the container's first process")?;
    // 5. The host's part that needs its PID; then it sets itself up inside.
    on_host(parts.connect, &plan, (&mut printer, &ctx), show)?;
    child.set_up()?;
    mark("container set up");
    // 6. The checks, while the command is held.
    let mut reports = if show.checks {
        let name = Some(plan.spec.name.clone());
        check::run(
            plan.spec.step,
            child.guard.pid,
            &plan.spec.new_root(),
            name,
            check::Maker::Lab,
        )?
    } else {
        vec![]
    };
    if show.full {
        show.say(&render::reports("Checks", &reports));
    } else if show.checks {
        show.say(&screen::verdict_before(&reports));
    }
    if let Some(signal) = sys::take_signal() {
        return Err(Interrupted::by(signal).into());
    }
    // 7. The command (lab step), or the end (lab verify).
    let exit_code = run_command(child, &plan, parts.run, &mut printer, show)?;
    mark("container exited");
    // 8. Teardown, then what the host looks like after.
    for item in parts.teardown {
        show.detail(&printer.item(&plan, item));
    }
    undo.run()?;
    drop(claim);
    mark("torn down");
    let after = match before {
        Some(before) => check::after_exit(plan.spec.step, &before.now()),
        None => vec![],
    };
    show.detail(&render::reports(
        &format!("After exit (container {} is gone)", plan.spec.name),
        &after,
    ));
    reports.extend(after);
    let kept = crate::engine::curriculum::active(plan.spec.step)
        .iter()
        .filter_map(|l| l.hooks.kept(&plan.spec))
        .collect();
    Ok(Finished {
        reports,
        exit_code,
        name: plan.spec.name.clone(),
        kept,
    })
}

/// Take a name and a state directory; let each layer reserve what it takes from
/// what containers share.
fn reserve(spec: &mut Spec, name: Option<&str>) -> Result<Claim> {
    let claim = Claim::take(name)?;
    spec.name = claim.name.clone();
    fault_point("the container's state directory")?;
    for layer in crate::engine::curriculum::active(spec.step) {
        layer.hooks.reserve(spec, &claim)?;
    }
    Ok(claim)
}

/// The container's first process, as lab sees it: its guard, and the pipes to it.
struct Child {
    guard: ChildGuard,
    /// lab's word that the host's part is done.
    connected: Option<OwnedFd>,
    /// The child's "ok" or error.
    ready: Option<OwnedFd>,
    /// lab's word to run the command, or to stop.
    go: OwnedFd,
}

/// clone(2) with every namespace flag of the plan; the child runs init::main.
fn clone(
    plan: &Plan,
    inside: (&[Item], &[Item], &[Item]),
    (printer, ctx): (Printer, &RunContext),
    show: Show,
) -> Result<Child> {
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (connected_r, connected_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let parent = Pid::this();
    let cgroup = plan.born_in().map(|dir| (dir, plan.after_join_flags()));
    let (forked, born) = sys::clone_into(plan.clone_flags(), cgroup)?;
    // Known to both processes: the line that would move the child into its
    // cgroup finds its work done.
    ctx.set_born_in_cgroup(born);
    match forked {
        ForkResult::Child => {
            drop((ready_r, go_w, connected_w));
            let pipes = init::Pipes {
                connected: connected_r,
                ready: ready_w,
                go: go_r,
            };
            let code = init::main(plan, inside, parent, (printer, ctx), show, pipes);
            // Leave without the parent's destructors: the claim belongs to lab.
            std::process::exit(code);
        }
        ForkResult::Parent { child } => Ok(Child {
            guard: ChildGuard {
                pid: child,
                reaped: false,
            },
            connected: Some(connected_w),
            ready: Some(ready_r),
            go: go_w,
        }),
    }
}

impl Child {
    /// Tell the child that the host's part is done, and wait until it has set
    /// itself up inside (or say why it could not).
    fn set_up(&mut self) -> Result<()> {
        let connected = self
            .connected
            .take()
            .context("the container was told twice")?;
        File::from(connected)
            .write_all(&Word::Connected.encode())
            .context("telling the container to go on")?;
        let ready = self.ready.take().context("the container answered twice")?;
        let answer = read_answer(ready)?;
        if answer.is_empty() {
            self.guard.wait();
            bail!("the container's first process died during setup");
        }
        match Setup::decode(&answer) {
            Ok(Setup::Ready) => fault_point("the container set up"),
            // Ctrl-C or "stop" at a --walk prompt inside: as Ctrl-C would.
            Ok(Setup::Interrupted) => {
                self.guard.wait();
                Err(Interrupted::by(Signal::SIGINT).into())
            }
            Ok(Setup::Stopped) => {
                self.guard.wait();
                Err(Interrupted::chosen().into())
            }
            // A command failed inside: its hint came as a field of its own.
            Ok(Setup::Failed { error, hint }) => {
                self.guard.wait();
                let error = anyhow!(error);
                Err(match hint {
                    Some(hint) => crate::engine::error::hinted(error, hint),
                    None => error,
                })
            }
            Err(e) => {
                self.guard.wait();
                Err(e)
            }
        }
    }
}

/// `lab step`: let the command run, and wait for it (passing SIGTERM and SIGHUP
/// on); `lab verify`: stop the container. Returns the exit status.
fn run_command(
    mut child: Child,
    plan: &Plan,
    run: &[Item],
    printer: &mut Printer,
    show: Show,
) -> Result<i32> {
    let mut go = File::from(child.go);
    if !show.loud {
        go.write_all(&Word::Stop.encode())
            .context("stopping the container")?;
        drop(go);
        return Ok(child.guard.wait());
    }
    for item in run {
        show.say(&printer.item(plan, item));
    }
    if plan.spec.command == [Spec::DEFAULT_COMMAND]
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        // What to try: the step's own layer says (the last one switched on).
        let look = crate::engine::curriculum::active(plan.spec.step)
            .last()
            .map(|l| l.look)
            .unwrap_or_default();
        outln!(
            "\nYou are inside container {} (step {}). Try: {look}\nType exit to leave; lab then removes the container.",
            plan.spec.name, plan.spec.step
        );
    }
    // From the moment the command may run, SIGTERM and SIGHUP go on to it; one
    // that came during the setup, while nothing passed it on, goes now.
    sys::forward_to(Some(child.guard.pid));
    match sys::take_signal() {
        Some(sig @ (Signal::SIGTERM | Signal::SIGHUP)) => {
            let _ = kill(child.guard.pid, sig);
        }
        Some(sig) => {
            sys::forward_to(None);
            return Err(Interrupted::by(sig).into());
        }
        None => {}
    }
    go.write_all(&Word::Go.encode())
        .context("starting the command")?;
    drop(go);
    let code = child.guard.wait_with(|_| {});
    sys::forward_to(None);
    Ok(code)
}

/// The plan's sequence in five: what lab does before the clone (notes, host
/// commands, unshare), the host commands that need the child's PID, what the child
/// applies inside (with the notes that follow a layer), the line that runs the
/// command, and the teardown after exit.
struct Parts<'a, 'p> {
    before_clone: &'a [Item<'p>],
    /// The lines of Phase::Join: typed in the unshare line, done by the first
    /// process itself before it makes the namespaces that need them.
    join: &'a [Item<'p>],
    connect: &'a [Item<'p>],
    inside: &'a [Item<'p>],
    run: &'a [Item<'p>],
    teardown: &'a [Item<'p>],
}

impl<'a, 'p> Parts<'a, 'p> {
    fn of(seq: &'a [Item<'p>]) -> Parts<'a, 'p> {
        let phase = |i: &Item| match i {
            Item::Command(c) => Some(c.phase),
            Item::Note(..) | Item::Unshare(_) => None,
        };
        let first = |p: Phase| {
            seq.iter()
                .position(|i| phase(i) >= Some(p))
                .unwrap_or(seq.len())
        };
        let (join, connect, inside, run, teardown) = (
            first(Phase::Join),
            first(Phase::Connect),
            first(Phase::Wait),
            first(Phase::Run),
            first(Phase::Teardown),
        );
        Parts {
            before_clone: &seq[..join],
            join: &seq[join..connect],
            connect: &seq[connect..inside],
            inside: &seq[inside..run],
            run: &seq[run..teardown],
            teardown: &seq[teardown..],
        }
    }
}

/// Print and apply commands on the host side, one by one (with `--walk`, each
/// after Enter).
fn on_host(
    items: &[Item],
    plan: &Plan,
    (printer, ctx): (&mut Printer, &RunContext),
    show: Show,
) -> Result<()> {
    for item in items {
        show.detail(&printer.item(plan, item));
        if let Item::Command(c) = item {
            if show.walk {
                crate::engine::walk::before(plan, c)?;
            }
            timed(c, ctx).map_err(|e| failed(c, e))?;
            fault_point(&c.action.shell())?;
        }
    }
    Ok(())
}

/// The teardown commands, run once: after the container exits, or on the way out
/// of an error or a panic (then quietly, each even if one before it failed).
struct Undo<'a, 'p> {
    items: &'a [Item<'p>],
    ctx: &'a RunContext,
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
                let done = timed(c, self.ctx).map_err(|e| failed(c, e));
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
                let _ = c.action.apply(self.ctx);
            }
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
                    return Err(Interrupted::by(signal).into());
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
