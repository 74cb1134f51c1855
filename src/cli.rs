//! The command line: what `lab --help` lists, and the values it takes (main.rs
//! hands them to the subcommand's file in commands/; options.rs turns a step's
//! options into a Spec).

use crate::{layers, rootfs};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Rebuild a Linux container one kernel feature at a time",
    after_help = "Start with `lab steps`, then `lab explain 1` and `sudo lab step 1`; or `lab` alone, on a terminal, for a menu.",
    override_usage = "lab <COMMAND>\n       lab              (on a terminal: a menu)"
)]
pub struct Cli {
    /// Without one, on a terminal: a menu of what to do next
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// A step number of the curriculum, or a message that says which there are.
pub fn step_number(s: &str) -> Result<u8, String> {
    let last = crate::engine::curriculum::last_step();
    match s.parse::<u8>() {
        Ok(n) if (1..=last).contains(&n) => Ok(n),
        _ => Err(format!("lab has steps 1 to {last} (see lab steps)")),
    }
}

#[derive(clap::Args, Debug, Default)]
pub struct Target {
    /// The step: layers 1 to N are switched on
    #[arg(value_parser = step_number)]
    pub step: u8,
    /// A directory holding a root filesystem [default: the one `lab rootfs` builds]
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// The container's name and hostname [default: the first free of c1, c2, ...]
    #[arg(long, value_name = "NAME", value_parser = container_name)]
    pub name: Option<String>,
    /// Step 7: the image, its command and user (the overlay layer's)
    #[command(flatten)]
    pub overlay: layers::overlay::Options,
    /// Step 6: the limits and where the cgroups go (the cgroups layer's)
    #[command(flatten)]
    pub cgroups: layers::cgroups::Options,
    /// Step 5: the bridge's subnet and the published ports (the network layer's)
    #[command(flatten)]
    pub network: layers::network::Options,
    /// Step 9: the range of host IDs printed (the user namespace layer's)
    #[command(flatten)]
    pub userns: layers::userns::Options,
}

impl Target {
    /// Step N with no other option, as `lab explain N` parses it (`lab next`
    /// builds it; lessons and hints quote what `lab explain N` prints). No
    /// option of Target has a default value of clap's: each is None, false or
    /// empty until given, as `Default` makes it.
    pub fn at(step: u8) -> Target {
        Target {
            step,
            ..Target::default()
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
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
        /// Print every command as lab runs it, and each check with its detail
        /// (by default: a line per layer, the checks' verdict, a summary)
        #[arg(long, short)]
        verbose: bool,
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
        /// Print each check with its detail before the summary
        #[arg(long, short)]
        verbose: bool,
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
    /// What is this container, layer by layer? Any container: Docker's, Podman's,
    /// runc's, lab's. Changes nothing in it
    Inspect {
        /// A process of the container, as the host numbers it, or the name of
        /// one of lab's containers
        #[arg(value_name = "PID|NAME")]
        target: String,
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
pub enum ImageCmd {
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

pub fn container_name(s: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the whole command line (unique names and groups:
    /// three layers call their options `Options`), which it otherwise makes
    /// only when a subcommand is used.
    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    /// `Target::at(N)` is what clap makes of `lab explain N`: were an option to
    /// get a default of clap's, the two would differ and this would say so.
    #[test]
    fn a_target_at_a_step_is_the_parsed_one() {
        let Some(Cmd::Explain { target, .. }) = Cli::parse_from(["lab", "explain", "5"]).command
        else {
            panic!("lab explain 5 is an explain");
        };
        assert_eq!(format!("{target:?}"), format!("{:?}", Target::at(5)));
    }
}
