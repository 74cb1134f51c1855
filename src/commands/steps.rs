//! `lab steps`: the curriculum, with the steps and quizzes completed.

use crate::{engine::render, progress};
use anyhow::Result;
use std::process::ExitCode;

pub fn run() -> Result<ExitCode> {
    render::out(&render::steps(&progress::completed(), &progress::quizzes()));
    Ok(ExitCode::SUCCESS)
}
