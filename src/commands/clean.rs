//! `lab clean [--all]`: stop lab's containers and remove what lab left on the
//! host (state/clean.rs).

use super::need_root;
use crate::engine::state;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(all: bool) -> Result<ExitCode> {
    need_root("clean")?;
    let done = state::clean(all)?;
    if done.is_empty() {
        outln!("Nothing to clean: lab left nothing on this host.");
    }
    for line in done {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
