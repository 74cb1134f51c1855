//! `lab check N --pid PID [--json]`: the checks of step N against a container
//! that is already running, lab's or one built by hand.

use super::{need_root_below_9, note_progress, print_verdict};
use crate::{cli::Target, engine::check, engine::state, options::spec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(target: &Target, pid: i32, json: bool) -> Result<ExitCode> {
    need_root_below_9("check", target.step)?;
    let mut spec = spec(target, vec![], false)?;
    let (pid, way) = check::graded(nix::unistd::Pid::from_raw(pid));
    if let Some(way) = way {
        errln!("lab: {way}");
    }
    // A container of lab's keeps its files where lab keeps them.
    let name = match state::container_of(pid.as_raw()) {
        Some(running) => {
            spec.by_hand = false;
            spec.name = running.name.clone();
            Some(running.name)
        }
        None => target.name.clone(),
    };
    let reports = check::run(spec.step, pid, &spec.new_root(), name)?;
    // A container typed by hand that passes completes its step too.
    note_progress(spec.step, &reports);
    Ok(print_verdict(&reports, json))
}
