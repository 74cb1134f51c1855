//! `lab step N [-- COMMAND]`: build step N, check every layer, run the command
//! inside (container.rs), end with a summary, and note the step completed when
//! every check passed.

use super::{need_root_below_9, note_progress, print_summary};
use crate::{cli::Target, engine::container, options::spec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(
    target: &Target,
    no_checks: bool,
    walk: bool,
    verbose: bool,
    command: Vec<String>,
) -> Result<ExitCode> {
    need_root_below_9("step", target.step)?;
    let spec = spec(target, command, true)?;
    let mode = container::Mode::Step {
        checks: !no_checks,
        walk,
        verbose,
    };
    let step = spec.step;
    let done = container::run(spec, target.name.as_deref(), mode)?;
    let more = (!verbose && !walk).then_some(
        "--verbose prints every command as lab runs it, and each check with its detail.",
    );
    print_summary(step, &done, more);
    if !no_checks {
        note_progress(step, &done.reports);
    }
    Ok(ExitCode::from(done.exit_code.clamp(0, 255) as u8))
}
