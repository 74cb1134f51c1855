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
mod container;
mod doctor;
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
use clap::{Parser, Subcommand};
use options::spec;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Rebuild a Linux container one kernel feature at a time",
    after_help = "Start with `lab steps`, then `lab explain 1` and `sudo lab step 1`; or `lab` alone, on a terminal, for a menu.",
    override_usage = "lab <COMMAND>\n       lab              (on a terminal: a menu)"
)]
struct Cli {
    /// Without one, on a terminal: a menu of what to do next
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// A step number of the curriculum, or a message that says which there are.
fn step_number(s: &str) -> Result<u8, String> {
    let last = layers::last_step();
    match s.parse::<u8>() {
        Ok(n) if (1..=last).contains(&n) => Ok(n),
        _ => Err(format!("lab has steps 1 to {last} (see lab steps)")),
    }
}

#[derive(clap::Args)]
struct Target {
    /// The step: layers 1 to N are switched on
    #[arg(value_parser = step_number)]
    step: u8,
    /// A directory holding a root filesystem [default: the one `lab rootfs` builds]
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// The container's name and hostname [default: the first free of c1, c2, ...]
    #[arg(long, value_name = "NAME", value_parser = container_name)]
    name: Option<String>,
    /// Step 7: the image to run (see `lab image ls`) [default: the root filesystem]
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Step 7: run this program instead of the image's Entrypoint ("" for none:
    /// the command alone), as docker run --entrypoint
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// Step 7: run the command as this user, a name or number of the image's
    /// /etc/passwd, with GROUP (as docker run --user) [default: the image's User, else root]
    #[arg(long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Step 7: keep the container's writable layer after exit, to look at it
    #[arg(long)]
    keep: bool,
    /// Step 6: the memory limit, in bytes or with K, M or G [default: 64M]
    #[arg(long, value_name = "SIZE", value_parser = memory_size, allow_hyphen_values = true)]
    memory: Option<u64>,
    /// Step 6: CPU time, as a share of one CPU [default: 0.5]
    #[arg(long, value_name = "SHARE", value_parser = cpu_share)]
    cpus: Option<f64>,
    /// Step 6: the most processes at once [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(8..))]
    pids: Option<u64>,
    /// Step 6: where the cgroups go in each hierarchy: /PATH from its root, or PATH
    /// below lab's own cgroup [default: /lab]
    /// (or from the environment variable LAB_CGROUP_PARENT)
    #[arg(long, value_name = "PATH")]
    cgroup_parent: Option<String>,
    /// Step 6, lab explain and lab script: print the commands of this cgroup version
    /// [default: the one in use]
    #[arg(long, value_enum)]
    cgroup: Option<layers::cgroups::Version>,
    /// Step 5: the subnet of the bridge lab0 [default: the one lab0 has, else the
    /// first of 10.200.0.0/24, 10.200.1.0/24, ... that no route of the host covers]
    #[arg(long, value_name = "CIDR", value_parser = layers::network::Subnet::parse)]
    subnet: Option<layers::network::Subnet>,
    /// Step 5: forward the host's TCP port to the container's (DNAT), like docker -p;
    /// may be given several times
    #[arg(long, short = 'p', value_name = "HOSTPORT:CONTAINERPORT", value_parser = layers::network::Publish::parse)]
    publish: Vec<layers::network::Publish>,
}

fn memory_size(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a size: use a number of bytes, or one with K, M or G (64M)");
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(err()),
    };
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(err)?;
    if bytes < 4 << 20 {
        return Err(format!("{s}: a container needs at least 4M to start"));
    }
    Ok(bytes)
}

fn cpu_share(s: &str) -> Result<f64, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match s.parse::<f64>() {
        Ok(v) if (0.01..=cpus).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: give a share of one CPU from 0.01 to {cpus} (0.5 is half a CPU)"
        )),
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// List the steps of the workshop
    Steps,
    /// Show a lesson in the terminal, through a pager: 0 (intro), 1 to 9, 10
    /// (closing) (without one: the list)
    Lesson {
        /// Which lesson: its number, or intro, closing
        which: Option<String>,
        /// Show the answers to the questions instead of folding them
        #[arg(long)]
        answers: bool,
    },
    /// Answer the questions of lesson N, multiple choice; exits 0 when all are right
    Quiz {
        /// Which lesson: its number, or intro, closing
        which: String,
        /// The answers as letters, one per question (`--answers bab`), without a
        /// terminal
        #[arg(long, value_name = "LETTERS")]
        answers: Option<String>,
    },
    /// The next hint for the first check of step N that failed in its last run:
    /// the cause, then the fix
    Hint {
        #[arg(value_parser = step_number)]
        step: u8,
    },
    /// Print Tab completion for a shell (bash: `lab completions bash >
    /// /etc/bash_completion.d/lab`)
    Completions { shell: clap_complete::Shell },
    /// Names for Tab completion: steps, lessons, images, containers
    #[command(hide = true)]
    Names { what: String },
    /// Build the first step you have not completed yet (all its checks passed)
    Next {
        /// What runs inside [default: /bin/sh]
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print the commands that build step N by hand (needs no root, changes nothing)
    Explain {
        #[command(flatten)]
        target: Target,
        /// Only the commands of this layer (and the line that runs the command)
        #[arg(long, value_name = "LAYER", value_parser = step_number)]
        only: Option<u8>,
    },
    /// Print a bash script that builds step N with those commands only
    Script {
        #[command(flatten)]
        target: Target,
        /// What the script runs inside [default: /bin/sh]
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Build step N, check every layer, then run a shell (or COMMAND) inside
    Step {
        #[command(flatten)]
        target: Target,
        /// Skip the checks: only build, run and remove the container (for timing it)
        #[arg(long)]
        no_checks: bool,
        /// Before each command, show it and wait for Enter (Ctrl-C stops and removes
        /// everything): to step through a layer live
        #[arg(long)]
        walk: bool,
        /// What runs inside [default: /bin/sh]
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Build step N, run every check, tear down; exit 0 only if all passed
    Verify {
        #[command(flatten)]
        target: Target,
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run the checks of step N against a running container, e.g. one built by hand
    Check {
        #[command(flatten)]
        target: Target,
        /// Any process of the container, as the host numbers it
        #[arg(long)]
        pid: i32,
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
    /// Build the default root filesystem (no download)
    Rootfs {
        /// Where the programs come from
        #[arg(long, value_enum, default_value = "auto")]
        from: rootfs::Source,
    },
    /// Import, list and remove the images of step 7
    Image {
        #[command(subcommand)]
        command: ImageCmd,
    },
    /// List the running containers: name, step, PID, address, published ports
    Ps,
    /// Draw a running container from the kernel's state: namespaces, processes,
    /// network path, cgroups, root filesystem (for a second terminal)
    Show {
        /// The container's name, as `lab ps` lists it [default: the only one running]
        #[arg(value_parser = container_name)]
        name: Option<String>,
        /// JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Run a program (default: a shell) in a running container, like nsenter
    Exec {
        /// The container's name, as `lab ps` lists it
        #[arg(value_parser = container_name)]
        name: String,
        /// What runs inside [default: /bin/sh]
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Check this machine: kernel features, cgroups, programs; say how to fix what is missing
    Doctor,
    /// Stop every container lab started and remove what it left on the host; keep
    /// the root filesystem, images and --keep layers unless --all
    Clean {
        /// Remove the default root filesystem, imported images and layers kept
        /// with --keep too
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Import a root filesystem tarball, a `docker save` archive or an OCI layout
    Import {
        /// The file (.tar, .tar.gz) or OCI layout directory; FILE:REF chooses
        /// one image of several, as skopeo writes it
        file: PathBuf,
        /// The image's name [default: its name in the archive, or the file's]
        #[arg(long)]
        name: Option<String>,
        /// Which image, when the file holds several (a tag of docker save, a
        /// ref.name of an OCI layout)
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
    },
    /// List the images
    Ls,
    /// Remove an image, and the layers no other image uses
    Rm { name: String },
}

fn container_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err("use 1-63 letters, digits and dashes (it becomes the hostname)".into())
    }
}

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
            if let Some((first, rest)) = lines.clone().split_once('\n') {
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
                        .map(|s| render::explain(&plan::Plan::new(s), Some(layer)))
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
            let plan = plan::Plan::new(spec(&target, vec![], false)?);
            render::out(&render::explain(&plan, only));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Script { target, command } => {
            let plan = plan::Plan::new(spec(&target, command, false)?);
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
            let how = rootfs::build(&path, from)?;
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
                .map(|s| render::explain(&plan::Plan::new(s), only))
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
