//! `lab step N --walk`: lab stops before each command it is about to apply.
//!
//! On a terminal, a menu: run it; tell me more (the lesson's paragraph about it);
//! show the check that will prove it; stop (lab tears down what it made, as on
//! Ctrl-C). Without a terminal (a pipe, a test), lab waits for a line on standard
//! input as it always did: Enter runs the command.

use crate::engine::container::Interrupted;
use crate::engine::plan::{Command, Plan};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::Signal;

const RUN: usize = 0;
const MORE: usize = 1;
const CHECK: usize = 2;

/// Wait for the student's word before `command`. Ctrl-C, Esc or "stop" come
/// back as [`Interrupted`]: the caller tears the container down.
pub fn before(plan: &Plan, command: &Command) -> Result<()> {
    if !super::prompt::interactive() {
        return wait_for_enter();
    }
    let items = [
        "run it".to_string(),
        "tell me more (from the lesson)".into(),
        "show the check that will prove it".into(),
        "stop: remove everything and leave".into(),
    ];
    loop {
        match super::prompt::select("--walk", &items, RUN) {
            Ok(RUN) => return Ok(()),
            Ok(MORE) => crate::engine::render::out(&more(plan, command)),
            Ok(CHECK) => crate::engine::render::out(&checks(plan, command)),
            Ok(_) => return Err(Interrupted::chosen().into()),
            Err(e) if e.is::<super::prompt::Stopped>() => {
                return Err(Interrupted::by(Signal::SIGINT).into())
            }
            Err(e) => return Err(e),
        }
    }
}

/// The lesson's paragraphs that speak of this command (the one that names most
/// of its words), else the layer's idea and what to look at.
fn more(plan: &Plan, command: &Command) -> String {
    use colored::Colorize;
    let shell = command.action.shell();
    let layer = plan.layer(command.layer);
    let lesson = crate::lesson::find(&command.layer.to_string()).filter(|_| command.layer > 0);
    let found = lesson.and_then(|l| paragraph_about(l.text, &shell));
    let mut out = String::new();
    match (found, layer) {
        (Some(p), _) => {
            let number = command.layer;
            out.push_str(&format!(
                "\n  {}\n",
                format!("From lesson {number}:").bold()
            ));
            for line in crate::lesson::wrap(&p, 76).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        (None, Some(l)) => {
            out.push_str(&format!("\n  {} {}\n", "Layer:".bold(), l.idea));
            out.push_str(&format!("  {} {}\n", "Look:".bold(), l.look));
        }
        (None, None) => out.push_str(&format!("\n  {}\n", command.why)),
    }
    if let Some(l) = lesson {
        out.push_str(&format!(
            "  {}\n\n",
            format!(
                "(the whole lesson: lab lesson {})",
                crate::lesson::number(l)
            )
            .dimmed()
        ));
    }
    out
}

/// The paragraph of a lesson (prose, not its code blocks or questions) that
/// speaks most of the words of `shell`: a word found in few paragraphs (an
/// option such as `--make-rprivate`) counts more than one found in many (`mount`).
fn paragraph_about(lesson: &str, shell: &str) -> Option<String> {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut code = false;
    for line in lesson.lines() {
        if line.starts_with("## Questions") {
            break;
        }
        if line.starts_with("```") {
            code = !code;
            continue;
        }
        let trimmed = line.trim();
        let starts_item = trimmed.starts_with("- ");
        if code
            || trimmed.is_empty()
            || trimmed.starts_with('#')
            || trimmed.starts_with("<!--")
            || starts_item
        {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            if code || !starts_item {
                continue;
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(trimmed.trim_start_matches("- "));
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    let words: Vec<String> = shell
        .split(|c: char| c.is_whitespace() || "\"';|&()<>=$,".contains(c))
        .map(|w| w.trim_start_matches('-').to_lowercase())
        .filter(|w| {
            w.len() >= 3 && !w.starts_with('/') && w.chars().any(|c| c.is_ascii_alphabetic())
        })
        .collect();
    let lower: Vec<String> = paragraphs.iter().map(|p| p.to_lowercase()).collect();
    let weight = |w: &str| {
        let n = lower.iter().filter(|p| p.contains(w)).count();
        if n == 0 {
            0.0
        } else {
            1.0 / n as f64
        }
    };
    let (best, score) = lower
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut seen: Vec<&str> = Vec::new();
            let score: f64 = words
                .iter()
                .filter(|w| {
                    p.contains(w.as_str()) && !seen.contains(&w.as_str()) && {
                        seen.push(w);
                        true
                    }
                })
                .map(|w| weight(w))
                .sum();
            (i, score)
        })
        .fold((0, 0.0), |best, x| if x.1 > best.1 { x } else { best });
    (score > 0.0).then(|| paragraphs[best].clone())
}

/// The checks of the command's layer, which lab runs once the container is built.
fn checks(plan: &Plan, command: &Command) -> String {
    use colored::Colorize;
    let Some(layer) = plan.layer(command.layer) else {
        return "\n  This line is lab's own, for the commands typed by hand: no check looks at it.\n\n"
            .into();
    };
    let mut out = format!(
        "\n  {}\n",
        format!(
            "Once the container is built, lab proves layer {} with these checks:",
            layer.number
        )
        .bold()
    );
    for c in (layer.checks)(plan.spec.step) {
        out.push_str(&format!("  - {}\n", c.name));
    }
    out.push_str(&format!(
        "  {}\n\n",
        format!(
            "(lab check {} --pid PID runs them on a container you built by hand)",
            plan.spec.step
        )
        .dimmed()
    ));
    out
}

/// Without a terminal: a line on standard input runs the command. Read byte by
/// byte from standard input, so that a signal interrupts the wait.
pub fn wait_for_enter() -> Result<()> {
    use colored::Colorize;
    crate::engine::render::out(&format!(
        "    {}",
        "[--walk] press Enter to run it, Ctrl-C to stop and remove everything ".bold()
    ));
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(std::io::stdin(), &mut byte) {
            Ok(0) => bail!("--walk: standard input was closed before the step was done"),
            Ok(_) if byte[0] == b'\n' => {
                // A terminal echoes the Enter; from a pipe, end the line here.
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    crate::engine::render::out("\n");
                }
                return Ok(());
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {
                if let Some(signal) = crate::sys::take_signal() {
                    return Err(Interrupted::by(signal).into());
                }
            }
            Err(e) => return Err(e).context("--walk: reading standard input"),
        }
    }
}
