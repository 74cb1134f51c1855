//! The cgroups layer's options on lab's command line (`--memory`, `--cpus`,
//! `--pids`, `--cgroup-parent`, `--cgroup`), flattened into every subcommand
//! that builds a step (cli.rs): their values, their check against the step, and
//! the limits of the Spec they make (`spec.limits`, read by mod.rs).

use super::{Version, LAYER};
use anyhow::{bail, Result};

/// What the student chose for the cgroups; nothing given is the default of
/// [`Limits`].
#[derive(clap::Args, Debug, Default)]
#[group(id = "cgroups")]
pub struct Options {
    /// Step 6: the memory limit, in bytes or with K, M or G [default: 64M]
    #[arg(long, value_name = "SIZE", value_parser = memory_size, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Step 6: CPU time, as a share of one CPU [default: 0.5]
    #[arg(long, value_name = "SHARE", value_parser = cpu_share)]
    pub cpus: Option<f64>,
    /// Step 6: the most processes at once [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(8..))]
    pub pids: Option<u64>,
    /// Step 6: where the cgroups go in each hierarchy: /PATH from its root, or PATH
    /// below lab's own cgroup [default: /lab]
    /// (or from the environment variable LAB_CGROUP_PARENT)
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Step 6, lab explain and lab script: print the commands of this cgroup version
    /// [default: the one in use]
    #[arg(long, value_enum)]
    pub cgroup: Option<Version>,
}

impl Options {
    /// Before this layer's step nothing is limited: say so rather than ignore
    /// the options. `for_real` (lab step, lab verify): the container gets the
    /// cgroup version this machine has, whatever --cgroup says.
    pub fn check(&self, step: u8, for_real: bool) -> Result<()> {
        let cgroups = LAYER.number;
        let limits_given = self.memory.is_some() || self.cpus.is_some() || self.pids.is_some();
        let parent_given =
            self.cgroup_parent.is_some() && std::env::var_os("LAB_CGROUP_PARENT").is_none();
        if step < cgroups && (limits_given || parent_given || self.cgroup.is_some()) {
            bail!("--memory, --cpus, --pids, --cgroup-parent and --cgroup belong to step {cgroups} (cgroups) and later");
        }
        if for_real && self.cgroup.is_some() {
            bail!("--cgroup chooses what lab explain and lab script print: lab step uses the version this machine has");
        }
        Ok(())
    }

    /// The limits of the Spec: each option given, else its default; the parent
    /// from --cgroup-parent, else LAB_CGROUP_PARENT, else /lab.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            memory_bytes: self.memory.unwrap_or(defaults.memory_bytes),
            cpus: self.cpus.unwrap_or(defaults.cpus),
            pids: self.pids.unwrap_or(defaults.pids),
            parent: self
                .cgroup_parent
                .clone()
                .or_else(|| std::env::var("LAB_CGROUP_PARENT").ok())
                .unwrap_or(defaults.parent),
            version: self.cgroup,
        }
    }
}

/// `--memory`: 64M, 1G, 100000000; at least 4M, below which no container starts.
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

/// `--cpus`: a share of one CPU, up to as many CPUs as this machine has.
fn cpu_share(s: &str) -> Result<f64, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match s.parse::<f64>() {
        Ok(v) if (0.01..=cpus).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: give a share of one CPU from 0.01 to {cpus} (0.5 is half a CPU)"
        )),
    }
}

/// What step 6 limits, and where its cgroups live.
#[derive(Clone, Debug)]
pub struct Limits {
    pub memory_bytes: u64,
    /// CPU time per period, as a share of one CPU (0.2: 20 ms every 100 ms).
    pub cpus: f64,
    pub pids: u64,
    /// Where the container's cgroup goes in each hierarchy: absolute from the
    /// hierarchy's root, or relative to lab's own cgroup in it.
    pub parent: String,
    /// Print the commands of this version instead of the one in use (lab explain).
    pub version: Option<super::Version>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            cpus: 0.5,
            pids: 64,
            parent: "/lab".into(),
            version: None,
        }
    }
}
