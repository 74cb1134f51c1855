//! `lab ps` and `lab exec`: look at the running containers, and run one more
//! program in one of them.
//!
//! A container is nothing but processes in namespaces and cgroups, so "entering"
//! one is joining them: write our PID to the container's `cgroup.procs` files
//! (on cgroup v1 lab writes 0 to `tasks`, the same move for a process of one
//! thread, and quicker: layers/cgroups/syscalls.rs), `setns(2)` into each of its
//! namespaces, and take its root. That is what
//! `nsenter -t PID -m -u -i -n -p -C -r -w` does (and `docker exec`, which also joins
//! the cgroups). setns into a pid namespace only applies to the children made
//! afterwards, so the program is started by one more fork.

use crate::engine::namespace::{Row, NAMESPACES};
use crate::engine::plan::{join_quoted, quote, RunContext};
use crate::engine::state::{self, Running};
use crate::{engine::check, engine::container, sys};
use anyhow::{Context, Result};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use std::fmt::Write as _;

/// `lab ps`: one line per running container.
pub fn ps() -> String {
    let all = state::running();
    if all.is_empty() {
        return "No container is running. Start one with sudo lab step N.\n".into();
    }
    let mut text = format!(
        "{:<16} {:>4} {:>8}  {:<18} {}\n",
        "NAME", "STEP", "PID", "ADDRESS", "PUBLISHED"
    );
    for c in all {
        let _ = writeln!(
            text,
            "{:<16} {:>4} {:>8}  {:<18} {}",
            c.name,
            c.step.map_or("?".into(), |s| s.to_string()),
            c.pid.map_or("starting".into(), |p| p.to_string()),
            c.address.as_deref().unwrap_or("-"),
            if c.published.is_empty() {
                "-".to_string()
            } else {
                c.published.join(",")
            }
        );
    }
    text
}

/// What `lab exec` does, as one command a person could type instead.
pub struct Entry {
    pub pid: Pid,
    /// What to do before entering its namespaces: join its cgroups (from step 6).
    pub first: Vec<Box<dyn crate::engine::plan::Action>>,
    /// The namespaces the container does not share with us.
    pub namespaces: Vec<&'static Row>,
    /// What to take on last, as docker exec does: the restrictions of the
    /// container's processes (from step 8: capabilities, no_new_privs, seccomp).
    pub last: Vec<Box<dyn crate::engine::plan::Action>>,
}

impl Entry {
    pub fn of(container: &Running, pid: i32) -> Result<Entry> {
        let pid = Pid::from_raw(pid);
        let first = check::join_first(pid, container.step.unwrap_or(0))
            .context("reading the container's cgroups")?;
        let mut rows = check::namespaces_to_enter(pid);
        // In the order nsenter's manual lists them, the user namespace first: the
        // table's.
        rows.sort_by_key(|r| NAMESPACES.iter().position(|n| n.ns == r.ns));
        let last = check::join_last(pid).context("reading the container's restrictions")?;
        Ok(Entry {
            pid,
            first,
            namespaces: rows,
            last,
        })
    }

    /// `nsenter -t PID -m -u -i -n -p -C -r -w CMD`; with cgroups to join, inside a
    /// `sh -c` that first writes the shell's own PID ($$) to each cgroup.procs.
    pub fn shell(&self, command: &[String]) -> String {
        let flags: Vec<&str> = self.namespaces.iter().map(|r| r.nsenter).collect();
        let nsenter = format!(
            "nsenter -t {} {} -r -w {}",
            self.pid,
            flags.join(" "),
            join_quoted(command)
        )
        .replace("  ", " ");
        if self.first.is_empty() {
            return nsenter;
        }
        let mut inner = String::new();
        for action in &self.first {
            let _ = write!(inner, "{} && ", action.shell());
        }
        format!("sh -c {}", quote(&format!("{inner}exec {nsenter}")))
    }

    pub fn why(&self) -> String {
        let mut steps = Vec::new();
        if !self.first.is_empty() {
            steps.push(
                "join the container's cgroups (its limits apply to this program too)".to_string(),
            );
        }
        if !self.namespaces.is_empty() {
            let names: Vec<&str> = self.namespaces.iter().map(|r| r.word).collect();
            steps.push(format!("enter its {} namespaces", names.join(", ")));
        }
        steps.push("take its root and working directory, and run the program there".into());
        if !self.last.is_empty() {
            // nsenter does not do this part; docker exec does, and so does lab.
            steps.push("with what the container's processes live under, as docker exec does (nsenter does not: lab copies their capabilities, no_new_privs and seccomp filter)".into());
        }
        steps.join(", ")
    }
}

/// `lab exec NAME -- CMD`: run CMD in the running container NAME; returns its exit
/// status.
pub fn exec(name: &str, command: &[String]) -> Result<i32> {
    let (container, pid) = state::find(name)?;
    let entry = Entry::of(&container, pid)?;
    let step = container.step.unwrap_or(0);
    // On stderr: what the program prints on stdout stays its own.
    crate::engine::render::err(&crate::engine::render::command_block(
        &format!("Entering container {name} (step {step}, host PID {pid})"),
        &entry.shell(command),
        &entry.why(),
    ));
    // The terminal sends Ctrl-C to the program inside; lab only waits for it.
    sys::ignore_keyboard_signals()?;
    // Born in the container's cgroup (v2), if it has one: see sys::fork_into.
    let birth = entry.first.iter().find_map(|a| a.born_in());
    match sys::fork_into(birth)?.0 {
        ForkResult::Child => {
            let code = match enter_and_run(&entry, command, (name, step)) {
                Ok(code) => code,
                Err(e) => {
                    errln!("lab: cannot enter container {name}: {e:#}");
                    125
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => Ok(container::exit_code(
            waitpid(child, None).context("waiting for the program")?,
        )),
    }
}

/// In a child of lab: join, then fork the program so that it is inside the pid
/// namespace too.
fn enter_and_run(entry: &Entry, command: &[String], (name, step): (&str, u8)) -> Result<i32> {
    // A run of its own, with nothing learnt yet (no image's Env: the program
    // gets the container's PATH and HOME).
    let ctx = RunContext::default();
    // Asked again: the cgroup this process was born in (sys::fork_into) is joined.
    for action in check::join_first(entry.pid, step)? {
        action.apply(&ctx)?;
    }
    check::enter(entry.pid)?;
    match sys::fork()? {
        ForkResult::Child => {
            for action in &entry.last {
                if let Err(e) = action.apply(&ctx) {
                    errln!("lab: cannot take on the container's restrictions: {e:#}");
                    std::process::exit(125);
                }
            }
            crate::engine::init::exec_inside(command, (name, step), None, &ctx)
        }
        ForkResult::Parent { child } => Ok(container::exit_code(waitpid(child, None)?)),
    }
}
