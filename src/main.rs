//! lab: rebuild a Linux container one kernel feature at a time.
//!
//! Start reading at `layers/` (one file or folder per layer), then the engine
//! they plug into: `engine/layer.rs` and `engine/plan.rs` (how a layer is
//! described), `engine/container.rs` and `engine/init.rs` (how a step runs) and
//! `engine/check/` (how it is proved). ARCHITECTURE.md has the map. This file parses
//! the command line (`cli.rs`) and hands each subcommand to its file in
//! `commands/`.

// Every unsafe block lives in sys/, each with its reason: nowhere else.
#![deny(unsafe_code)]

/// `println!`, but a reader that went away does not stop lab (see output.rs).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::out(&format!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!`, but a closed stderr (`lab step 3 2>&1 | head`) is no panic.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::err(&format!("{}\n", format_args!($($arg)*))) };
}

mod cli;
mod commands;
#[cfg(test)]
mod dependencies;
mod devices;
mod dirs;
mod doctor;
mod engine;
mod exec;
mod image;
mod inspect;
mod layers;
mod lesson;
mod mountinfo;
mod netlink;
mod options;
mod output;
mod progress;
mod rootfs;
mod show;
#[allow(unsafe_code)]
mod sys;
mod tutor;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Cmd};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Whether lab runs without root is decided now, before any namespace changes
    // what geteuid says.
    dirs::rootless();
    // The engine runs the curriculum it is handed: the layers, one per step.
    engine::curriculum::set(layers::STEPS);
    if !std::io::stdout().is_terminal() {
        colored::control::set_override(false);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<engine::container::Interrupted>() {
                errln!("lab: {i}");
                return ExitCode::from(128 + i.signal as u8);
            }
            if let Some(s) = e.downcast_ref::<tutor::Stopped>() {
                errln!("lab: {s}: nothing was recorded");
                return ExitCode::from(130);
            }
            let mut lines = format!("{e:#}");
            if let Some(hint) = engine::error::hint_of(&e) {
                lines = format!("{lines}\n  hint: {hint}");
            }
            errln!("lab: {lines}");
            ExitCode::FAILURE
        }
    }
}

/// Each subcommand to its file in commands/, with the values clap parsed.
fn run(cli: Cli) -> Result<ExitCode> {
    let Some(command) = cli.command else {
        if tutor::interactive() {
            // Each choice of the menu is a command line, as a student types it.
            return tutor::menu::run(|args| run(Cli::parse_from(args)));
        }
        // Piped, or without a terminal: the help, as clap prints it without a
        // subcommand.
        let help = <Cli as clap::CommandFactory>::command().render_help();
        engine::render::err(&help.to_string());
        return Ok(ExitCode::from(2));
    };
    match command {
        Cmd::Steps => commands::steps::run(),
        Cmd::Lesson { which, answers } => commands::lesson::run(which.as_deref(), answers),
        Cmd::Quiz { which, answers } => commands::quiz::run(&which, answers.as_deref()),
        Cmd::Hint { step } => commands::hint::run(step),
        Cmd::Completions { shell } => commands::completions::run(shell),
        Cmd::Names { what } => commands::completions::names(&what),
        Cmd::Next { command } => commands::next::run(command),
        Cmd::Explain { target, only } => commands::explain::run(&target, only),
        Cmd::Script { target, command } => commands::script::run(&target, command),
        Cmd::Step {
            target,
            no_checks,
            walk,
            verbose,
            command,
        } => commands::step::run(&target, no_checks, walk, verbose, command),
        Cmd::Verify {
            target,
            json,
            verbose,
        } => commands::verify::run(&target, json, verbose),
        Cmd::Check { target, pid, json } => commands::check::run(&target, pid, json),
        Cmd::Rootfs { from } => commands::rootfs::run(from),
        Cmd::Image { command } => commands::image::run(command),
        Cmd::Ps => commands::ps::run(),
        Cmd::Show { name, json } => commands::show::run(name.as_deref(), json),
        Cmd::Inspect { target, json } => commands::inspect::run(&target, json),
        Cmd::Exec { name, command } => commands::exec::run(&name, command),
        Cmd::Doctor => commands::doctor::run(),
        Cmd::Clean { all } => commands::clean::run(all),
    }
}
