//! `lab inspect PID|NAME [--json]`: any container, layer by layer, from the
//! kernel's state (inspect.rs). Changes nothing in it.

use crate::{engine::render, inspect};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(target: &str, json: bool) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "lab inspect reads other users' processes and joins their namespaces: run it with sudo"
        );
    }
    let found = inspect::look(inspect::target(target)?)?;
    render::out(&if json {
        inspect::json(&found)
    } else {
        inspect::text(&found)
    });
    Ok(ExitCode::SUCCESS)
}
