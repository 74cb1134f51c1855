//! `lab completions SHELL`, and the hidden `lab names WHAT` that the script it
//! prints calls at each Tab: one family, in one file, since the second exists
//! only for the first (tutor/completions.rs has both).

use crate::{cli::Cli, engine::render, tutor};
use anyhow::Result;
use std::process::ExitCode;

/// The completion script of this command line, for bash, zsh, fish...
pub fn run(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cli = <Cli as clap::CommandFactory>::command();
    render::out(&tutor::completions::script(shell, &mut cli));
    Ok(ExitCode::SUCCESS)
}

/// The names a word can complete to: steps, lessons, images, containers.
pub fn names(what: &str) -> Result<ExitCode> {
    for name in tutor::completions::names(what) {
        outln!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}
