//! What lab leaves on the host, and how it is found again.
//!
//! - `/var/lib/lab` (`LAB_HOME`): the default root filesystem.
//! - `/run/lab` (`LAB_RUN`): one directory per running container,
//!   `containers/NAME/`, holding `owner` (the lab process that runs it) and `pid`
//!   (its first process), each as `PID STARTTIME` so that a reused PID is not
//!   mistaken for it, and `step`; from step 5 also `address` and `published`
//!   (`lab ps` shows them). A container whose owner is gone was left by a killed run:
//!   the next run, or `lab clean`, removes it.
//!
//! This file finds and claims; `clean.rs` removes (what killed runs left, and
//! `lab clean`).

mod clean;
use crate::dirs::{home, remove_tree, run_dir};
pub use clean::clean;
use clean::{is_stale, remove_container, remove_stale};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};

fn containers_dir() -> PathBuf {
    run_dir().join("containers")
}

/// The state directory of the container `name`.
pub fn container_dir(name: &str) -> PathBuf {
    containers_dir().join(name)
}

/// An exclusive lock on `run_dir/NAME.lock` between lab processes, held until
/// dropped: for the state that containers share (lab0, cgroup parents).
pub fn lock(name: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = run_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", path.display()))
}

/// A process, named so that a later process with the same number is told apart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessId {
    pub pid: i32,
    pub start: u64,
}

impl ProcessId {
    /// The process `pid`, if it is running (a zombie has finished: it only waits
    /// for its parent to read its exit status).
    pub fn of(pid: i32) -> Option<ProcessId> {
        let stat = crate::sys::proc_stat(&pid.to_string())?;
        // Fields 3 (state) and 22 (starttime), counted after the command name, which
        // may hold spaces.
        let mut after = stat.rsplit_once(')')?.1.split_whitespace();
        if after.next()? == "Z" {
            return None;
        }
        let start = after.nth(18)?.parse().ok()?;
        Some(ProcessId { pid, start })
    }
    pub fn parse(text: &str) -> Option<ProcessId> {
        let mut it = text.split_whitespace();
        Some(ProcessId {
            pid: it.next()?.parse().ok()?,
            start: it.next()?.parse().ok()?,
        })
    }
    pub fn alive(self) -> bool {
        ProcessId::of(self.pid) == Some(self)
    }
    pub fn text(self) -> String {
        format!("{} {}\n", self.pid, self.start)
    }
}

/// A container's name and state directory, held for as long as it runs.
pub struct Claim {
    pub name: String,
    pub dir: PathBuf,
    /// The containers this run's start found running (each looked at once):
    /// what a new container must not take (an address, a port) counts them
    /// without asking again, where one that has just ended counts a few
    /// milliseconds too long.
    pub seen_running: Vec<PathBuf>,
    /// Its `owner` file, locked (flock) while this lab runs: another lab sees
    /// the container running by a lock it cannot take, without reading the
    /// owner's /proc/PID/stat (see clean.rs, is_stale).
    _owner: nix::fcntl::Flock<std::fs::File>,
}

impl Claim {
    /// Take `name`, or the first free `c1`, `c2`, ... Directory creation is atomic,
    /// so two lab processes starting at once never get the same name.
    pub fn take(name: Option<&str>) -> Result<Claim> {
        let (said, running) = remove_stale()?;
        for line in said {
            errln!("lab: {line}");
        }
        let dir = containers_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let candidates: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => (1..=999).map(|i| format!("c{i}")).collect(),
        };
        // Read once, not for each name tried: the containers the start found
        // running (remove_stale), whose names are taken, and the names under the
        // directories of containers typed by hand.
        let hands = [run_dir().join("hand"), home().join("hand")];
        let in_hand: Vec<std::ffi::OsString> = hands
            .iter()
            .flat_map(|h| std::fs::read_dir(h).into_iter().flatten().flatten())
            .map(|e| e.file_name())
            .collect();
        // The names passed over for a layer that --keep left, to say why.
        let mut kept = Vec::new();
        for candidate in &candidates {
            let path = dir.join(candidate);
            if name.is_none() && running.contains(&path) {
                continue;
            }
            // A container typed by hand (the commands of lab explain, lab script)
            // keeps its files in hand/NAME: its name is taken while anything is
            // in it, and its files are never lab's to take or remove.
            let by_hand = hands
                .iter()
                .filter(|_| in_hand.iter().any(|n| n == candidate.as_str()))
                .map(|h| h.join(candidate))
                .find(|d| std::fs::read_dir(d).map_or(d.exists(), |mut e| e.next().is_some()));
            if let Some(hand) = by_hand {
                if name.is_some() {
                    bail!(
                        "a container typed by hand uses the name {candidate} ({} exists): choose another --name, or finish that one with its teardown",
                        hand.display()
                    );
                }
                continue;
            }
            let layer = home().join("containers").join(candidate);
            if layer.exists() && !path.exists() {
                // The writable layer an earlier `lab step 7 --keep` left: it
                // holds the name, as a stopped container of Docker's does, and
                // is never reused.
                if name.is_some() {
                    bail!(
                        "{} holds what an earlier container {candidate} changed (--keep), and the name with it: look at it, then remove it ({}rm -rf {}), or choose another --name",
                        layer.display(),
                        crate::dirs::sudo(),
                        layer.display()
                    );
                }
                kept.push(candidate.clone());
                continue;
            }
            for _attempt in 0..2 {
                match std::fs::create_dir(&path) {
                    Ok(()) => {
                        let me = ProcessId::of(std::process::id() as i32)
                            .context("reading /proc/self/stat")?;
                        // (Waiting: another lab's look may hold it shared for a moment.)
                        let owner = nix::fcntl::Flock::lock(
                            std::fs::File::create(path.join("owner"))?,
                            nix::fcntl::FlockArg::LockExclusive,
                        )
                        .map_err(|(_, e)| e)
                        .context("locking the container's owner file")?;
                        std::io::Write::write_all(&mut &*owner, me.text().as_bytes())?;
                        crate::sys::set_claim_lock(std::os::fd::AsRawFd::as_raw_fd(&*owner));
                        if let Some(said) = names_kept(candidate, &kept) {
                            errln!("lab: {said}");
                        }
                        return Ok(Claim {
                            name: candidate.clone(),
                            dir: path,
                            seen_running: running,
                            _owner: owner,
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if is_stale(&path) {
                            remove_container(&path)?;
                            let _ = crate::engine::curriculum::remove_shared_if_unused();
                            continue;
                        }
                        break;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", path.display()))
                    }
                }
            }
        }
        match name {
            Some(n) => {
                bail!("a container named {n} is already running: choose another --name, or stop it")
            }
            None => bail!("no free container name under {}", dir.display()),
        }
    }

    /// The container's first process and its step, once it exists.
    pub fn record(&self, pid: Pid, step: u8) {
        let _ = std::fs::write(self.dir.join("step"), format!("{step}\n"));
        if let Some(id) = ProcessId::of(pid.as_raw()) {
            let _ = std::fs::write(self.dir.join("pid"), id.text());
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // The plan's teardown took care of the container's layer (and --keep may
        // have kept it on purpose) and its cgroups; what is left is lab's own
        // bookkeeping: what the layers recorded here (the cgroup parents this run
        // created, if no other container uses them now), and the run state.
        for layer in crate::engine::curriculum::all() {
            layer.hooks.release(&self.dir);
        }
        let _ = remove_tree(&self.dir);
        // (The lock's descriptor closes with this struct: forks from now on
        // must not close whatever file reuses its number.)
        crate::sys::set_claim_lock(-1);
    }
}

/// Why a container got the name `name` when the names `kept` before it are free
/// of running containers: --keep left their writable layers, which hold them.
fn names_kept(name: &str, kept: &[String]) -> Option<String> {
    let dir = home().join("containers");
    let (layer, names, layers, them, those) = match kept {
        [] => return None,
        [one] => (
            "layer that --keep left holds the name",
            one.clone(),
            dir.join(one).display().to_string(),
            "it",
            "that name",
        ),
        [first @ .., last] => (
            "layers that --keep left hold the names",
            format!("{} and {last}", first.join(", ")),
            format!("{}/{{{}}}", dir.display(), kept.join(",")),
            "them",
            "those names",
        ),
    };
    Some(format!(
        "this container is {name}: the writable {layer} {names} ({layers}), until you remove {them} ({}rm -rf {layers} frees {those})",
        crate::dirs::sudo()
    ))
}

/// A process written in a state file (`owner`, `pid`).
fn read_id(dir: &Path, file: &str) -> Option<ProcessId> {
    ProcessId::parse(&crate::sys::read_small(&dir.join(file))?)
}

/// The state directories of the containers whose lab is still running.
pub fn live_containers() -> Vec<PathBuf> {
    std::fs::read_dir(containers_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| !is_stale(p))
                .collect()
        })
        .unwrap_or_default()
}

/// Like live_containers, but a container this run's start found running
/// (`seen`, Claim::seen_running) counts without asking again: for what a new
/// container must not take (an address, a port), where one that has just ended
/// counts a few milliseconds too long, and each start looks at every running
/// container once, not twice.
pub fn containers_holding_addresses(seen: &[PathBuf]) -> Vec<PathBuf> {
    std::fs::read_dir(containers_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| seen.contains(p) || !is_stale(p))
                .collect()
        })
        .unwrap_or_default()
}

/// Is some running container's state directory one that `wanted` accepts?
/// `wanted` is asked first and the owner only then, and the search ends at the
/// first: the last container leaving asks this, however many run.
pub fn any_live(wanted: impl Fn(&Path) -> bool) -> bool {
    std::fs::read_dir(containers_dir())
        .map(|d| {
            d.flatten()
                .any(|e| wanted(&e.path()) && !is_stale(&e.path()))
        })
        .unwrap_or(false)
}

/// The names of the running containers but `name`.
pub fn live_names_but(name: &str) -> Vec<String> {
    live_containers()
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != name)
        .collect()
}

/// A running container, as `lab ps` lists it.
pub struct Running {
    pub name: String,
    pub step: Option<u8>,
    /// Its first process, as the host numbers it (none yet while it starts).
    pub pid: Option<i32>,
    /// From step 5: its address, as `10.200.0.2/24`.
    pub address: Option<String>,
    /// From step 5: its published ports, as `8080:80`.
    pub published: Vec<String>,
}

/// The running containers, by name.
pub fn running() -> Vec<Running> {
    let mut list: Vec<Running> = live_containers()
        .iter()
        .map(|dir| {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            Running {
                name: dir.file_name().unwrap_or_default().to_string_lossy().into(),
                step: read("step").trim().parse().ok(),
                pid: read_id(dir, "pid").filter(|p| p.alive()).map(|p| p.pid),
                address: Some(read("address").trim().to_string()).filter(|a| !a.is_empty()),
                published: read("published").lines().map(String::from).collect(),
            }
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// The container's first process, as lab noted it in its state (container.rs
/// writes `pid` right after clone): for host commands that need it.
pub fn first_pid(name: &str) -> Result<i32> {
    let file = container_dir(name).join("pid");
    std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("container {name} has no PID in {}", file.display()))
}

/// The running container of lab that process `pid` belongs to: its first
/// process, or a descendant of it.
pub fn container_of(pid: i32) -> Option<Running> {
    let all = running();
    let mut at = pid;
    for _ in 0..16 {
        if let Some(c) = all.iter().position(|c| c.pid == Some(at)) {
            return all.into_iter().nth(c);
        }
        let stat = crate::sys::proc_stat(&at.to_string())?;
        at = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        if at <= 1 {
            return None;
        }
    }
    None
}

/// The running container `name`, with its first process.
pub fn find(name: &str) -> Result<(Running, i32)> {
    let all = running();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    let listed = if names.is_empty() {
        "no container is running".to_string()
    } else {
        format!("running: {}", names.join(", "))
    };
    let Some(found) = all.into_iter().find(|c| c.name == name) else {
        bail!("no running container is named {name} ({listed}; see lab ps)");
    };
    match found.pid {
        Some(pid) => Ok((found, pid)),
        None => bail!("container {name} is still starting or stopping: try again in a moment"),
    }
}

/// For the tests of cleanup only: with `LAB_FAULT=MODE:N` in the environment, at
/// the N-th point where lab has just made something on the host (counted from 1,
/// or the point's name instead of N), lab dies by SIGKILL (`kill`), fails as if
/// that step had failed (`error`), panics (`panic`), or gets SIGINT and goes on,
/// as when Ctrl-C comes at that moment (`interrupt`). Without LAB_FAULT it does
/// nothing. `LAB_FAULT_LOG=FILE` appends each point's number and name to FILE,
/// for the test to say where.
pub fn fault_point(what: &str) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let Ok(fault) = std::env::var("LAB_FAULT") else {
        return Ok(());
    };
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(log) = std::env::var_os("LAB_FAULT_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
        {
            let _ = writeln!(f, "{n} {what}");
        }
    }
    let (mode, at) = fault.split_once(':').unwrap_or((&fault, "0"));
    if at.parse::<usize>().ok() != Some(n) && at != what {
        return Ok(());
    }
    match mode {
        "interrupt" => {
            let _ = kill(Pid::this(), Signal::SIGINT);
            Ok(())
        }
        "kill" => {
            let _ = kill(Pid::this(), Signal::SIGKILL);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        "panic" => panic!("fault injected after {what} (LAB_FAULT={fault})"),
        _ => bail!("fault injected after {what} (LAB_FAULT={fault})"),
    }
}

#[cfg(test)]
mod tests {
    use super::names_kept;

    #[test]
    fn a_name_passed_over_for_a_kept_layer_is_said() {
        assert_eq!(names_kept("c1", &[]), None);
        let dir = crate::dirs::home().join("containers");
        let sudo = crate::dirs::sudo();
        let one = names_kept("c2", &["c1".into()]).unwrap();
        assert_eq!(
            one,
            format!(
                "this container is c2: the writable layer that --keep left holds the name c1 ({0}/c1), until you remove it ({sudo}rm -rf {0}/c1 frees that name)",
                dir.display()
            )
        );
        let three = names_kept("c5", &["c1".into(), "c2".into(), "c4".into()]).unwrap();
        assert!(
            three.starts_with("this container is c5: the writable layers that --keep left hold the names c1, c2 and c4 ("),
            "{three}"
        );
        assert!(
            three.contains(&format!(
                "rm -rf {}/{{c1,c2,c4}} frees those names",
                dir.display()
            )),
            "{three}"
        );
    }
}
