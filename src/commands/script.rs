//! `lab script N [-- COMMAND]`: a bash script that builds step N with the
//! commands of `lab explain N` only.

use crate::{cli::Target, engine::plan::Plan, engine::render, options::spec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(target: &Target, command: Vec<String>) -> Result<ExitCode> {
    let plan = Plan::new(spec(target, command, false)?)?;
    render::out(&render::script(&plan));
    Ok(ExitCode::SUCCESS)
}
