//! Layer 6, part 4: the checks, which make the kernel enforce each limit.
//!
//! The probe joins the container's cgroups, then exhausts memory (an OOM kill)
//! and forks until the pids limit stops it. For the CPU quota, busy loops spin in
//! the container while lab watches them from the host. The cgroup directories are
//! opened on the host first: after pivot_root the container cannot see
//! /sys/fs/cgroup.

use super::hierarchy::*;
use crate::engine::check::{Check, Kind, Outcome, Probe};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Write as _};
use std::path::PathBuf;

// ── The checks ─────────────────────────────────────────────────────────────────

pub(super) fn checks(_step: u8) -> Vec<Check> {
    vec![
        super::LAYER.check(
            "the container's first process is in its own cgroup",
            "The container is still in lab's cgroup: the shell that becomes unshare must join its own cgroup (its PID in cgroup.procs) before it starts anything. Look with `cat /proc/PID/cgroup` on the host, PID the container's first process.",
            Kind::Host(in_own_cgroup),
        ),
        super::LAYER.check(
            "a cgroup namespace of its own: inside, its cgroup is the root, /",
            "Inside, /proc/self/cgroup shows paths other than /: no cgroup namespace (unshare --cgroup), or one made before the shell joined its cgroup, whose root is then the cgroup it was in (paths like /../../lab/c1). Compare `cat /proc/self/cgroup` inside and on the host.",
            Kind::Inside(own_cgroup_namespace),
        ),
        super::LAYER.check(
            "allocating over the memory limit is OOM-killed; the container lives on",
            "Nothing was killed: no memory limit, or the process swapped instead (set memory.swap.max to 0). See memory.events (v2) or memory.failcnt (v1).",
            Kind::Confined(memory_limit_kills),
        ),
        super::LAYER.check(
            "a fork loop stops at the pids limit",
            "fork never failed: no pids limit. See pids.max and pids.current of the container's cgroup.",
            Kind::Confined(fork_loop_stops),
        ),
        super::LAYER.check(
            "busy loops get about the CPU share of the limit",
            "Either the busy loops got more CPU than the quota allows (see cpu.max on v2, cpu.cfs_quota_us and cpu.cfs_period_us on v1), or the machine was too busy for them to reach the quota, so the kernel never had to throttle them: run the step again when the machine is idle.",
            Kind::Host(cpu_share_limited),
        ),
        // Limits root inside could lift itself (escapes.rs).
        crate::layers::escapes::cgroup_limits(),
    ]
}

/// The container's cgroup directories, opened on the host before the probe joins
/// (after pivot_root the container cannot see /sys/fs/cgroup).
pub(super) struct ProbeDirs {
    pub version: Version,
    pub memory: File,
    pub cpu: File,
    pub pids: File,
    /// lab's own memory cgroup, read on the host before the probe joined.
    pub host_memory_path: String,
    /// The cgroup namespaces of lab (the host's) and of the container.
    pub host_cgroup_ns: Option<u64>,
    pub cgroup_ns: Option<u64>,
}

/// The cgroups process `target` is in, as /proc/PID/cgroup says.
pub(super) fn probe_dirs(target: &str) -> Result<ProbeDirs> {
    let version = detect()?;
    let dir = |controller: &str| -> Result<(File, String)> {
        let (root, key) = match version {
            Version::V2 => (PathBuf::from(CGROUP_ROOT), ""),
            Version::V1 => (
                v1_mount(controller).with_context(|| format!("no {controller} hierarchy"))?,
                controller,
            ),
        };
        let path = cgroup_of(target, key)
            .with_context(|| format!("process {target} has no {controller} cgroup"))?;
        let full = root.join(path.trim_start_matches('/'));
        Ok((
            File::open(&full).with_context(|| format!("opening {}", full.display()))?,
            path,
        ))
    };
    let (memory, _) = dir("memory")?;
    let host_memory_path =
        own_cgroup(if version == Version::V2 { "" } else { "memory" }).unwrap_or_default();
    Ok(ProbeDirs {
        host_memory_path,
        host_cgroup_ns: crate::engine::check::ns_inode("self", "cgroup"),
        cgroup_ns: crate::engine::check::ns_inode(target, "cgroup"),
        version,
        memory,
        cpu: dir("cpu")?.0,
        pids: dir("pids")?.0,
    })
}

pub(super) fn dirs(p: &Probe) -> Result<&ProbeDirs, Outcome> {
    p.data(super::LAYER.number)
}

/// Read a file of a cgroup directory opened on the host.
fn read_at(dir: &File, name: &str) -> Option<String> {
    use std::os::fd::AsFd;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut s = String::new();
    File::from(fd).read_to_string(&mut s).ok()?;
    Some(s)
}

pub(super) fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

fn in_own_cgroup(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let key = if d.version == Version::V2 {
        ""
    } else {
        "memory"
    };
    // Read on the host, which sees the whole tree: a cgroup named after the
    // container (lab's containers, and those typed by hand, name theirs so),
    // not lab's own.
    let host = &d.host_memory_path;
    match cgroup_of(&p.target.to_string(), key) {
        Some(path) => {
            let named = p
                .name
                .as_deref()
                .map_or(true, |n| path.rsplit('/').next() == Some(n));
            Outcome::from(
                named && path != *host,
                format!(
                    "memory cgroup of the first process, as the host sees it: {path}; lab's: {host}{}",
                    p.name.as_deref().map(|n| format!("; the container's is named {n}")).unwrap_or_default()
                ),
            )
        }
        None => Outcome::Fail(format!("no /proc/{}/cgroup", p.target)),
    }
}

fn own_cgroup_namespace(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    // Read inside: the container's first process's cgroups, as its cgroup
    // namespace shows them (paths from that namespace's root).
    let text = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    let paths: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .collect();
    let at_root = !paths.is_empty() && paths.iter().all(|p| *p == "/");
    let own = d.cgroup_ns.is_some() && d.cgroup_ns != d.host_cgroup_ns;
    Outcome::from(
        at_root && own,
        format!(
            "/proc/1/cgroup inside: {}; its cgroup namespace is {}",
            text.lines().collect::<Vec<_>>().join(", "),
            if own { "its own" } else { "the host's" }
        ),
    )
}

/// The most processes the fork loop makes to reach a pids limit.
const MOST_PIDS_FILLED: u64 = 4096;

/// The machine's memory in bytes (MemTotal of /proc/meminfo).
fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kb << 10)
}

fn memory_limit_kills(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let (limit_file, events_file) = match d.version {
        Version::V2 => ("memory.max", "memory.events"),
        Version::V1 => ("memory.limit_in_bytes", "memory.oom_control"),
    };
    let Some(limit) = read_at(&d.memory, limit_file).and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return Outcome::Fail(format!("no memory limit: {limit_file} says max"));
    };
    // A limit at or above the machine's memory limits nothing: the machine
    // runs out first (and touching twice of it would hurt the host).
    let total = memory_total();
    if total.is_some_and(|t| limit >= t) {
        return Outcome::Fail(format!(
            "no memory limit: {limit_file} is {limit}, not below this machine's {} MB",
            total.unwrap_or(0) >> 20
        ));
    }
    let kills = || read_at(&d.memory, events_file).and_then(|t| field(&t, "oom_kill "));
    let before = kills();
    // Map and touch twice the limit, a page at a time (sys::fill_memory).
    let hog = match crate::sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            let len = (((2 * limit) >> 20) + 1) << 20;
            let len = usize::try_from(len).unwrap_or(usize::MAX >> 1);
            if crate::sys::fill_memory(len).is_err() {
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    let status = nix::sys::wait::waitpid(hog, None);
    let killed = matches!(
        status,
        Ok(nix::sys::wait::WaitStatus::Signaled(
            _,
            nix::sys::signal::Signal::SIGKILL,
            _
        ))
    );
    let after = kills();
    let init_alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), None).is_ok();
    let counted = match (before, after) {
        (Some(b), Some(a)) => format!("{events_file} oom_kill {b} -> {a}"),
        _ => format!(
            "failcnt {}",
            read_at(&d.memory, "memory.failcnt")
                .unwrap_or_default()
                .trim()
        ),
    };
    Outcome::from(
        killed && init_alive,
        format!(
            "a process touching {} MB under a {} MB limit was {}; {counted}; the container's init is {}",
            ((2 * limit) >> 20) + 1,
            limit >> 20,
            if killed { "OOM-killed (SIGKILL)" } else { "not killed" },
            if init_alive { "alive" } else { "gone" }
        ),
    )
}

fn fork_loop_stops(p: &Probe) -> Outcome {
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let Some(max) = read_at(&d.pids, "pids.max").and_then(|s| s.trim().parse::<u64>().ok()) else {
        return Outcome::Fail("no pids limit: pids.max says max".into());
    };
    if max > MOST_PIDS_FILLED {
        return Outcome::Skip(format!(
            "a pids limit of {max}: lab proves a limit by filling it, up to {MOST_PIDS_FILLED} processes, not this one"
        ));
    }
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("pipe: {e}")),
    };
    // A child that starts sleepers until the kernel refuses one, reports, and
    // kills them all. Each sleeper is a process of its own that shares the
    // looper's memory (clone with CLONE_VM, as vfork does): the kernel copies no
    // page tables, so the loop is quick even in a container whose CPU is limited.
    let looper = match crate::sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            let mut sleepers = Vec::new();
            let mut error = String::from("none");
            let mut peak = 0;
            for _ in 0..max + 16 {
                match crate::sys::spawn_sleeper() {
                    Ok(child) => sleepers.push(child),
                    Err(e) => {
                        error = format!("{e:?}");
                        break;
                    }
                }
                peak = peak.max(
                    read_at(&d.pids, "pids.current")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .unwrap_or(0),
                );
            }
            stop(&sleepers);
            let _ = writeln!(File::from(wr), "{} {error} {peak}", sleepers.len());
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    drop(wr);
    let mut report = String::new();
    let _ = File::from(rd).read_to_string(&mut report);
    let _ = nix::sys::wait::waitpid(looper, None);
    let mut f = report.split_whitespace();
    let (forks, error, peak) = (
        f.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
        f.next().unwrap_or("?").to_string(),
        f.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
    );
    Outcome::from(
        error == "EAGAIN" && peak <= max && forks < max,
        format!("the kernel refused a new process with {error} after {forks} of them (clone); pids.current peaked at {peak}, pids.max is {max}"),
    )
}

/// Kill the busy loops and reap them.
fn stop(spinners: &[nix::unistd::Pid]) {
    for s in spinners {
        let _ = nix::sys::signal::kill(*s, nix::sys::signal::Signal::SIGKILL);
    }
    for s in spinners {
        let _ = nix::sys::wait::waitpid(*s, None);
    }
}

/// Busy loops in the container, watched from the host. The kernel gives a cgroup
/// its quota of CPU time in each period and stops (throttles) its processes once
/// they have spent it, until the next period begins; then it counts the stop
/// (nr_throttled in cpu.stat) and lets them run again. So: watch the loops' own
/// CPU clocks until a period ends with a stop counted; what they got in it is
/// what the quota allows, and they can die at once (a throttled process cannot
/// even die until its cgroup gets CPU again). The watcher is lab, outside the
/// container's cgroup: inside, it would be stopped with the loops.
fn cpu_share_limited(p: &Probe) -> Outcome {
    use std::time::{Duration, Instant};
    let d = match dirs(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    // The quota and the period, in microseconds.
    let limit = match d.version {
        Version::V2 => read_at(&d.cpu, "cpu.max").and_then(|s| {
            let mut f = s.split_whitespace();
            Some((
                f.next()?.parse::<f64>().ok()?,
                f.next()?.parse::<f64>().ok()?,
            ))
        }),
        Version::V1 => {
            let q = read_at(&d.cpu, "cpu.cfs_quota_us").and_then(|s| s.trim().parse::<f64>().ok());
            let per =
                read_at(&d.cpu, "cpu.cfs_period_us").and_then(|s| s.trim().parse::<f64>().ok());
            q.zip(per).filter(|(q, _)| *q > 0.0)
        }
    };
    let Some((quota, period)) = limit else {
        return Outcome::Fail("no CPU limit (cpu.max or cpu.cfs_quota_us)".into());
    };
    let configured = quota / period;
    // As many busy loops as it takes to want more than the quota.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if configured >= cpus as f64 {
        return Outcome::Skip(format!(
            "the limit, {configured:.2} CPUs, is not less than the {cpus} this machine has: nothing for the kernel to throttle"
        ));
    }
    let loops = configured.ceil() as usize + 1;
    // The kernel's counts (cpu.stat, in both versions): of the periods in which
    // the cgroup wanted CPU, and of those in which it was stopped.
    let counts = || {
        let t = read_at(&d.cpu, "cpu.stat")?;
        Some((field(&t, "nr_periods ")?, field(&t, "nr_throttled ")?))
    };
    let spin = || -> ! {
        loop {
            std::hint::spin_loop();
        }
    };
    let started = match crate::engine::check::start_inside(p.target, loops, spin) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    // The CPU time of the loops, in microseconds: each process's CPU clock, which
    // the kernel brings up to date when it is read.
    let clocks: Vec<_> = started
        .pids
        .iter()
        .filter_map(|pid| nix::time::clock_getcpuclockid(*pid).ok())
        .collect();
    let used = || -> f64 {
        clocks
            .iter()
            .filter_map(|c| nix::time::clock_gettime(*c).ok())
            .map(|t| t.tv_sec() as f64 * 1e6 + t.tv_nsec() as f64 / 1e3)
            .sum()
    };
    if clocks.len() != loops {
        return Outcome::Fail("could not read the busy loops' CPU clocks".into());
    }
    // (Each look costs the loops CPU on a machine of one CPU: not too often.)
    let tick = Duration::from_micros(500);
    // Only a machine too busy to give the loops their quota gets this far; a
    // missing limit shows sooner, as a period in which they got more.
    let waited = Duration::from_micros(10 * period as u64) + Duration::from_millis(200);
    let start = Instant::now();
    let give_up = start + waited;
    // The kernel notices a spent quota at its next timer tick, so the loops may
    // run over it by a tick on each CPU (and get that much less next period).
    let over = quota * 1.25 + 10_000.0;
    let counted_before = counts();
    let clocks_at_start = used();
    let (mut this_period, mut since_start) = (counted_before, clocks_at_start);
    // Until a period ends in which the kernel stopped them. Ok: what they got
    // in it; Err(Some): more than the quota within one period; Err(None): no
    // period ended with a stop before lab gave up.
    let got: Result<f64, Option<f64>> = loop {
        std::thread::sleep(tick);
        // The clocks first: a period that starts between the two reads shows as
        // new, with what the loops got in the one that ended.
        let now = used();
        let counted = counts();
        if Instant::now() > give_up {
            break Err(None);
        }
        match (this_period, counted) {
            (Some((p0, t0)), Some((p, t))) => {
                if p == p0 && now - since_start > over {
                    break Err(Some(now - since_start));
                }
                if p == p0 + 1 && t > t0 {
                    break Ok(now - since_start);
                }
                // A period ended unthrottled, or lab itself was kept from
                // running for more than one (a busy machine): start again from
                // this one, never judging what spans several.
                if p != p0 {
                    (this_period, since_start) = (counted, now);
                }
            }
            _ if now - since_start > over => break Err(Some(now - since_start)),
            _ => {}
        }
    };
    let (counted, all) = (counts(), used());
    drop(started);
    let throttled = match (counted_before, counted) {
        (Some((_, t0)), Some((_, t))) => format!("cpu.stat nr_throttled {t0} -> {t}"),
        _ => "no nr_throttled in cpu.stat".into(),
    };
    let quota_said = format!(
        "the quota is {:.1} ms every {:.0} ms, {configured:.2} of a CPU",
        quota / 1000.0,
        period / 1000.0
    );
    match got {
        Ok(us) => Outcome::Pass(format!(
            "{loops} busy loops got {:.1} ms of CPU in a period, then none until the next ({throttled}){}; {quota_said}",
            us / 1000.0,
            if us < quota * 0.75 {
                ": the container's other processes had used the rest"
            } else if us > quota * 1.02 {
                ": the kernel looks at the quota at its timer ticks, so they ran over it a little (and get that much less next period)"
            } else {
                ""
            }
        )),
        Err(Some(us)) => Outcome::Fail(format!(
            "{loops} busy loops got {:.1} ms of CPU in one period; {quota_said}",
            us / 1000.0
        )),
        Err(None) => Outcome::Fail(format!(
            "{loops} busy loops were never stopped in {:.0} ms ({throttled}): they got {:.1} ms of CPU in all, {:.2} of a CPU; {quota_said}: the machine is too busy for them to reach it. Try again when it is idle (top shows what else runs)",
            waited.as_secs_f64() * 1000.0,
            all / 1000.0 - clocks_at_start / 1000.0,
            (all - clocks_at_start) / 1e6 / start.elapsed().as_secs_f64()
        )),
    }
}
