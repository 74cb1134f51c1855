//! `lab quiz N [--answers LETTERS]`: the questions of a lesson; the score goes
//! to the progress file.

use crate::{lesson, progress, tutor};
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run(which: &str, answers: Option<&str>) -> Result<ExitCode> {
    let Some(l) = lesson::find(which) else {
        bail!("there is no lesson {which:?}: lab lesson lists them");
    };
    let score = tutor::quiz::run(l, answers)?;
    progress::record_quiz(lesson::number(l), score.right, score.of)?;
    Ok(if score.right == score.of {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
