//! `lab check N --pid PID [--json]`: the checks of step N against a container
//! that is already running: lab's, one built by hand from the lessons, or one
//! of another runtime (Docker, Podman, runc, ...), graded on what it has.

use super::{need_root_below_9, note_progress, print_verdict};
use crate::engine::check::{self, Maker};
use crate::{cli::Target, engine::state, options::spec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(target: &Target, pid: i32, json: bool) -> Result<ExitCode> {
    need_root_below_9("check", target.step)?;
    // Before who made it is said: a wrong PID gets one line.
    check::ensure_running(nix::unistd::Pid::from_raw(pid))?;
    let mut spec = spec(target, vec![], false)?;
    let (pid, way) = check::graded(nix::unistd::Pid::from_raw(pid));
    if let Some(way) = way {
        errln!("lab: {way}");
    }
    // A container of lab's keeps its files where lab keeps them.
    let (name, maker) = match state::container_of(pid.as_raw()) {
        Some(running) => {
            spec.by_hand = false;
            spec.name = running.name.clone();
            (Some(running.name), Maker::Lab)
        }
        None => (target.name.clone(), check::maker_of(pid.as_raw())),
    };
    // The directory its / should be: lab's own place for its containers and
    // the recipe's (whose --rootfs is the image, as `lab script` takes it);
    // for another runtime's, the one given, at every step, or where the host
    // sees the container's root (its mount table says).
    let root = match (&target.rootfs, &maker) {
        (_, Maker::Lab | Maker::ByHand) => spec.new_root(),
        (Some(_), Maker::Other(_)) => spec.rootfs.clone(),
        (None, Maker::Other(who)) => {
            let found = check::find_root(pid.as_raw());
            errln!("lab: a container of {who}: each check says what it found, and the hints speak of that runtime's settings");
            errln!(
                "lab: its root: {} (give --rootfs DIR to compare it with another)",
                found.how
            );
            found.path
        }
    };
    let reports = check::run(spec.step, pid, &root, name, maker.clone())?;
    // The checks first: what is said of them (a hint above, a step completed)
    // comes after.
    let code = print_verdict(&reports, json);
    // A container typed by hand that passes completes its step too (another
    // runtime's is not the student's work).
    if !maker.is_other() {
        note_progress(spec.step, &reports);
    }
    Ok(code)
}
