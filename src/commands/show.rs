//! `lab show [NAME] [--json]`: a running container drawn from the kernel's
//! state (show.rs).

use crate::{engine::render, show};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(name: Option<&str>, json: bool) -> Result<ExitCode> {
    let shown = show::look(&show::find(name)?)?;
    render::out(&if json {
        show::json(&shown)
    } else {
        show::text(&shown)
    });
    Ok(ExitCode::SUCCESS)
}
