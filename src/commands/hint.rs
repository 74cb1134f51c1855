//! `lab hint N`: the next hint for the first check of step N that failed in its
//! last run (tutor/hint.rs), with the commands of that layer as `lab explain`
//! prints them on this machine.

use crate::{engine::render, tutor};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(step: u8) -> Result<ExitCode> {
    let explain = |n: u8, layer: u8| super::explain::text(n, Some(layer));
    render::out(&tutor::hint::next(step, explain)?);
    Ok(ExitCode::SUCCESS)
}
