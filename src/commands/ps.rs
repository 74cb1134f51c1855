//! `lab ps`: the running containers (exec.rs).

use crate::{engine::render, exec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run() -> Result<ExitCode> {
    render::out(&exec::ps());
    Ok(ExitCode::SUCCESS)
}
