//! The probe: a process that joins the container the way `nsenter` does and runs
//! the inside checks there, each confined one in a child that first takes on the
//! restrictions of the container's processes.

use super::{ns_inode, Attempt, Check, Kind, Outcome, Probe};
use crate::engine::message::{Answer, Joined};
use crate::engine::namespace::{join_order, Row};
use crate::engine::plan::RunContext;
use crate::sys;
use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Fork a probe that joins the container, forks again so that it is inside the pid
/// namespace too, and runs the inside checks there; each confined check (and
/// escape) in a process of its own that first takes on the restrictions of the
/// container's processes. Answers come back over a pipe, one line per check
/// (message::Answer).
pub(super) fn run_inside(checks: &[Check], which: &[usize], probe: &Probe) -> Result<Vec<Answer>> {
    // Read on the host, before joining: what the container's processes may not do.
    let confine = join_last(probe.target)?;
    let (read_end, write_end) = nix::unistd::pipe().context("pipe")?;
    let birth = birth_cgroup(probe.target);
    let (forked, born) = sys::fork_into(birth.as_deref())?;
    let parent = matches!(forked, ForkResult::Parent { .. });
    if born && parent && std::env::var_os("LAB_TIMINGS").is_some() {
        errln!("lab timing: the probe is born in the container's cgroup: clone3 with CLONE_INTO_CGROUP");
    }
    match forked {
        ForkResult::Child => {
            drop(read_end);
            let code = match probe_main(checks, which, probe, &confine, write_end) {
                Ok(()) => 0,
                Err(e) => {
                    errln!("lab: the probe could not join the container: {e:#}");
                    1
                }
            };
            // Leave without running the parent's destructors (they belong to lab).
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut out = String::new();
            File::from(read_end).read_to_string(&mut out)?;
            let _ = waitpid(child, None);
            out.lines().map(Answer::decode).collect()
        }
    }
}

fn probe_main(
    checks: &[Check],
    which: &[usize],
    probe: &Probe,
    confine: &[Box<dyn crate::engine::plan::Action>],
    out: OwnedFd,
) -> Result<()> {
    join(probe.target)?;
    // setns(CLONE_NEWPID) only applies to children: fork once more to be inside.
    match sys::fork()? {
        ForkResult::Child => {
            let mut out = File::from(out);
            for &i in which {
                let start = std::time::Instant::now();
                let outcome = match checks[i].kind {
                    Kind::Inside(f) => f(probe),
                    Kind::Confined(f) => confined(probe, confine, || f(probe)),
                    Kind::Escape(e) => confined(probe, confine, || {
                        let attempt = match (e.attempt)(probe) {
                            // Another runtime's container may close an escape
                            // earlier than lab's steps do: that is no failure.
                            Attempt::Stopped(d) if probe.maker.is_other() => {
                                Attempt::ClosedEarly(d)
                            }
                            a => a,
                        };
                        e.outcome(probe.step, attempt)
                    }),
                    _ => continue,
                };
                let answer = Answer {
                    index: i,
                    outcome,
                    took: start.elapsed(),
                };
                let _ = out.write_all(answer.encode().as_bytes());
            }
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(out);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                other => anyhow::bail!("the probe ended with {other:?}"),
            }
        }
    }
}

/// Processes started in the container from the host, for a check that watches
/// them from outside its limits (a watcher inside would be throttled with what it
/// watches). One process joins the container as the probe does and starts `n`
/// children there, with the container's restrictions, each running `body`. They
/// die with lab (PR_SET_PDEATHSIG) and when this is dropped.
pub struct Started {
    joiner: Pid,
    /// Their PIDs as the host numbers them.
    pub pids: Vec<Pid>,
}

pub fn start_inside(target: Pid, n: usize, body: fn() -> !) -> Result<Started> {
    use nix::sys::signal::Signal::SIGKILL;
    let confine = join_last(target)?;
    let (read_end, write_end) = nix::unistd::pipe().context("pipe")?;
    match sys::fork_into(birth_cgroup(target).as_deref())?.0 {
        ForkResult::Child => {
            drop(read_end);
            let _ = nix::sys::prctl::set_pdeathsig(SIGKILL);
            let mut out = File::from(write_end);
            if let Err(e) = join(target) {
                let _ = out.write_all(Joined::Failed(format!("{e:#}")).encode().as_bytes());
                std::process::exit(1);
            }
            // After setns into the pid namespace, only children are inside it.
            let mut pids = Vec::new();
            for _ in 0..n {
                match sys::fork() {
                    Ok(ForkResult::Child) => {
                        // Without lab's pipe: lab reads until every writer is gone.
                        sys::close_inherited();
                        let _ = nix::sys::prctl::set_pdeathsig(SIGKILL);
                        if confine
                            .iter()
                            .try_for_each(|a| a.apply(&RunContext::default()))
                            .is_err()
                        {
                            std::process::exit(1);
                        }
                        body();
                    }
                    Ok(ForkResult::Parent { child }) => pids.push(child),
                    Err(_) => break,
                }
            }
            let _ = out.write_all(Joined::Started(pids).encode().as_bytes());
            drop(out);
            while nix::sys::wait::wait().is_ok() {}
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut said = String::new();
            File::from(read_end).read_to_string(&mut said)?;
            let pids = match Joined::decode(&said) {
                Ok(Joined::Started(pids)) => pids,
                Ok(Joined::Failed(e)) => {
                    let _ = waitpid(child, None);
                    anyhow::bail!("could not join the container: {e}");
                }
                // Nothing said: it died first (the count below says so).
                Err(_) if said.is_empty() => vec![],
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(e);
                }
            };
            let started = Started {
                joiner: child,
                pids,
            };
            if started.pids.len() != n {
                anyhow::bail!(
                    "could not start {n} processes in the container (started {})",
                    started.pids.len()
                );
            }
            Ok(started)
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        for p in &self.pids {
            let _ = nix::sys::signal::kill(*p, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = waitpid(self.joiner, None);
    }
}

/// Run `check` in a child process that has taken on the container's restrictions
/// (`confine`): what it changes in itself (its root, its namespaces, its
/// privileges) goes with it. Its /tmp is a tmpfs of its own, so that the scratch
/// files of a check leave no trace in the container (not even the copy of /tmp
/// that writing there makes in an overlay's upper layer).
fn confined(
    probe: &Probe,
    confine: &[Box<dyn crate::engine::plan::Action>],
    check: impl FnOnce() -> Outcome,
) -> Outcome {
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("pipe: {e}")),
    };
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(rd);
            // (In the host's own mount namespace, a container of step 1, the
            // checks' files land in the root filesystem as they are.)
            if !probe.host.shares_mount_namespace() {
                private_tmp();
            }
            let outcome = match confine
                .iter()
                .try_for_each(|a| a.apply(&RunContext::default()))
            {
                Ok(()) => check(),
                Err(e) => Outcome::Fail(format!(
                    "the probe could not take on the container's restrictions: {e:#}"
                )),
            };
            let _ = File::from(wr).write_all(outcome.encode().as_bytes());
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            let mut answer = String::new();
            let _ = File::from(rd).read_to_string(&mut answer);
            let _ = waitpid(child, None);
            if answer.is_empty() {
                return Outcome::Fail("the confined probe died without an answer".into());
            }
            // (Something else than an outcome: a failure that says what came.)
            Outcome::decode(&answer).unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")))
        }
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

/// A mount namespace of this process's own, with an empty tmpfs on /tmp (when
/// the container has a /tmp, and nothing mounted below it that the tmpfs would
/// hide: an image's /proc may lead there), before it gives up the right to
/// mount. Best effort: without it, the checks use the container's /tmp and
/// remove what they made there.
fn private_tmp() {
    use nix::mount::{mount, MsFlags};
    let tmp = std::path::Path::new("/tmp");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let below = crate::mountinfo::parse_mountinfo(&mounts)
        .iter()
        .any(|m| m.mount_point.starts_with("/tmp/"));
    if !tmp.is_dir() || below || nix::sched::unshare(CloneFlags::CLONE_NEWNS).is_err() {
        return;
    }
    // Private first: nothing mounted here may reach the container's own table.
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    if mount(None::<&str>, "/", None::<&str>, private, None::<&str>).is_ok() {
        let _ = mount(
            Some("lab-probe-tmp"),
            tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("size=1m,mode=1777"),
        );
    }
}

/// Enter the cgroups, namespaces and root of process `target`, as `nsenter --all
/// --root` does (nsenter leaves the cgroups alone).
pub fn join(target: Pid) -> Result<()> {
    // What layers do first, while the host's files are still in view (its cgroups).
    // (A joiner is a run of its own, with nothing learnt yet.)
    let ctx = RunContext::default();
    for action in join_first(target, crate::engine::curriculum::last_step())? {
        action.apply(&ctx)?;
    }
    enter(target)
}

/// The cgroup (v2) of `target` that a process joining it can be born in
/// (sys::fork_into), instead of moving there: joining then finds it done.
pub fn birth_cgroup(target: Pid) -> Option<std::path::PathBuf> {
    let first = join_first(target, crate::engine::curriculum::last_step()).ok()?;
    first.iter().find_map(|a| a.born_in().map(Into::into))
}

/// What the layers up to `step` do first when a process joins the container of
/// `target` (step 6: join its cgroups).
pub fn join_first(target: Pid, step: u8) -> Result<Vec<Box<dyn crate::engine::plan::Action>>> {
    let mut all = Vec::new();
    for layer in crate::engine::curriculum::active(step) {
        all.extend(layer.hooks.join_first(target)?);
    }
    Ok(all)
}

/// What every layer takes away from a process that joins the container of
/// `target`, prepared on the host, applied after joining (step 8: the
/// capabilities, no_new_privs and seccomp filters of its processes).
pub fn join_last(target: Pid) -> Result<Vec<Box<dyn crate::engine::plan::Action>>> {
    let mut all = Vec::new();
    for layer in crate::engine::curriculum::all() {
        all.extend(layer.hooks.join_last(target)?);
    }
    Ok(all)
}

/// The namespaces of `target` this process does not share, in the order a
/// process joins them (crate::engine::namespace: the user namespace first).
pub fn namespaces_to_enter(target: Pid) -> Vec<&'static Row> {
    let t = target.to_string();
    join_order()
        .into_iter()
        .filter(|r| ns_inode(&t, r.file) != ns_inode("self", r.file))
        .collect()
}

/// Enter the namespaces and the root of process `target`. Every namespace file is
/// opened before the first setns: inside the container's mount namespace, the
/// host's /proc may be out of reach. The pid namespace applies to the children
/// forked after this, not to the caller.
pub fn enter(target: Pid) -> Result<()> {
    let t = target.to_string();
    let root = File::open(format!("/proc/{t}/root"))
        .with_context(|| format!("process {t} not found (is the container still running?)"))?;
    let mut files = Vec::new();
    for row in namespaces_to_enter(target) {
        let name = row.file;
        let f = File::open(format!("/proc/{t}/ns/{name}"))
            .with_context(|| format!("opening /proc/{t}/ns/{name}"))?;
        files.push((name, row.flag, f));
    }
    // Without root the namespace denies setgroups (read here, on the host).
    let groups_denied =
        std::fs::read_to_string(format!("/proc/{t}/setgroups")).is_ok_and(|s| s.trim() == "deny");
    let mut user = false;
    for (name, flag, f) in &files {
        setns(f.as_fd(), *flag)
            .with_context(|| format!("setns into the {name} namespace of {t}"))?;
        user |= *flag == CloneFlags::CLONE_NEWUSER;
    }
    nix::unistd::fchdir(&root).context("fchdir to the container's root")?;
    nix::unistd::chroot(".").context("chroot to the container's root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    if user {
        // In the container's user namespace lab's user (the host's root) is not
        // mapped: become its root, the mapped user, as nsenter does. (Without
        // root the namespace denies setgroups: the groups stay.)
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let (root, group) = (Uid::from_raw(0), Gid::from_raw(0));
        setresgid(group, group, group).context("setresgid(0) in the container's user namespace")?;
        if !groups_denied {
            setgroups(&[]).context("setgroups([]) in the container's user namespace")?;
        }
        setresuid(root, root, root).context("setresuid(0) in the container's user namespace")?;
    }
    Ok(())
}
