//! `lab lesson [WHICH] [--answers]`: the list of lessons, or one of them in the
//! terminal with the commands as this machine needs them, through a pager.

use crate::{engine::render, lesson};
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run(which: Option<&str>, answers: bool) -> Result<ExitCode> {
    let Some(which) = which else {
        outln!("The lessons (lab lesson NUMBER; in a browser: lessons/ of lab's repository):\n");
        for l in lesson::LESSONS {
            outln!(
                "  {:<12} {}  (lessons/{})",
                lesson::label(l),
                lesson::title(l),
                l.file
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(l) = lesson::find(which) else {
        let keys: Vec<String> = lesson::LESSONS.iter().map(lesson::label).collect();
        bail!(
            "there is no lesson {which:?}: choose one of {}",
            keys.join(", ")
        );
    };
    // The commands as this machine needs them (its cgroup version, its uplink).
    let explain = super::explain::text;
    let text = lesson::fill(l.text, explain);
    let machine =
        lesson::Machine::from_explain(&explain(crate::engine::curriculum::last_step(), None));
    page(&lesson::for_terminal(
        &text,
        &lesson::number(l).to_string(),
        answers,
        &machine,
    ));
    Ok(ExitCode::SUCCESS)
}

/// Through `$PAGER` (or `less -R`) on a terminal; as it is otherwise, or when
/// there is no pager.
fn page(text: &str) {
    use std::io::{IsTerminal, Write};
    if std::io::stdout().is_terminal() {
        let pager = std::env::var("PAGER")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "less -R".into());
        let mut words = pager.split_whitespace();
        if let Some(program) = words.next() {
            let spawned = std::process::Command::new(program)
                .args(words)
                .stdin(std::process::Stdio::piped())
                .spawn();
            if let Ok(mut child) = spawned {
                if let Some(mut input) = child.stdin.take() {
                    // The reader may quit before the end: not an error.
                    let _ = input.write_all(text.as_bytes());
                }
                let _ = child.wait();
                return;
            }
        }
    }
    render::out(text);
}
