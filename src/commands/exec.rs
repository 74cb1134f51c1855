//! `lab exec NAME [-- COMMAND]`: a program in a running container, like nsenter
//! (exec.rs); lab exits with its code.

use super::need_root;
use crate::{engine::plan, exec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(name: &str, command: Vec<String>) -> Result<ExitCode> {
    need_root("exec")?;
    let command = if command.is_empty() {
        vec![plan::Spec::DEFAULT_COMMAND.to_string()]
    } else {
        command
    };
    let code = exec::exec(name, &command)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
