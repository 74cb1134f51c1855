//! lab: rebuild a Linux container one kernel feature at a time.
//!
//! Start reading at `layers/` (one file or folder per layer), then `plan.rs` (how a
//! layer is described), `container.rs` and `init.rs` (how a step runs) and
//! `check/` (how it is proved). ARCHITECTURE.md has the map.

/// `println!`, but a reader that went away does not stop lab (see render::out).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::render::out(&format!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!`, but a closed stderr (`lab step 3 2>&1 | head`) is no panic.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::render::err(&format!("{}\n", format_args!($($arg)*))) };
}

mod check;
mod cli;
mod container;
mod doctor;
mod error;
mod exec;
mod image;
mod init;
mod layers;
mod lesson;
mod mountinfo;
mod netlink;
mod options;
mod plan;
mod progress;
mod render;
mod rootfs;
mod show;
mod state;
mod sys;
mod tutor;

use anyhow::{bail, Result};
use clap::Parser;
use cli::{Cli, Cmd, ImageCmd, Target};
use options::spec;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Whether lab runs without root is decided now, before any namespace changes
    // what geteuid says.
    layers::rootless();
    if !std::io::stdout().is_terminal() {
        colored::control::set_override(false);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<container::Interrupted>() {
                errln!("lab: {i}");
                return ExitCode::from(128 + i.0 as u8);
            }
            if let Some(s) = e.downcast_ref::<tutor::Stopped>() {
                errln!("lab: {s}: nothing was recorded");
                return ExitCode::from(130);
            }
            let mut lines = format!("{e:#}");
            if let Some(hint) = error::hint_of(&e) {
                lines = format!("{lines}\n  hint: {hint}");
            } else if let Some((first, rest)) = lines.clone().split_once('\n') {
                lines = format!("{first}\n  hint: {rest}");
            }
            errln!("lab: {lines}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let Some(command) = cli.command else {
        if tutor::interactive() {
            return tutor::menu::run(|args| run(Cli::parse_from(args)));
        }
        // Piped, or without a terminal: the help, as clap prints it without a
        // subcommand.
        let help = <Cli as clap::CommandFactory>::command().render_help();
        render::err(&help.to_string());
        return Ok(ExitCode::from(2));
    };
    match command {
        Cmd::Quiz { which, answers } => {
            let Some(l) = lesson::find(&which) else {
                bail!("there is no lesson {which:?}: lab lesson lists them");
            };
            let score = tutor::quiz::run(l, answers.as_deref())?;
            progress::record_quiz(lesson::number(l), score.right, score.of)?;
            Ok(if score.right == score.of {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Hint { step } => {
            let explain = |n: u8, layer: u8| {
                let args = ["lab".to_string(), "explain".into(), n.to_string()];
                match Cli::parse_from(args).command {
                    Some(Cmd::Explain { target, .. }) => spec(&target, vec![], false)
                        .and_then(plan::Plan::new)
                        .map(|p| render::explain(&p, Some(layer)))
                        .unwrap_or_else(|e| format!("(lab explain {n}: {e:#})")),
                    _ => String::new(),
                }
            };
            render::out(&tutor::hint::next(step, explain)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            render::out(&tutor::completions::script(shell, &mut cli));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Names { what } => {
            for name in tutor::completions::names(&what) {
                outln!("{name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Steps => {
            render::out(&render::steps(&progress::completed(), &progress::quizzes()));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lesson { which, answers } => lesson(which.as_deref(), answers),
        Cmd::Next { command } => {
            need_root("next")?;
            let done = progress::completed();
            let Some(n) = (1..=layers::last_step()).find(|n| !done.contains(n)) else {
                outln!(
                    "You have completed every step, 1 to {}. Read `lab lesson closing` for what comes next; {} lists them.",
                    layers::last_step(),
                    progress::path().display()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let mut args = vec!["lab".to_string(), "step".into(), n.to_string()];
            if !command.is_empty() {
                args.push("--".into());
                args.extend(command);
            }
            run(Cli::parse_from(args))
        }
        Cmd::Explain { target, only } => {
            if only.is_some_and(|l| l > target.step) {
                bail!(
                    "step {} has layers 1 to {}: --only takes one of them",
                    target.step,
                    target.step
                );
            }
            let plan = plan::Plan::new(spec(&target, vec![], false)?)?;
            render::out(&render::explain(&plan, only));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Script { target, command } => {
            let plan = plan::Plan::new(spec(&target, command, false)?)?;
            render::out(&render::script(&plan));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Step {
            target,
            no_checks,
            walk,
            command,
        } => {
            need_root_below_9("step", target.step)?;
            let spec = spec(&target, command, true)?;
            let mode = container::Mode::Step {
                checks: !no_checks,
                walk,
            };
            let step = spec.step;
            let done = container::run(spec, target.name.as_deref(), mode)?;
            if !no_checks {
                note_progress(step, &done.reports);
            }
            Ok(ExitCode::from(done.exit_code.clamp(0, 255) as u8))
        }
        Cmd::Verify { target, json } => {
            need_root_below_9("verify", target.step)?;
            let spec = spec(&target, vec!["/bin/true".into()], true)?;
            let step = spec.step;
            let done = container::run(spec, target.name.as_deref(), container::Mode::Verify)?;
            note_progress(step, &done.reports);
            Ok(print_verdict(&done.reports, json))
        }
        Cmd::Check { target, pid, json } => {
            need_root_below_9("check", target.step)?;
            let mut spec = spec(&target, vec![], false)?;
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
        Cmd::Rootfs { from } => {
            need_root("rootfs")?;
            let path = rootfs::default_path();
            let how = rootfs::build(&path, from, true)?;
            outln!("Root filesystem ready in {}: {how}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Image { command } => {
            let store = image::Store::open();
            match command {
                ImageCmd::Import {
                    file,
                    name,
                    reference,
                } => {
                    need_root("image import")?;
                    let done = store.import(&file, name.as_deref(), reference.as_deref())?;
                    render::out(&render::imported(&done));
                }
                ImageCmd::Ls => {
                    for (name, layers, source) in store.list() {
                        outln!(
                            "{name:<32} {layers:>2} layer{}  {source}",
                            if layers == 1 { " " } else { "s" }
                        );
                    }
                }
                ImageCmd::Rm { name } => {
                    need_root("image rm")?;
                    let layers = store.remove(&name)?;
                    outln!("Removed image {name} and {layers} layers no other image uses.");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ps => {
            render::out(&exec::ps());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Show { name, json } => {
            let shown = show::look(&show::find(name.as_deref())?)?;
            render::out(&if json {
                show::json(&shown)
            } else {
                show::text(&shown)
            });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { name, command } => {
            need_root("exec")?;
            let command = if command.is_empty() {
                vec![plan::Spec::DEFAULT_COMMAND.to_string()]
            } else {
                command
            };
            let code = exec::exec(&name, &command)?;
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Cmd::Doctor => {
            let findings = doctor::examine();
            render::out(&doctor::report(&findings));
            let missing = findings.iter().any(|f| f.state == doctor::State::Missing);
            Ok(if missing {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Clean { all } => {
            need_root("clean")?;
            let done = state::clean(all)?;
            if done.is_empty() {
                outln!("Nothing to clean: lab left nothing on this host.");
            }
            for line in done {
                outln!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A step whose checks all passed is completed (progress.rs).
fn note_progress(step: u8, reports: &[check::Report]) {
    if tutor::hint::note(step, reports) {
        errln!("lab: a check failed; its hint is above. `lab hint {step}` shows what to look at, and after that the fix");
    }
    if !reports.is_empty() && !reports.iter().any(|r| r.outcome.failed()) {
        if let Err(e) = progress::record(step) {
            errln!("lab: could not note step {step} as completed: {e:#}");
            return;
        }
        // A student who started in the middle: say what is left before it.
        let done = progress::completed();
        let before: Vec<String> = (1..step)
            .filter(|n| !done.contains(n))
            .map(|n| n.to_string())
            .collect();
        if !before.is_empty() {
            errln!(
                "lab: step {step} completed; before it, step(s) {} are not yet: sudo lab next runs the first of them, sudo lab steps shows your progress",
                before.join(", ")
            );
        }
    }
}

/// `lab lesson [WHICH] [--answers]`
fn lesson(which: Option<&str>, answers: bool) -> Result<ExitCode> {
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
    let explain = |n: u8, only: Option<u8>| {
        let args = ["lab".to_string(), "explain".into(), n.to_string()];
        match Cli::parse_from(args).command {
            Some(Cmd::Explain { target, .. }) => spec(&target, vec![], false)
                .and_then(plan::Plan::new)
                .map(|p| render::explain(&p, only))
                .unwrap_or_else(|e| format!("(lab explain {n}: {e:#})")),
            _ => String::new(),
        }
    };
    let text = lesson::fill(l.text, explain);
    let machine = lesson::Machine::from_explain(&explain(layers::last_step(), None));
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

fn print_verdict(reports: &[check::Report], json: bool) -> ExitCode {
    let failed = reports.iter().filter(|r| r.outcome.failed()).count();
    let passed = reports.iter().filter(|r| r.outcome.passed()).count();
    let skipped = reports.len() - failed - passed;
    if json {
        render::out(&render::json(reports));
    } else {
        render::out(&render::reports("Checks", reports));
        let skipped = match skipped {
            0 => String::new(),
            n => format!(" ({n} skipped: each says why)"),
        };
        outln!("\n{passed} of {} checks passed{skipped}.", reports.len());
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Steps 1 to 8 need root; step 9 runs without it, in a user namespace of the
/// user's own (rootless), with the layers a user can have.
fn need_root_below_9(what: &str, step: u8) -> Result<()> {
    let userns = layers::userns::LAYER.number;
    if !nix::unistd::geteuid().is_root() && step < userns {
        bail!("lab {what} {step} changes the kernel's view of processes and needs root: run it with sudo (sudo lab {what} {step}); without sudo only step {userns} runs, in a user namespace of your own (lab {what} {userns})");
    }
    Ok(())
}

fn need_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("lab {what} changes the kernel's view of processes and needs root: run it with sudo (sudo lab {what} ...)");
    }
    Ok(())
}
