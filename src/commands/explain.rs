//! `lab explain N [--only L]`: the commands that build step N by hand; and the
//! same text for the lessons and hints, which quote it as this machine needs it.

use crate::{cli::Target, engine::plan::Plan, engine::render, options::spec};
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run(target: &Target, only: Option<u8>) -> Result<ExitCode> {
    if only.is_some_and(|l| l > target.step) {
        bail!(
            "step {} has layers 1 to {}: --only takes one of them",
            target.step,
            target.step
        );
    }
    let plan = Plan::new(spec(target, vec![], false)?)?;
    render::out(&render::explain(&plan, only));
    Ok(ExitCode::SUCCESS)
}

/// What `lab explain STEP [--only L]` prints on this machine (its cgroup
/// version, its uplink); an error as a line of the text, for a lesson or a hint
/// to show in its place.
pub fn text(step: u8, only: Option<u8>) -> String {
    spec(&Target::at(step), vec![], false)
        .and_then(Plan::new)
        .map(|p| render::explain(&p, only))
        .unwrap_or_else(|e| format!("(lab explain {step}: {e:#})"))
}
