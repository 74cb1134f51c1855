//! `lab next [-- COMMAND]`: `lab step N` for the first step not completed yet.

use super::need_root;
use crate::{cli::Target, progress};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(command: Vec<String>) -> Result<ExitCode> {
    need_root("next")?;
    let done = progress::completed();
    let Some(n) = (1..=crate::engine::curriculum::last_step()).find(|n| !done.contains(n)) else {
        outln!(
            "You have completed every step, 1 to {}. Read `lab lesson closing` for what comes next; {} lists them.",
            crate::engine::curriculum::last_step(),
            progress::path().display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    // As `lab step N -- COMMAND` with no other option.
    super::step::run(&Target::at(n), false, false, false, command)
}
