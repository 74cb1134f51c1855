//! The container's first process: lab's side inside the container.
//!
//! lab (container.rs) clones this process into the new namespaces. It waits until
//! lab has done the host's part that needs its PID, applies the commands that run
//! inside (the mounts, pivot_root, the hostname, ...) and what the last line
//! takes away (step 8: capabilities, seccomp), forks the student's command
//! as its first child (PID 2 with a pid namespace, held until the checks are
//! done), and says "ok". Then it waits for lab's word: "go" lets the command run,
//! and this process stays on as its init (`lab-init` in `ps`): it reaps every
//! child, passes SIGTERM and SIGHUP on, and exits with the command's status.
//! "stop" (`lab verify`) ends the container without running the command.

use crate::engine::apply::{failed, timed};
use crate::engine::container::{exit_code, Interrupted, Show};
use crate::engine::message::{Setup, Word};
use crate::engine::plan::{Plan, RunAs, RunContext, Spec};
use crate::engine::render::{self, Item, Printer};
use crate::sys;
use anyhow::{anyhow, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// The name lab's init has in `ps` inside the container.
pub const NAME: &str = "lab-init";

/// The child's ends of its three pipes with lab.
pub struct Pipes {
    /// lab has done the host side that needed the child's PID.
    pub connected: OwnedFd,
    /// How the setup went, once the inside commands are applied (Setup).
    pub ready: OwnedFd,
    /// Run the command, or stop (Word::Go, Word::Stop).
    pub go: OwnedFd,
}

/// The container's first process, from clone to exit. Returns its exit status.
pub fn main(
    plan: &Plan,
    (join, inside, run): (&[Item], &[Item], &[Item]),
    parent: Pid,
    (mut printer, ctx): (Printer, &RunContext),
    show: Show,
    pipes: Pipes,
) -> i32 {
    let Pipes {
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
    sys::set_process_name(NAME);
    let mut byte = [0u8; 1];
    if File::from(connected).read_exact(&mut byte).is_err() {
        return 1;
    }
    if let Err(e) = Word::Connected.expect(byte[0]) {
        let _ = Setup::failed(&e).send(&mut ready);
        return 1;
    }
    // The lines of Phase::Join (step 6: into its cgroups; done at birth by
    // clone3 on v2), then the namespaces that take their root from where this
    // process is (a cgroup namespace), unless it was born there with them. Its
    // user is still the host's root here, even in a new user namespace (step 9
    // becomes root inside only later): the host's cgroup files are its to write.
    for item in join {
        let Item::Command(c) = item else { continue };
        if let Err(e) = timed(c, ctx) {
            let _ = Setup::failed(&failed(c, e)).send(&mut ready);
            return 1;
        }
    }
    let after_join = plan.after_join_flags();
    if !ctx.born_in_cgroup() && !after_join.is_empty() {
        if let Err(e) = nix::sched::unshare(after_join) {
            let e = anyhow::Error::new(e).context(format!("unshare({after_join:?})"));
            let _ = Setup::failed(&e).send(&mut ready);
            return 1;
        }
    }
    if let Err(setup) = apply_inside(plan, inside, (&mut printer, ctx), show) {
        let _ = setup.send(&mut ready);
        return 1;
    }
    // The line that runs the command: what it takes away (step 8), this process
    // takes away from itself, and the command inherits it. lab prints it on the
    // host, after the checks.
    for item in run {
        let Item::Command(c) = item else { continue };
        if let Err(e) = timed(c, ctx) {
            let _ = Setup::failed(&failed(c, e)).send(&mut ready);
            return 1;
        }
    }
    // The command is this process's first child, so that it is PID 2 however
    // many processes the checks start; it waits for the word to run.
    let mut command = match Held::fork(&plan.spec, ctx) {
        Ok(c) => c,
        Err(e) => {
            let e = e.context("starting the command");
            let _ = Setup::failed(&e).send(&mut ready);
            return 1;
        }
    };
    if Setup::Ready.send(&mut ready).is_err() {
        return 1;
    }
    drop(ready);
    match wait_for_go(go, &mut command) {
        Some(true) => {
            // SIGTERM and SIGHUP go on to the command from the moment it runs;
            // one that came before, while nothing passed it on, goes now.
            sys::forward_to(Some(command.pid));
            if let Some(sig @ (Signal::SIGTERM | Signal::SIGHUP)) = sys::take_signal() {
                let _ = nix::sys::signal::kill(command.pid, sig);
            }
            command.release()
        }
        Some(false) => return command.stop(),
        None => return 1,
    }
    init(command)
}

/// Print and apply the commands that run inside; or what to tell lab (the
/// student stopped at a --walk prompt, or a command failed).
fn apply_inside(
    plan: &Plan,
    inside: &[Item],
    (printer, ctx): (&mut Printer, &RunContext),
    show: Show,
) -> Result<(), Setup> {
    for item in inside {
        if show.loud && show.full {
            render::out(&printer.item(plan, item));
        }
        let Item::Command(c) = item else { continue };
        // Ctrl-C here, without a terminal in raw mode, reaches lab too, which
        // then takes the container down; at a menu, this process tells lab.
        if show.walk {
            crate::engine::walk::before(plan, c).map_err(|e| {
                match e.downcast_ref::<Interrupted>().map(|i| i.chosen) {
                    Some(true) => Setup::Stopped,
                    Some(false) => Setup::Interrupted,
                    None => Setup::failed(&e),
                }
            })?;
        }
        timed(c, ctx).map_err(|e| Setup::failed(&failed(c, e)))?;
    }
    Ok(())
}

/// The command, forked and held before its exec until lab says go.
struct Held {
    pid: Pid,
    /// Its end of the pipe: a byte lets it run; closing the pipe ends it.
    release: Option<File>,
    /// Its exit status, if it has already been reaped.
    status: Option<i32>,
}

impl Held {
    fn fork(spec: &Spec, ctx: &RunContext) -> Result<Held> {
        let (rd, wr) = nix::unistd::pipe()?;
        match sys::fork()? {
            ForkResult::Child => {
                drop(wr);
                let mut byte = [0u8; 1];
                let mut rd = File::from(rd);
                loop {
                    match rd.read(&mut byte) {
                        Ok(1) if Word::Go.expect(byte[0]).is_ok() => exec_inside(
                            &spec.command,
                            (&spec.name, spec.step),
                            spec.user.as_ref(),
                            ctx,
                        ),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        // lab stopped the container before the command ran.
                        _ => std::process::exit(0),
                    }
                }
            }
            ForkResult::Parent { child } => {
                drop(rd);
                Ok(Held {
                    pid: child,
                    release: Some(File::from(wr)),
                    status: None,
                })
            }
        }
    }

    fn release(&mut self) {
        if let Some(mut w) = self.release.take() {
            let _ = w.write_all(&Word::Go.encode());
        }
    }

    /// End it without running the command; returns 0.
    fn stop(mut self) -> i32 {
        self.release = None;
        if self.status.is_none() {
            let _ = waitpid(self.pid, None);
        }
        0
    }
}

/// Wait for lab's word, reaping any child meanwhile (the probe leaves orphans on
/// purpose). `Some(true)`: go, `Some(false)`: stop, `None`: lab is gone.
fn wait_for_go(go: OwnedFd, command: &mut Held) -> Option<bool> {
    let mut go = File::from(go);
    if sys::wake_on_child_exit().is_err() {
        return None;
    }
    loop {
        if let Some(code) = reap_all(Some(command.pid)) {
            command.status = Some(code);
        }
        let mut fds = [PollFd::new(go.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(20u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return None,
        }
        let mut byte = [0u8; 1];
        if !matches!(go.read(&mut byte), Ok(1)) {
            return None;
        }
        return match Word::decode(byte[0]) {
            Ok(Word::Go) => Some(true),
            Ok(Word::Stop) => Some(false),
            // (Said here, since nothing else would: lab only sees init exit.)
            Ok(Word::Connected) => {
                errln!("lab-init: lab's word was Connected where Go or Stop was due");
                None
            }
            Err(e) => {
                errln!("lab-init: {e:#}");
                None
            }
        };
    }
}

/// Reap every child that has exited, without waiting; returns the status of
/// `command` if it was among them.
fn reap_all(command: Option<Pid>) -> Option<i32> {
    let mut found = None;
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
        if status.pid().is_some() && status.pid() == command {
            found = Some(exit_code(status));
        }
    }
    found
}

/// lab's init: reap every child until the command exits (SIGTERM and SIGHUP go on
/// to it: sys::forward_to). Returns the command's status.
fn init(command: Held) -> i32 {
    if let Some(code) = command.status {
        return code;
    }
    let command = command.pid;
    loop {
        match waitpid(None, None) {
            Ok(status) if status.pid() == Some(command) => return exit_code(status),
            Ok(_) => {}
            // (The signal handler has passed SIGTERM and SIGHUP on already.)
            Err(Errno::EINTR) => {
                let _ = sys::take_signal();
            }
            Err(_) => return 1,
        }
    }
}

/// Run `command` in place of this process, already inside the container, with the
/// container's environment (its PATH, and what the layers set), as `user` if one
/// is given. The default shell gets a prompt that names the container and its
/// step, `[c1 · step 3] / # `; a command given after `--` gets no PS1. `lab exec`
/// uses it too.
/// What the layers' inside commands set for the command (an image's Env and
/// WorkingDir) comes in `ctx`.
pub fn exec_inside(
    command: &[String],
    (name, step): (&str, u8),
    user: Option<&RunAs>,
    ctx: &RunContext,
) -> ! {
    use std::ffi::CString;
    sys::default_signals();
    // A SIGTERM or SIGHUP that came while this process still had lab's handler
    // (init passes them on from the moment the command is released) ends it,
    // as it would have ended the command.
    if let Some(sig @ (Signal::SIGTERM | Signal::SIGHUP)) = sys::take_signal() {
        std::process::exit(128 + sig as i32);
    }
    let result = (|| -> Result<std::convert::Infallible> {
        let args: Vec<CString> = command
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .context("the command holds a NUL byte")?;
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            (
                "HOME".into(),
                user.map_or("/root".into(), |u| u.home.clone()),
            ),
        ];
        if command == [crate::engine::plan::Spec::DEFAULT_COMMAND] {
            let here = format!("{name} · step {step}");
            env.push(("PS1".into(), format!("[{here}] \\w \\$ ")));
            // Debian's and Ubuntu's /etc/bash.bashrc set PS1 anew, with this in it.
            env.push(("debian_chroot".into(), here));
        }
        if let Ok(term) = std::env::var("TERM") {
            env.push(("TERM".into(), term));
        }
        for (key, value) in ctx.env() {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let env: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap_or_default())
            .collect();
        if let Some(u) = user {
            switch_user(u)?;
        }
        let workdir = ctx.workdir();
        let _ = std::env::set_current_dir(workdir.unwrap_or_else(|| "/".into()));
        // PATH of the container, not lab's: the program is looked up inside.
        std::env::set_var("PATH", path);
        nix::unistd::execvpe(&args[0], &args, &env).map_err(|e| anyhow!(e))
    })();
    let Err(e) = result;
    errln!(
        "lab: cannot run {} inside the container: {e:#} (is it in the root filesystem?)",
        render::command(command)
    );
    std::process::exit(127);
}

/// Become `user`: groups first, then the gid, then the uid, while this process
/// may still change them (root may; the user it becomes may not). Changing the
/// uid away from 0 clears the capabilities the process had.
fn switch_user(user: &RunAs) -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let gid = Gid::from_raw(user.gid);
    let uid = Uid::from_raw(user.uid);
    let what = format!("uid {}, gid {}", user.uid, user.gid);
    setgroups(&groups).with_context(|| format!("setgroups for {what}"))?;
    setresgid(gid, gid, gid).with_context(|| format!("setresgid for {what}"))?;
    setresuid(uid, uid, uid).with_context(|| format!("setresuid for {what}"))?;
    Ok(())
}
