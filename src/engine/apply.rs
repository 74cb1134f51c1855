//! One line of a plan, applied: with `LAB_TIMINGS=1` how long it took, and when
//! it fails, the line and a hint for the student (container.rs and init.rs apply
//! every line through here).

use crate::engine::plan::{Command, RunContext};
use anyhow::{anyhow, Result};
use nix::errno::Errno;

/// Apply a command. With `LAB_TIMINGS=1` in the environment, also say on stderr
/// how long it took: where the time of a step goes (the README's Benchmark).
pub(crate) fn timed(c: &Command, ctx: &RunContext) -> Result<()> {
    if std::env::var_os("LAB_TIMINGS").is_none() {
        return c.action.apply(ctx);
    }
    let start = std::time::Instant::now();
    let done = c.action.apply(ctx);
    // (A line whose work clone3 did: see sys::clone_into.)
    let how = match c.action.done_at_birth(ctx) {
        true => "  [done by clone3: born in the cgroup, CLONE_INTO_CGROUP]",
        false => "",
    };
    errln!(
        "lab timing: {:7.3} ms  {}{how}",
        start.elapsed().as_secs_f64() * 1000.0,
        c.action.shell()
    );
    done
}

/// With `LAB_TIMINGS=1`: say how long the step has taken so far, at a milestone
/// (the first call, with no milestone, starts the clock).
pub(crate) fn mark(milestone: &str) {
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
pub(crate) fn failed(c: &Command, e: anyhow::Error) -> anyhow::Error {
    let hint = hint_for(&e);
    let e = anyhow!("`{}` failed: {e:#}", c.action.shell());
    match hint {
        Some(hint) => crate::engine::error::hinted(e, hint),
        None => e,
    }
}

/// What usually causes an error, and what to do, for a student: the hint it
/// carries (an action that knows why it failed gives one), else one for its errno.
fn hint_for(e: &anyhow::Error) -> Option<String> {
    if let Some(hint) = crate::engine::error::hint_of(e) {
        return Some(hint.into());
    }
    let errno = e.chain().find_map(|c| c.downcast_ref::<Errno>().copied())?;
    let hint = match errno {
        Errno::EPERM | Errno::EACCES => "Permission denied: lab needs root. Run it with sudo.",
        Errno::ENOENT => "A path is missing in the root filesystem: check --rootfs (it needs /proc, /bin/sh, ...), or rebuild it with sudo lab rootfs.",
        Errno::EBUSY => "Something is still using that mount or directory.",
        Errno::ENOTDIR => "The root filesystem has a file where lab mounts a directory (/proc, /dev, /sys): fix it, or rebuild the default one with sudo lab rootfs.",
        _ => return None,
    };
    Some(hint.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_given_where_it_failed_comes_before_the_errnos() {
        let e = anyhow::Error::new(Errno::EINVAL).context("pivot_root(\".\", \".\")");
        assert_eq!(hint_for(&e), None, "EINVAL alone says nothing");
        let e = crate::engine::error::hinted(e, "bind it onto itself first");
        assert_eq!(hint_for(&e).as_deref(), Some("bind it onto itself first"));
        let e = anyhow::Error::new(Errno::EBUSY).context("umount -l .");
        let hint = hint_for(&e);
        assert_eq!(
            hint.as_deref(),
            Some("Something is still using that mount or directory.")
        );
    }
}
