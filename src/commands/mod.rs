//! One file per subcommand of lab, each with one `run` (as youki's and uv's
//! `commands/`): main.rs parses the command line and hands each its values.
//! What several of them share is here, below the list: who needs root, what a
//! run of the checks leaves in the progress file, how a verdict is printed.

pub mod check;
pub mod clean;
pub mod completions;
pub mod doctor;
pub mod exec;
pub mod explain;
pub mod hint;
pub mod image;
pub mod inspect;
pub mod lesson;
pub mod next;
pub mod ps;
pub mod quiz;
pub mod rootfs;
pub mod script;
pub mod show;
pub mod step;
pub mod steps;
pub mod verify;

use crate::{engine::check::Report, engine::render, layers, progress, tutor};
use anyhow::{bail, Result};
use std::process::ExitCode;

/// Steps 1 to 8 need root; step 9 runs without it, in a user namespace of the
/// user's own (rootless), with the layers a user can have.
fn need_root_below_9(what: &str, step: u8) -> Result<()> {
    let userns = layers::userns::LAYER.number;
    if !nix::unistd::geteuid().is_root() && step < userns {
        bail!("lab {what} {step} changes the kernel's view of processes and needs root: run it with sudo (sudo lab {what} {step}); without sudo only step {userns} runs, in a user namespace of your own (lab {what} {userns})");
    }
    Ok(())
}

fn need_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lab {what} changes the kernel's view of processes and needs root: run it with sudo (sudo lab {what} ...)");
    }
    Ok(())
}

/// A step whose checks all passed is completed (progress.rs).
fn note_progress(step: u8, reports: &[Report]) {
    if tutor::hint::note(step, reports) {
        errln!("lab: a check failed; its hint is above. `lab hint {step}` shows what to look at, and after that the fix");
    }
    if !reports.is_empty() && !reports.iter().any(|r| r.outcome.failed()) {
        if let Err(e) = progress::record(step) {
            errln!("lab: could not note step {step} as completed: {e:#}");
            return;
        }
        // A student who started in the middle: say what is left before it.
        let done = progress::completed();
        let before: Vec<String> = (1..step)
            .filter(|n| !done.contains(n))
            .map(|n| n.to_string())
            .collect();
        if let Some(said) = left_before(step, &before) {
            errln!("{said}");
        }
    }
}

/// What a student who started in the middle still has before `step`, said
/// in one sentence (`lab steps` needs no sudo; `lab next` does).
fn left_before(step: u8, before: &[String]) -> Option<String> {
    let (which, are) = match before {
        [] => return None,
        [one] => (format!("step {one} is"), "it"),
        [first @ .., last] => (
            format!("steps {} and {last} are", first.join(", ")),
            "the first of them",
        ),
    };
    Some(format!(
        "lab: step {step} completed. Before it, {which} not completed yet: `sudo lab next` builds {are}, and `lab steps` shows your progress."
    ))
}

/// The summary that ends `lab step` and `lab verify` (render::summary).
fn print_summary(step: u8, done: &crate::engine::container::Finished, more: Option<&str>) {
    render::out(&crate::engine::screen::summary(
        &crate::engine::screen::Ending {
            step,
            name: &done.name,
            reports: &done.reports,
            kept: &done.kept,
            more,
        },
    ));
}

/// The checks as text (or JSON), and the exit code: 0 only if none failed
/// (`lab check`).
fn print_verdict(reports: &[Report], json: bool) -> ExitCode {
    let failed = reports.iter().filter(|r| r.outcome.failed()).count();
    let passed = reports.iter().filter(|r| r.outcome.passed()).count();
    let skipped = reports.len() - failed - passed;
    if json {
        render::out(&render::json(reports));
    } else {
        render::out(&render::reports("Checks", reports));
        let skipped = match skipped {
            0 => String::new(),
            n => format!(" ({n} skipped: each says why)"),
        };
        outln!("\n{passed} of {} checks passed{skipped}.", reports.len());
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::left_before;

    #[test]
    fn what_is_left_before_a_step_is_one_sentence_in_good_grammar() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(left_before(5, &[]), None);
        assert_eq!(
            left_before(5, &s(&["4"])).unwrap(),
            "lab: step 5 completed. Before it, step 4 is not completed yet: `sudo lab next` builds it, and `lab steps` shows your progress."
        );
        assert_eq!(
            left_before(5, &s(&["1", "2", "4"])).unwrap(),
            "lab: step 5 completed. Before it, steps 1, 2 and 4 are not completed yet: `sudo lab next` builds the first of them, and `lab steps` shows your progress."
        );
    }
}
