//! `lab verify N [--json]`: build step N, run every check, tear down; exit 0
//! only if all passed.

use super::{need_root_below_9, note_progress, print_verdict};
use crate::{cli::Target, engine::container, options::spec};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(target: &Target, json: bool) -> Result<ExitCode> {
    need_root_below_9("verify", target.step)?;
    let spec = spec(target, vec!["/bin/true".into()], true)?;
    let step = spec.step;
    let done = container::run(spec, target.name.as_deref(), container::Mode::Verify)?;
    note_progress(step, &done.reports);
    Ok(print_verdict(&done.reports, json))
}
