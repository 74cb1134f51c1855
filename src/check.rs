//! Checks: proof, from the kernel, that a layer did what it says.
//!
//! A check never looks at what lab printed. It runs in one of four places:
//! - `Inside`: in a probe process that joins the container the way `nsenter` does
//!   (setns into its namespaces, chroot into its root), so it sees what the
//!   container sees. The same probe works on a container made by `lab step` and on
//!   one built by hand or by `lab script` (`lab check N --pid PID`).
//! - `Confined`: in a probe that has joined the container and then taken on the
//!   restrictions of its processes (from step 8: their capabilities,
//!   no_new_privs and seccomp filters), so it can do exactly what they can. An
//!   `Escape` (layers/escapes.rs) runs there too: an attempt to reach the host
//!   that should work until the step that closes it, and fail from then on.
//! - `Host`: in lab, on the host, while the container runs.
//! - `AfterExit`: in lab, after the container is gone (is the host as it was?).

use crate::layers::{Gathered, Layer};
use crate::sys;
use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::any::Any;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Check {
    pub layer: u8,
    /// What is being proved, as a short sentence.
    pub name: &'static str,
    /// For a student whose check failed: the usual cause and how to look.
    pub hint: &'static str,
    pub kind: Kind,
}

pub enum Kind {
    Inside(fn(&Probe) -> Outcome),
    Confined(fn(&Probe) -> Outcome),
    Escape(Escape),
    Host(fn(&Probe) -> Outcome),
    AfterExit(fn(&Before) -> Outcome),
}

/// A way out of the container that works until the step whose layer closes it.
/// One check: at earlier steps it passes when the escape works (what the step
/// does not protect against), from `closed_at` on when it fails. The check's
/// `hint` is for an escape that still works from `closed_at`.
#[derive(Clone, Copy)]
pub struct Escape {
    pub closed_at: u8,
    pub attempt: fn(&Probe) -> Attempt,
    /// For an escape that failed before `closed_at`, where it should work.
    pub hint_open: &'static str,
}

/// What an escape attempt found.
pub enum Attempt {
    /// It reached the host: what it saw there.
    Reached(String),
    /// It was stopped: by what (the errno, and the layer that made it so).
    Stopped(String),
    /// Nothing to try here, and why.
    Untried(String),
}

impl Escape {
    /// The outcome at `step` of what the attempt found.
    pub fn outcome(&self, step: u8, attempt: Attempt) -> Outcome {
        let open = step < self.closed_at;
        let closer = self.closed_at;
        match (attempt, open) {
            (Attempt::Reached(d), true) => Outcome::Pass(format!(
                "it works at step {step}, as expected (step {closer} closes it): {d}"
            )),
            (Attempt::Stopped(d), true) => Outcome::Fail(format!(
                "expected to work until step {closer}, but it was stopped: {d}"
            )),
            (Attempt::Stopped(d), false) => {
                Outcome::Pass(format!("closed since step {closer}: {d}"))
            }
            (Attempt::Reached(d), false) => Outcome::Fail(format!(
                "still works at step {step}, though step {closer} should close it: {d}"
            )),
            (Attempt::Untried(d), _) => Outcome::Skip(d),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl Outcome {
    /// Pass when `ok`, else fail, with the same detail either way.
    pub fn from(ok: bool, detail: impl Into<String>) -> Outcome {
        if ok {
            Outcome::Pass(detail.into())
        } else {
            Outcome::Fail(detail.into())
        }
    }
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass(_))
    }
    /// A skipped check (nothing to prove here, e.g. no port published) is no failure.
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass(d) | Outcome::Fail(d) | Outcome::Skip(d) => d,
        }
    }
}

/// A check and how it came out.
pub struct Report {
    pub layer: u8,
    pub name: &'static str,
    pub hint: &'static str,
    pub outcome: Outcome,
}

/// What the checks know about the container and the host. Made on the host before
/// the probe joins the container; plain data, so it survives the fork.
pub struct Probe {
    /// The step whose checks run (the container may be of another step).
    pub step: u8,
    /// A process of the container, as the host numbers it.
    pub target: Pid,
    /// The container's name, when lab knows it (its hostname from step 4).
    pub name: Option<String>,
    /// Device and inode of the directory that should be the container's `/` (None:
    /// it does not exist on the host).
    pub root: Option<(u64, u64)>,
    pub root_path: PathBuf,
    /// A file that exists on the host, outside the root filesystem.
    pub marker: PathBuf,
    /// What the checks compare with on the host: its root disk, its namespaces.
    pub host: HostFacts,
    /// That directory, opened before joining: what a bind mount (a volume) brings
    /// into a container, a way to a host file (`root-only`, the host root's, mode
    /// 0600).
    pub host_dir: File,
    /// A directory of lab's run directory for what the checks make on the host
    /// (removed after them; `lab clean` removes what a killed run left there).
    pub fixtures: PathBuf,
    /// What each layer's checks need, gathered on the host (layers::Hooks::probe_data).
    data: Vec<(u8, Gathered)>,
}

/// A file of the fixtures that only the host's root may read and write.
pub const ROOT_ONLY: &str = "root-only";

/// Facts about the host, read in lab before the probe joins the container.
pub struct HostFacts {
    /// The device of the host's `/` (st_dev), and what is mounted there.
    pub root_dev: u64,
    pub root_source: String,
    /// The superblock of that device (bytes 1024-2047) as lab reads it on the
    /// host, or why it cannot (not a block device; a sandbox around this machine).
    pub root_superblock: Result<Vec<u8>, String>,
    /// lab's own mount namespace (the host's).
    pub mnt_ns: Option<u64>,
    /// lab's own PID: a process of the host, with the host's root.
    pub lab_pid: u32,
}

impl HostFacts {
    fn read() -> HostFacts {
        let root_dev = std::fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
        let (major, minor) = (
            nix::sys::stat::major(root_dev),
            nix::sys::stat::minor(root_dev),
        );
        let root_source = crate::mountinfo::parse_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        )
        .into_iter()
        .rev()
        .find(|m| m.mount_point == "/")
        .map(|m| format!("{} {}", m.source, m.fs_type))
        .unwrap_or_else(|| "?".into());
        // /sys/dev/block/MAJ:MIN exists for block devices only; its uevent names
        // the node in /dev.
        let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
            .unwrap_or_default();
        let root_superblock = match uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
            None => Err(format!(
                "the host's / ({root_source}) is not on a block device"
            )),
            Some(name) => {
                let node = Path::new("/dev").join(name);
                read_superblock(&node).map_err(|e| {
                    format!(
                        "lab cannot read {} on the host either ({e}): something around this machine guards its disks",
                        node.display()
                    )
                })
            }
        };
        HostFacts {
            root_dev,
            root_source,
            root_superblock,
            mnt_ns: ns_inode("self", "mnt"),
            lab_pid: std::process::id(),
        }
    }

    /// Is the calling process (having joined the container) in the host's mount
    /// namespace: a container without one of its own?
    pub fn shares_mount_namespace(&self) -> bool {
        self.mnt_ns.is_some() && ns_inode("self", "mnt") == self.mnt_ns
    }
}

/// Bytes 1024-2047 of a filesystem on a block device: where ext2/3/4 (and others)
/// keep their superblock.
pub fn read_superblock(device: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(device)?;
    f.seek(SeekFrom::Start(1024))?;
    let mut buf = vec![0u8; 1024];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

impl Probe {
    /// The data layer `layer` gathered for its checks, or the failed check that
    /// says why it could not.
    pub fn data<T: Any>(&self, layer: u8) -> Result<&T, Outcome> {
        match self.data.iter().find(|(l, _)| *l == layer) {
            Some((_, Ok(d))) => d
                .downcast_ref()
                .ok_or_else(|| Outcome::Fail(format!("layer {layer} gathered something else"))),
            Some((_, Err(e))) => Err(Outcome::Fail(e.clone())),
            None => Err(Outcome::Fail(format!(
                "layer {layer} gathered nothing for its checks"
            ))),
        }
    }
}

/// The host as it was before the container started, and after it is gone, as
/// each layer that changes it sees it (layers::Hooks::host_before).
pub struct Before {
    /// The container's name.
    pub name: String,
    layers: Vec<&'static Layer>,
    /// The other containers of lab running at the start and at the end: what
    /// they made on the host may come and go meanwhile, and is not this one's.
    pub others_before: Vec<String>,
    pub others_after: Vec<String>,
    states: Vec<HostState>,
}

/// What one layer recorded of the host: before, and (once [`Before::now`] ran) after.
struct HostState {
    layer: u8,
    before: Box<dyn Any>,
    after: Option<Box<dyn Any>>,
}

impl Before {
    pub fn take(step: u8, name: &str) -> Before {
        let state = crate::state::container_dir(name);
        let layers = crate::layers::active(step);
        let states = layers
            .iter()
            .filter_map(|l| {
                Some(HostState {
                    layer: l.number,
                    before: l.hooks.host_before(&state)?,
                    after: None,
                })
            })
            .collect();
        Before {
            name: name.to_string(),
            layers,
            others_before: crate::state::live_names_but(name),
            others_after: vec![],
            states,
        }
    }
    /// Record the host as it is now, after the container is gone.
    pub fn now(mut self) -> Before {
        for s in &mut self.states {
            if let Some(layer) = self.layers.iter().find(|l| l.number == s.layer) {
                s.after = layer.hooks.host_after(s.before.as_ref());
            }
        }
        self.others_after = crate::state::live_names_but(&self.name);
        self
    }
    /// What layer `layer` recorded before and after, if it did.
    pub fn compare<T: Any>(&self, layer: u8) -> Option<(&T, &T)> {
        let s = self.states.iter().find(|s| s.layer == layer)?;
        Some((s.before.downcast_ref()?, s.after.as_ref()?.downcast_ref()?))
    }
    /// The other containers running at the start or at the end, by name.
    pub fn others(&self) -> Vec<String> {
        let mut all = self.others_before.clone();
        all.extend(self.others_after.iter().cloned());
        all.sort();
        all.dedup();
        all
    }
}

pub fn host_hostname() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The inode of `/proc/PID/ns/NAME`: two processes share a namespace exactly when
/// these are equal.
pub fn ns_inode(pid: &str, name: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{name}"))
        .ok()
        .map(|m| m.ino())
}

/// Everything the checks of `step` need from the host: the files and objects they
/// look for from inside. Removed again when dropped.
struct Fixtures {
    probe: Probe,
}

impl Fixtures {
    fn make(step: u8, target: Pid, rootfs: &Path, name: Option<String>) -> Result<Fixtures> {
        let dir = crate::state::run_dir().join(format!("check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host_dir = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        // From here on, what is made is removed on every way out, errors included.
        let mut fixtures = Fixtures {
            probe: Probe {
                step,
                target,
                name,
                root: std::fs::metadata(rootfs).ok().map(|m| (m.dev(), m.ino())),
                root_path: rootfs.to_path_buf(),
                marker: dir.join("host-file"),
                host: HostFacts::read(),
                host_dir,
                fixtures: dir,
                data: vec![],
            },
        };
        crate::state::fault_point("the checks' fixtures")?;
        std::fs::write(
            &fixtures.probe.marker,
            "this file lives on the host, outside the container\n",
        )?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let secret = fixtures.probe.fixtures.join(ROOT_ONLY);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&secret)
                .and_then(|mut f| f.write_all(b"the host's root alone may read this\n"))
                .with_context(|| format!("writing {}", secret.display()))?;
        }
        for layer in crate::layers::active(step) {
            if let Some(data) = layer.hooks.probe_data(&fixtures.probe)? {
                fixtures.probe.data.push((layer.number, data));
            }
        }
        Ok(fixtures)
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        // The layers' host objects first (they are removed as they are dropped),
        // then the directory.
        self.probe.data.clear();
        let _ = crate::state::remove_tree(&self.probe.fixtures);
    }
}

/// `lab clean`, or the next run: the checks' fixtures of a run that was killed.
pub fn remove_left_fixtures(dir: &Path) {
    for layer in crate::layers::all() {
        layer.hooks.remove_left_fixtures(dir);
    }
}

/// How many processes a `/proc` shows.
pub fn count_processes(proc: &Path) -> usize {
    pids_in(proc).len()
}

pub fn pids_in(proc: &Path) -> Vec<u32> {
    std::fs::read_dir(proc)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every check of layers 1..=step.
pub fn checks_for(step: u8) -> Vec<Check> {
    crate::layers::active(step)
        .iter()
        .flat_map(|l| (l.checks)(step))
        .collect()
}

/// Run the `Inside` and `Host` checks of `step` against the container that `target`
/// belongs to. `AfterExit` checks are left for [`after_exit`].
pub fn run(step: u8, target: Pid, rootfs: &Path, name: Option<String>) -> Result<Vec<Report>> {
    let checks: Vec<Check> = checks_for(step)
        .into_iter()
        .filter(|c| !matches!(c.kind, Kind::AfterExit(_)))
        .collect();
    // Before any fixture is made: a wrong PID leaves nothing behind.
    if crate::state::ProcessId::of(target.as_raw()).is_none() {
        anyhow::bail!(
            "process {target} not found: is the container still running? (lab ps lists lab's)"
        );
    }
    let fixtures = Fixtures::make(step, target, rootfs, name)?;
    let probe = &fixtures.probe;
    let mut outcomes: Vec<Option<Outcome>> = checks
        .iter()
        .map(|c| match c.kind {
            Kind::Host(f) => Some(f(probe)),
            _ => None,
        })
        .collect();
    let inside: Vec<usize> = (0..checks.len())
        .filter(|i| outcomes[*i].is_none())
        .collect();
    if !inside.is_empty() {
        let lines = run_inside(&checks, &inside, probe)?;
        for line in lines.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(i), Some(status), Some(detail)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            if i < outcomes.len() {
                outcomes[i] = Some(match status {
                    "pass" => Outcome::Pass(detail.into()),
                    "skip" => Outcome::Skip(detail.into()),
                    _ => Outcome::Fail(detail.into()),
                });
            }
        }
    }
    Ok(checks
        .into_iter()
        .zip(outcomes)
        .map(|(c, o)| Report {
            layer: c.layer,
            name: c.name,
            hint: match c.kind {
                // An escape that failed where it should still work.
                Kind::Escape(e) if step < e.closed_at => e.hint_open,
                _ => c.hint,
            },
            outcome: o.unwrap_or_else(|| {
                Outcome::Fail("the probe inside the container gave no answer".into())
            }),
        })
        .collect())
}

/// The process to grade when a student names one by hand. The launchers of the
/// lessons' commands are not the container: `unshare --fork` stays outside the
/// pid namespace it makes and waits for its child, and `bwrap` (step 8) waits for
/// the command it started in a mount namespace of its own. Given one of them,
/// lab follows it down to the process it started. Returns that process and, when
/// it is not `pid`, the way there, for the student to read.
pub fn graded(pid: Pid) -> (Pid, Option<String>) {
    const LAUNCHERS: [&str; 2] = ["unshare", "bwrap"];
    let comm = |p: Pid| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default()
    };
    let mut path = Vec::new();
    let mut at = pid;
    while LAUNCHERS.contains(&comm(at).as_str()) {
        let children = children_of(at);
        let [only] = children[..] else { break };
        path.push(format!("{} (PID {at})", comm(at)));
        at = only;
    }
    if path.is_empty() {
        return (pid, None);
    }
    let way = format!(
        "{} → {} (PID {at}): grading the last, the process the launchers started",
        path.join(" → "),
        comm(at)
    );
    (at, Some(way))
}

/// The children of process `pid`, from /proc.
fn children_of(pid: Pid) -> Vec<Pid> {
    pids_in(Path::new("/proc"))
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.to_string()))
                .and_then(|r| r.split_whitespace().nth(1).map(String::from))
                .is_some_and(|ppid| ppid == pid.to_string())
        })
        .map(|p| Pid::from_raw(p as i32))
        .collect()
}

/// The checks that compare the host after the container is gone with before.
pub fn after_exit(step: u8, before: &Before) -> Vec<Report> {
    checks_for(step)
        .into_iter()
        .filter_map(|c| match c.kind {
            Kind::AfterExit(f) => Some(Report {
                layer: c.layer,
                name: c.name,
                hint: c.hint,
                outcome: f(before),
            }),
            _ => None,
        })
        .collect()
}

/// Fork a probe that joins the container, forks again so that it is inside the pid
/// namespace too, and runs the inside checks there; each confined check (and
/// escape) in a process of its own that first takes on the restrictions of the
/// container's processes. Answers come back over a pipe, one line per check:
/// `INDEX<TAB>pass|fail|skip<TAB>DETAIL`.
fn run_inside(checks: &[Check], which: &[usize], probe: &Probe) -> Result<String> {
    // Read on the host, before joining: what the container's processes may not do.
    let confine = join_last(probe.target)?;
    let (read_end, write_end) = nix::unistd::pipe().context("pipe")?;
    match sys::fork()? {
        ForkResult::Child => {
            drop(read_end);
            let code = match probe_main(checks, which, probe, &confine, write_end) {
                Ok(()) => 0,
                Err(e) => {
                    errln!("lab: the probe could not join the container: {e:#}");
                    1
                }
            };
            // Leave without running the parent's destructors (they belong to lab).
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut out = String::new();
            File::from(read_end).read_to_string(&mut out)?;
            let _ = waitpid(child, None);
            Ok(out)
        }
    }
}

fn probe_main(
    checks: &[Check],
    which: &[usize],
    probe: &Probe,
    confine: &[Box<dyn crate::plan::Action>],
    out: OwnedFd,
) -> Result<()> {
    join(probe.target)?;
    // setns(CLONE_NEWPID) only applies to children: fork once more to be inside.
    match sys::fork()? {
        ForkResult::Child => {
            let mut out = File::from(out);
            for &i in which {
                let outcome = match checks[i].kind {
                    Kind::Inside(f) => f(probe),
                    Kind::Confined(f) => confined(confine, || f(probe)),
                    Kind::Escape(e) => {
                        confined(confine, || e.outcome(probe.step, (e.attempt)(probe)))
                    }
                    _ => continue,
                };
                let (status, detail) = match &outcome {
                    Outcome::Pass(d) => ("pass", d),
                    Outcome::Fail(d) => ("fail", d),
                    Outcome::Skip(d) => ("skip", d),
                };
                let detail = detail.replace(['\n', '\t'], " ");
                let _ = writeln!(out, "{i}\t{status}\t{detail}");
            }
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(out);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                other => anyhow::bail!("the probe ended with {other:?}"),
            }
        }
    }
}

/// Run `check` in a child process that has taken on the container's restrictions
/// (`confine`): what it changes in itself (its root, its namespaces, its
/// privileges) goes with it.
fn confined(confine: &[Box<dyn crate::plan::Action>], check: impl FnOnce() -> Outcome) -> Outcome {
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("pipe: {e}")),
    };
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(rd);
            let outcome = match confine.iter().try_for_each(|a| a.apply()) {
                Ok(()) => check(),
                Err(e) => Outcome::Fail(format!(
                    "the probe could not take on the container's restrictions: {e:#}"
                )),
            };
            let (status, detail) = match &outcome {
                Outcome::Pass(d) => ('p', d),
                Outcome::Fail(d) => ('f', d),
                Outcome::Skip(d) => ('s', d),
            };
            let _ = write!(File::from(wr), "{status}{detail}");
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            let mut answer = String::new();
            let _ = File::from(rd).read_to_string(&mut answer);
            let _ = waitpid(child, None);
            let mut chars = answer.chars();
            match chars.next() {
                Some('p') => Outcome::Pass(chars.collect()),
                Some('s') => Outcome::Skip(chars.collect()),
                Some('f') => Outcome::Fail(chars.collect()),
                _ => Outcome::Fail("the confined probe died without an answer".into()),
            }
        }
        Err(e) => Outcome::Fail(format!("{e:#}")),
    }
}

/// Enter the cgroups, namespaces and root of process `target`, as `nsenter --all
/// --root` does (nsenter leaves the cgroups alone).
pub fn join(target: Pid) -> Result<()> {
    // What layers do first, while the host's files are still in view (its cgroups).
    for action in join_first(target, crate::layers::last_step())? {
        action.apply()?;
    }
    enter(target)
}

/// What the layers up to `step` do first when a process joins the container of
/// `target` (step 6: join its cgroups).
pub fn join_first(target: Pid, step: u8) -> Result<Vec<Box<dyn crate::plan::Action>>> {
    let mut all = Vec::new();
    for layer in crate::layers::active(step) {
        all.extend(layer.hooks.join_first(target)?);
    }
    Ok(all)
}

/// What every layer takes away from a process that joins the container of
/// `target`, prepared on the host, applied after joining (step 8: the
/// capabilities, no_new_privs and seccomp filters of its processes).
pub fn join_last(target: Pid) -> Result<Vec<Box<dyn crate::plan::Action>>> {
    let mut all = Vec::new();
    for layer in crate::layers::all() {
        all.extend(layer.hooks.join_last(target)?);
    }
    Ok(all)
}

/// The namespaces of `target` this process does not share, with nsenter's flag
/// for each.
pub fn namespaces_to_enter(target: Pid) -> Vec<(&'static str, &'static str, CloneFlags)> {
    let t = target.to_string();
    [
        // The user namespace first: it owns the others, and in it lab's probe
        // holds the capabilities that entering them takes.
        ("user", "-U", CloneFlags::CLONE_NEWUSER),
        ("net", "-n", CloneFlags::CLONE_NEWNET),
        ("ipc", "-i", CloneFlags::CLONE_NEWIPC),
        ("uts", "-u", CloneFlags::CLONE_NEWUTS),
        ("pid", "-p", CloneFlags::CLONE_NEWPID),
        ("mnt", "-m", CloneFlags::CLONE_NEWNS),
    ]
    .into_iter()
    .filter(|(name, _, _)| ns_inode(&t, name) != ns_inode("self", name))
    .collect()
}

/// Enter the namespaces and the root of process `target`. Every namespace file is
/// opened before the first setns: inside the container's mount namespace, the
/// host's /proc may be out of reach. The pid namespace applies to the children
/// forked after this, not to the caller.
pub fn enter(target: Pid) -> Result<()> {
    let t = target.to_string();
    let root = File::open(format!("/proc/{t}/root"))
        .with_context(|| format!("process {t} not found (is the container still running?)"))?;
    let mut files = Vec::new();
    for (name, _, flag) in namespaces_to_enter(target) {
        let f = File::open(format!("/proc/{t}/ns/{name}"))
            .with_context(|| format!("opening /proc/{t}/ns/{name}"))?;
        files.push((name, flag, f));
    }
    // Without root the namespace denies setgroups (read here, on the host).
    let groups_denied =
        std::fs::read_to_string(format!("/proc/{t}/setgroups")).is_ok_and(|s| s.trim() == "deny");
    let mut user = false;
    for (name, flag, f) in &files {
        setns(f.as_fd(), *flag)
            .with_context(|| format!("setns into the {name} namespace of {t}"))?;
        user |= *flag == CloneFlags::CLONE_NEWUSER;
    }
    nix::unistd::fchdir(&root).context("fchdir to the container's root")?;
    nix::unistd::chroot(".").context("chroot to the container's root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    if user {
        // In the container's user namespace lab's user (the host's root) is not
        // mapped: become its root, the mapped user, as nsenter does. (Without
        // root the namespace denies setgroups: the groups stay.)
        use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
        let (root, group) = (Uid::from_raw(0), Gid::from_raw(0));
        setresgid(group, group, group).context("setresgid(0) in the container's user namespace")?;
        if !groups_denied {
            setgroups(&[]).context("setgroups([]) in the container's user namespace")?;
        }
        setresuid(root, root, root).context("setresuid(0) in the container's user namespace")?;
    }
    Ok(())
}
