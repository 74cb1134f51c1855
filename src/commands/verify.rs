//! `lab verify N [--json] [--verbose]`: build step N, run every check, tear
//! down, print a summary (each check with its detail first with --verbose, JSON
//! alone with --json); exit 0 only if all passed.

use super::{need_root_below_9, note_progress, print_summary};
use crate::{cli::Target, engine::container, engine::render, options::spec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(target: &Target, json: bool, verbose: bool) -> Result<ExitCode> {
    need_root_below_9("verify", target.step)?;
    let spec = spec(target, vec!["/bin/true".into()], true)?;
    let step = spec.step;
    let done = container::run(spec, target.name.as_deref(), container::Mode::Verify)?;
    if json {
        render::out(&render::json(&done.reports));
    } else {
        if verbose {
            render::out(&render::reports("Checks", &done.reports));
        }
        let more = (!verbose).then_some("--verbose prints each check with its detail.");
        print_summary(step, &done, more);
    }
    note_progress(step, &done.reports);
    Ok(match done.reports.iter().any(|r| r.outcome.failed()) {
        false => ExitCode::SUCCESS,
        true => ExitCode::FAILURE,
    })
}
