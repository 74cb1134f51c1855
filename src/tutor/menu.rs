//! `lab` with no arguments, on a terminal: a menu of what a student can do next.
//!
//! Each choice runs the same subcommand a student could type, and says which (so
//! the menu teaches the commands); then the menu comes back. Esc, q or Ctrl-C at
//! the menu leaves. Piped, or without a terminal, `lab` prints its help as before.

use anyhow::Result;
use colored::Colorize;
use std::process::ExitCode;

/// Run the menu; `run(args)` runs a command line of lab (`["lab", "step", "3"]`).
pub fn run(run: impl Fn(Vec<String>) -> Result<ExitCode>) -> Result<ExitCode> {
    outln!(
        "{}\n",
        "lab: rebuild a Linux container one kernel feature at a time".bold()
    );
    loop {
        take_back_terminal();
        let done = crate::progress::completed();
        let built = crate::engine::curriculum::built();
        let next = built.iter().copied().find(|n| !done.contains(n));
        let mut items = vec![match next {
            Some(n) => format!("Continue: build step {n}, {} (lab next)", title(n)),
            None => "Every step is completed: read the closing lesson".to_string(),
        }];
        items.extend(
            [
                "Read a lesson (lab lesson N)",
                "Explain a step: the commands to type by hand (lab explain N)",
                "Build a step, check it, get a shell inside (lab step N)",
                "Verify a step: build, check, tear down (lab verify N)",
                "Take a quiz (lab quiz N)",
                "Get the next hint for a failed check (lab hint N)",
                "Show my progress (lab steps)",
                "Clean up what lab left on this machine (lab clean)",
                "Quit",
            ]
            .map(String::from),
        );
        let chosen = match super::select("What next?", &items, 0) {
            Ok(n) => n,
            Err(e) if e.is::<super::Stopped>() => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e),
        };
        let args: Vec<String> = match chosen {
            0 => match next {
                Some(n) => words(&["step", &n.to_string()]),
                None => words(&["lesson", "closing"]),
            },
            1 => match lesson()? {
                Some(l) => words(&["lesson", &l]),
                None => continue,
            },
            2..=4 | 6 => {
                let verb = ["", "", "explain", "step", "verify", "", "hint"][chosen];
                match step(verb, next)? {
                    Some(n) => words(&[verb, &n.to_string()]),
                    None => continue,
                }
            }
            5 => match lesson()? {
                Some(l) => words(&["quiz", &l]),
                None => continue,
            },
            7 => words(&["steps"]),
            8 => words(&["clean"]),
            _ => return Ok(ExitCode::SUCCESS),
        };
        outln!("{}", format!("$ lab {}", args[1..].join(" ")).cyan());
        match run(args) {
            Ok(_) => {}
            Err(e) if e.is::<super::Stopped>() => {}
            Err(e) => errln!("lab: {e:#}"),
        }
        outln!("");
    }
}

/// Make lab's process group the terminal's foreground again. A shell in the
/// container (from step 3, busybox sh with job control as PID 2 of its pid
/// namespace) puts its own process group in the foreground; when it exits, the
/// terminal stays with that group, now gone. lab is then a background process,
/// and the kernel stops it (SIGTTOU) the moment the prompt sets the terminal's
/// mode: the student's shell says `[1]+ Stopped lab` and takes the keys. Taking
/// the terminal back from the background is itself a SIGTTOU unless the signal
/// is blocked for the call, as shells do.
fn take_back_terminal() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let stdin = std::io::stdin();
    let ours = nix::unistd::getpgrp();
    match nix::unistd::tcgetpgrp(&stdin) {
        Ok(foreground) if foreground != ours => {}
        _ => return,
    }
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut was = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut was)).is_ok() {
        let _ = nix::unistd::tcsetpgrp(&stdin, ours);
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&was), None);
    }
}

fn words(w: &[&str]) -> Vec<String> {
    std::iter::once("lab")
        .chain(w.iter().copied())
        .map(String::from)
        .collect()
}

fn title(n: u8) -> &'static str {
    crate::engine::curriculum::step(n).map_or("", |s| s.title)
}

/// A step, chosen from the built ones (the next to do first); None on Esc.
fn step(verb: &str, next: Option<u8>) -> Result<Option<u8>> {
    let built = crate::engine::curriculum::built();
    let items: Vec<String> = built
        .iter()
        .map(|n| format!("{n}  {}", title(*n)))
        .collect();
    let default = next
        .and_then(|n| built.iter().position(|b| *b == n))
        .unwrap_or(0);
    match super::select(&format!("lab {verb}: which step?"), &items, default) {
        Ok(i) => Ok(Some(built[i])),
        Err(e) if e.is::<super::Stopped>() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A lesson, by number; None on Esc.
fn lesson() -> Result<Option<String>> {
    let items: Vec<String> = crate::lesson::LESSONS
        .iter()
        .map(|l| {
            format!(
                "{:<12} {}",
                crate::lesson::label(l),
                crate::lesson::title(l)
            )
        })
        .collect();
    match super::select("Which lesson?", &items, 0) {
        Ok(i) => Ok(Some(
            crate::lesson::number(&crate::lesson::LESSONS[i]).to_string(),
        )),
        Err(e) if e.is::<super::Stopped>() => Ok(None),
        Err(e) => Err(e),
    }
}
