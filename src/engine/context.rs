//! What a run learns as it goes, for the lines after: passed to every line's
//! `apply` (plan.rs, `Action`) instead of process-wide variables that would hide
//! who writes and who reads. Each process of a run has its own: lab on the host,
//! the container's first process (init.rs), the probe and `lab exec`.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

#[derive(Default)]
pub struct RunContext {
    /// The process this run started was born in its cgroup (clone3 with
    /// CLONE_INTO_CGROUP, sys::clone_into): the line that would move it there
    /// finds its work done.
    born_in_cgroup: Cell<bool>,
    /// The command's environment and working directory, as lines of the
    /// image's config leave them (step 7), for the command's exec.
    env: RefCell<Vec<(String, String)>>,
    workdir: RefCell<Option<PathBuf>>,
    /// What lines of this run's teardown decided once for all of them (step 5:
    /// whether the last container takes lab0 and the rules with it).
    decided: RefCell<Vec<&'static str>>,
}

impl RunContext {
    /// Whether the container's first process was born in its cgroup: known
    /// once it is cloned, to lab and to that process.
    pub fn set_born_in_cgroup(&self, born: bool) {
        self.born_in_cgroup.set(born);
    }

    pub fn born_in_cgroup(&self) -> bool {
        self.born_in_cgroup.get()
    }

    /// `export KEY=VALUE` for the command.
    pub fn set_env(&self, key: &str, value: &str) {
        let mut env = self.env.borrow_mut();
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.env.borrow().clone()
    }

    /// `cd DIR` for the command.
    pub fn set_workdir(&self, dir: PathBuf) {
        *self.workdir.borrow_mut() = Some(dir);
    }

    pub fn workdir(&self) -> Option<PathBuf> {
        self.workdir.borrow().clone()
    }

    /// Whether a line of this run already decided `what` for the lines after it.
    pub fn decided(&self, what: &'static str) -> bool {
        self.decided.borrow().contains(&what)
    }

    pub fn decide(&self, what: &'static str) {
        if !self.decided(what) {
            self.decided.borrow_mut().push(what);
        }
    }
}
