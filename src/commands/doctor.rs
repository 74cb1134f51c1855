//! `lab doctor`: what this machine has and lacks (doctor.rs); exits 1 when
//! something lab needs is missing.

use crate::{doctor, engine::render};
use anyhow::Result;
use std::process::ExitCode;

pub fn run() -> Result<ExitCode> {
    let findings = doctor::examine();
    render::out(&doctor::report(&findings));
    let missing = findings.iter().any(|f| f.state == doctor::State::Missing);
    Ok(if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
