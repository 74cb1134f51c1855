//! lab beside the other ways to start a container, in one run on one machine.
//!
//! `sudo bench/run` builds what it needs and runs this (`cargo bench --bench
//! compare`), which times `/bin/true` started in a container by:
//! - `lab step N --no-checks` for N = 1..9 (and step 5 with two published ports),
//!   and `lab verify 5` and `lab verify 7`
//!   (every check), with lab0 held by another container and alone;
//! - the commands of `lab script N` run by bash: the same layers as shell commands;
//! - `unshare ... chroot`, `bwrap --unshare-all`, `crun run` and `runc run` (OCI
//!   bundles of a copy of the same root filesystem, with pid, network, ipc, uts
//!   and mount namespaces and a 64 MB memory limit), and `bench/floor.c`: clone
//!   with every namespace flag, pivot_root, /proc, exec, the least it takes;
//! - where step 7's time goes: the phases and slowest commands that
//!   `LAB_TIMINGS=1` prints, medians over the rounds;
//! - step 7 while 0, 9 and 49 other containers share lab0 (1, 10, 50 in all; 10
//!   and 50 in turns);
//! - without root (as user nobody): `lab step 9 --no-checks` beside `unshare
//!   --user --map-root-user`, `bwrap --unshare-user` and `crun run` (in a user
//!   namespace of unshare's) on the same root filesystem (the one lab builds for
//!   that user), with the same namespaces.
//!
//! Everything runs in a network namespace of its own, with one other container
//! holding lab0 up as in a classroom (except the rows that say otherwise), the
//! commands interleaved (A B C A B C ...) so that other load falls on all alike.
//! It prints Markdown tables: medians, ranges, and each command's ratio to the lab
//! step that does the same work. Figures, not a pass/fail test.

mod common;

use common::own_cgroups::{is_mount, own_cgroups};
use common::{count_sleepers, wait_until, Running};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One line of the table.
struct Row {
    name: String,
    /// The lab step that does the same work, for the ratio.
    like: Option<Like>,
    command: Command,
    times: Vec<Duration>,
}

/// A lab step, as root or without root: what a row is compared with.
#[derive(Clone, Copy)]
struct Like {
    step: u8,
    rootless: bool,
}

fn like(step: u8) -> Option<Like> {
    Some(Like {
        step,
        rootless: false,
    })
}

const ROOTLESS: Option<Like> = Some(Like {
    step: 9,
    rootless: true,
});

impl Like {
    fn row_name(&self) -> String {
        match self.rootless {
            false => format!("lab step {} --no-checks", self.step),
            true => format!("lab step {} --no-checks, without root", self.step),
        }
    }

    fn label(&self) -> String {
        match self.rootless {
            false => format!("step {}", self.step),
            true => format!("step {} without root", self.step),
        }
    }
}

fn main() {
    if !common::root_in_own_network("compare") {
        return;
    }
    // Under `cargo test --all-targets` (no --bench): one round of what is installed,
    // to keep the benchmark working, and no figures.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = match smoke {
        true => 1,
        false => std::env::var("LAB_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(31),
    };
    let (tmp, home, run, disks) = common::dirs_with_rootfs("bench-compare");
    let lab = |args: &[&str]| common::lab(&home, &run, args);
    let rootfs = home.join("rootfs");
    let root = rootfs.to_str().unwrap().to_string();

    let _parents = RemoveParents;
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |name: &str, like: Option<Like>, command: Command| {
        rows.push(Row {
            name: name.into(),
            like,
            command,
            times: vec![],
        })
    };
    let mut missing = Vec::new();
    match floor(&tmp) {
        Some(floor) => row(
            "floor: C, clone with every namespace, pivot_root, /proc, exec",
            like(4),
            command(&floor, &[&root, "/bin/true"]),
        ),
        None => missing.push("cc (apt-get install gcc)"),
    }
    row(
        "unshare --fork --pid --mount --uts --ipc --net --mount-proc chroot",
        like(4),
        command(
            "unshare",
            &[
                "--fork",
                "--pid",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--mount-proc",
                "chroot",
                &root,
                "/bin/true",
            ],
        ),
    );
    if installed("bwrap") {
        let args = ["--unshare-all", "--bind", &root, "/", "--proc", "/proc"];
        let mut c = command("bwrap", &args);
        c.arg("/bin/true");
        row("bwrap --unshare-all", like(4), c);
    } else {
        missing.push("bwrap (apt-get install bubblewrap)");
    }
    let oci = OciRuntimes::prepare(&tmp, &run, &rootfs);
    for runtime in ["crun", "runc"] {
        if installed(runtime) {
            row(
                &format!("{runtime} run, 64 MB memory limit"),
                like(6),
                oci.run(runtime),
            );
        } else {
            missing.push(if runtime == "crun" {
                "crun (apt-get install crun)"
            } else {
                "runc (apt-get install runc)"
            });
        }
    }
    // One container keeps lab0 and lab's rules up, as in a classroom (the scripts
    // are printed while it runs: they then take the next address).
    let holder = common::hold_lab0(&lab);
    for n in 1..=9u8 {
        let s = n.to_string();
        row(
            &format!("lab step {n} --no-checks"),
            like(n),
            lab(&["step", &s, "--no-checks", "--", "/bin/true"]),
        );
        if n == 5 {
            // Two published ports: four rules added and removed (one
            // iptables-restore each way).
            row(
                "lab step 5 --no-checks, 2 published ports",
                like(5),
                lab(&[
                    "step",
                    "5",
                    "--no-checks",
                    "-p",
                    "8091:80",
                    "-p",
                    "8092:81",
                    "--",
                    "/bin/true",
                ]),
            );
        }
        let script = tmp.join(format!("step-{n}.sh"));
        // Printed with the benchmark's own directories: the script's overlay
        // layers and /etc files go there, not in the machine's /var/lib/lab.
        let text = lab(&["script", &s, "--rootfs", &root])
            .stdout(Stdio::piped())
            .output()
            .unwrap()
            .stdout;
        assert!(
            !String::from_utf8_lossy(&text).contains("/var/lib/lab"),
            "lab script {n} names the machine's /var/lib/lab"
        );
        std::fs::write(&script, text).unwrap();
        let mut bash = command("bash", &[script.to_str().unwrap(), "/bin/true"]);
        bash.env("LAB_RUN", &run);
        row(&format!("bash (lab script {n})"), like(n), bash);
    }
    let nobody = WithoutRoot::prepare(&tmp);
    nobody.rows(&mut row);
    time_rows(&mut rows, rounds, smoke);
    // With their checks (which exhaust memory, processes and CPU time on
    // purpose, and compare the host after exit): fewer rounds.
    let verify = |n: u8| Row {
        name: format!("lab verify {n} (every check)"),
        like: like(n),
        command: lab(&["verify", &n.to_string()]),
        times: vec![],
    };
    let mut checked = vec![verify(5), verify(7)];
    time_rows(&mut checked, rounds.min(7), smoke);
    let parts = where_time_goes(&lab, (&home, &run), rounds, smoke);
    drop(holder);
    // And alone, with a pause before each, as a student runs them.
    let mut checked_alone = vec![verify(5), verify(7)];
    for r in checked_alone.iter_mut() {
        r.name = format!("{}, alone", r.name);
    }
    time_rows_after(
        &mut checked_alone,
        rounds.min(7),
        smoke,
        Duration::from_millis(300),
    );
    checked.extend(checked_alone);
    // Alone: the bridge and the rules are made and removed every time. lab
    // leaves their removal to a process of its own after it has gone: as a
    // student meets it (a pause before each run, as at a prompt), and back to
    // back (each run waits for the one before to finish that removal). Each
    // row on its own: a script's lab0 must not meet lab's being removed.
    let alone_lab = || Row {
        name: String::new(),
        like: like(7),
        command: lab(&["step", "7", "--no-checks", "--", "/bin/true"]),
        times: vec![],
    };
    let mut paused = vec![Row {
        name: "lab step 7 --no-checks, alone (makes lab0; removed after lab has gone), a pause before each".into(),
        ..alone_lab()
    }];
    time_rows_after(
        &mut paused,
        rounds.min(11),
        smoke,
        Duration::from_millis(300),
    );
    let mut back_to_back = vec![Row {
        name:
            "lab step 7 --no-checks, alone, back to back (each waits for the last lab0's removal)"
                .into(),
        ..alone_lab()
    }];
    time_rows(&mut back_to_back, rounds.min(11), smoke);
    let mut script = vec![Row {
        name: "bash (lab script 7), alone (makes and removes lab0)".into(),
        like: like(7),
        command: command(
            "bash",
            &[tmp.join("step-7.sh").to_str().unwrap(), "/bin/true"],
        ),
        times: vec![],
    }];
    script[0].command.env("LAB_RUN", &run);
    // The script's lab0 must not meet the last one lab is still removing.
    wait_until(|| !run.join("lab0-removal").exists());
    time_rows(&mut script, rounds.min(11), smoke);
    let mut alone = paused;
    alone.extend(back_to_back);
    alone.extend(script);
    let scaling = scale(&lab, (&home, &run), rounds.min(20), smoke);
    drop(oci);
    drop(nobody);
    let _ = std::fs::remove_dir_all(&run);
    if smoke {
        for m in &missing {
            println!("bench compare: {m} is not installed, its row was left out (sudo bench/run installs it)");
        }
        println!("bench compare: every command ran; `sudo bench/run` prints the figures");
        return;
    }

    // ── The tables ──
    let lab_median = |rows: &[Row], like: Like| {
        rows.iter()
            .find(|r| r.name == like.row_name())
            .map(|r| median(&r.times))
    };
    println!(
        "### Starting /bin/true in a container\n\n{rounds} interleaved rounds; one other container keeps lab0 up. \
         \"x lab\" is the ratio to the lab step that does the same work (named after it). Disks: {disks}.\n"
    );
    println!("| command | median ms | min-max ms | x lab |");
    println!("|---|---:|---:|---:|");
    for r in rows.iter().chain(&checked).chain(&alone) {
        let ratio = r
            .like
            .and_then(|l| Some((l, lab_median(&rows, l)?)))
            .map(|(l, base)| format!("{:.2} ({})", median(&r.times) / base, l.label()))
            .unwrap_or_default();
        println!(
            "| {} | {:.2} | {:.2}-{:.2} | {ratio} |",
            r.name,
            median(&r.times),
            min(&r.times),
            max(&r.times)
        );
    }
    for m in &missing {
        println!("\n{m} is not installed: its row is left out.");
    }
    print!("{parts}");
    println!(
        "\n### Containers sharing lab0\n\n`lab step 7 --no-checks -- /bin/true` (its setup and teardown) \
         while other containers of step 7 run; with 10 and with 50 in blocks ordered 10 50 50 10 10 50 50 10, \
         so that the machine's drift over the run falls on both alike, each after a 2 s pause \
         once the others have started or stopped.\n"
    );
    println!("| containers on lab0 | median ms | min-max ms |");
    println!("|---|---:|---:|");
    for (n, times) in &scaling.rows {
        let n = match n {
            1 => "1 (alone: makes and removes lab0)".to_string(),
            n => n.to_string(),
        };
        println!(
            "| {n} | {:.2} | {:.2}-{:.2} |",
            median(times),
            min(times),
            max(times)
        );
    }
    let blocks: Vec<String> = scaling
        .blocks
        .iter()
        .map(|(n, m)| format!("{n}: {m:.2}"))
        .collect();
    println!(
        "\nEach block's median ms, in the order run: {}.",
        blocks.join(", ")
    );
    // Where what the others add goes: lab's own work (it looks at each running
    // container's state when it starts) or the kernel's.
    let [few, many] = &scaling.phases;
    let (n_few, n_many) = (scaling.rows[1].0, scaling.rows[2].0);
    println!(
        "\nWhere the difference goes: `LAB_TIMINGS=1`, {} runs after each block, medians.\n\n\
         | phase, ending at | {n_few} running, ms | {n_many} running, ms | difference, ms |\n|---|---:|---:|---:|",
        scaling.timed_per_block
    );
    for (name, times) in few {
        if let Some((_, more)) = many.iter().find(|(n, _)| n == name) {
            let (a, b) = (median(times), median(more));
            println!("| {name} | {a:.2} | {b:.2} | {:+.2} |", b - a);
        }
    }
    println!();
}

/// Time every row `rounds` times, interleaved, after one round that warms caches.
fn time_rows(rows: &mut [Row], rounds: usize, smoke: bool) {
    time_rows_after(rows, rounds, smoke, Duration::ZERO)
}

/// [`time_rows`], with a rest of `pause` before each run: what happens in the
/// background after a run finishes first, as it would at a prompt.
fn time_rows_after(rows: &mut [Row], rounds: usize, smoke: bool, pause: Duration) {
    let warmup = usize::from(!smoke);
    // What a run prints, kept to say why it failed (appended: emptied before
    // each), in memory (/dev/shm) as a terminal would take it.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let log_path = dir.join(format!("lab-bench-{}.log", std::process::id()));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let _ = std::fs::remove_file(&log_path);
    for round in 0..rounds + warmup {
        for r in rows.iter_mut() {
            std::thread::sleep(pause);
            log.set_len(0).unwrap();
            r.command
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap());
            let start = Instant::now();
            let status = r.command.status().expect("run");
            let took = start.elapsed();
            if !status.success() {
                let mut printed = String::new();
                use std::io::{Read, Seek};
                let mut log = &log;
                let _ = log.seek(std::io::SeekFrom::Start(0));
                let _ = log.read_to_string(&mut printed);
                panic!("{}: {status:?}; it printed:\n{printed}", r.name);
            }
            if round >= warmup {
                r.times.push(took);
            }
        }
    }
}

/// One `LAB_TIMINGS=1 lab step 7 --no-checks -- /bin/true`: its wall time, its
/// phases (the time up to each milestone from the one before, in order, and
/// the rest of the wall time: lab's own process) and each command's time.
struct Timed {
    wall: Duration,
    phases: Vec<(String, Duration)>,
    commands: Vec<(String, Duration)>,
}

/// The phase that is the rest of the wall time.
const OWN_PROCESS: &str = "lab's own process: exec until the clock starts, and exit";

fn timed_step_7(lab: &dyn Fn(&[&str]) -> Command, (home, run): (&Path, &Path)) -> Timed {
    let start = Instant::now();
    let out = lab(&["step", "7", "--no-checks", "--", "/bin/true"])
        .env("LAB_TIMINGS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run lab");
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "lab step 7 with LAB_TIMINGS=1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut phases, mut commands) = (Vec::new(), Vec::new());
    let mut last = Duration::ZERO;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let Some(rest) = line.strip_prefix("lab timing: ") else {
            continue;
        };
        let Some((ms, what)) = rest.trim_start().split_once(" ms") else {
            continue;
        };
        let Ok(ms) = ms.parse::<f64>() else { continue };
        let d = Duration::from_secs_f64(ms / 1000.0);
        match what.strip_prefix(" since the start: ") {
            Some(milestone) => {
                phases.push((milestone.to_string(), d.saturating_sub(last)));
                last = d;
            }
            // Named with lab's own directories, as a student sees them.
            None => {
                let what = what
                    .trim()
                    .replace(home.to_str().unwrap(), "/var/lib/lab")
                    .replace(run.to_str().unwrap(), "/run/lab");
                commands.push((same_for_every_container(&what), d));
            }
        }
    }
    phases.push((OWN_PROCESS.to_string(), wall.saturating_sub(last)));
    Timed {
        wall,
        phases,
        commands,
    }
}

/// Add `d` to the times of `name` (in the order names first come).
fn add(list: &mut Vec<(String, Vec<Duration>)>, name: &str, d: Duration) {
    match list.iter_mut().find(|(n, _)| n == name) {
        Some((_, times)) => times.push(d),
        None => list.push((name.to_string(), vec![d])),
    }
}

/// Where the time of `lab step 7 --no-checks -- /bin/true` goes, lab0 held: its
/// phases (the milestones `LAB_TIMINGS=1` prints) and its slowest commands,
/// medians over `rounds` runs, as a Markdown section.
fn where_time_goes(
    lab: &dyn Fn(&[&str]) -> Command,
    dirs: (&Path, &Path),
    rounds: usize,
    smoke: bool,
) -> String {
    // (phase, times) in the order lab reaches them; the same for commands.
    let mut phases: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut commands: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut walls = Vec::new();
    // Each run's commands together: the kernel's own work for the step.
    let mut all_commands = Vec::new();
    for _ in 0..rounds {
        let t = timed_step_7(lab, dirs);
        walls.push(t.wall);
        for (name, d) in &t.phases {
            add(&mut phases, name, *d);
        }
        for (name, d) in &t.commands {
            add(&mut commands, name, *d);
        }
        all_commands.push(t.commands.iter().map(|(_, d)| *d).sum());
    }
    if smoke {
        return String::new();
    }
    let mut out = format!(
        "\n### Where step 7's time goes\n\n`LAB_TIMINGS=1 lab step 7 --no-checks -- /bin/true`, lab0 held, \
         {rounds} runs, medians: each phase up to the milestone it ends at.\n\n\
         | phase, ending at | median ms |\n|---|---:|\n"
    );
    for (name, times) in &phases {
        out += &format!("| {name} | {:.2} |\n", median(times));
    }
    out += &format!("| in all (wall time) | {:.2} |\n", median(&walls));
    out += &format!(
        "\nIts commands together (the kernel's work for each, done by system calls; \
         the clone of the container's namespaces, its exec and its exit are not among them): \
         {:.2} ms, median of the runs' sums. The eight slowest:\n\n\
         | command | median ms |\n|---|---:|\n",
        median(&all_commands)
    );
    commands.sort_by(|a, b| median(&b.1).total_cmp(&median(&a.1)));
    for (name, times) in commands.iter().take(8) {
        let name = if name.len() > 90 {
            format!(
                "{}...",
                &name[..name.char_indices().nth(87).map_or(name.len(), |(i, _)| i)]
            )
        } else {
            name.clone()
        };
        out += &format!("| `{name}` | {:.3} |\n", median(times));
    }
    out
}

/// A command with what differs from one container to the next (the veth's number,
/// its MAC address, the address in the subnet) as N.
fn same_for_every_container(command: &str) -> String {
    let words: Vec<String> = command
        .split(' ')
        .map(|w| {
            let numbered = w.starts_with("lab-veth") || w.starts_with("10.200.");
            let mac = w.len() == 17 && w.matches(':').count() == 5;
            if mac {
                "02:00:...:N".to_string()
            } else if numbered {
                // The last number: the veth's, or the address's last byte.
                let cut = w
                    .rfind(|c: char| !c.is_ascii_digit() && c != '/')
                    .map_or(0, |i| i + 1);
                let (head, tail) = w.split_at(cut);
                let suffix = tail.trim_start_matches(|c: char| c.is_ascii_digit());
                format!("{head}N{suffix}")
            } else {
                w.to_string()
            }
        })
        .collect();
    words.join(" ")
}

/// Step 7 started while 0, 9 and 49 other containers of step 7 run on lab0 (9
/// and 49 in alternating blocks).
///
/// Each number of containers with its times, each block's (number, median ms)
/// in the order run, and the phases' times with the fewer and with the more
/// containers running (`LAB_TIMINGS=1`, a few runs after each block).
struct Scaling {
    rows: Vec<(usize, Vec<Duration>)>,
    blocks: Vec<(usize, f64)>,
    phases: [Vec<(String, Vec<Duration>)>; 2],
    /// The `LAB_TIMINGS=1` runs after each block.
    timed_per_block: usize,
}

fn scale(
    lab: &dyn Fn(&[&str]) -> Command,
    dirs: (&Path, &Path),
    rounds: usize,
    smoke: bool,
) -> Scaling {
    // Others of step 7, o{from}..o{to-1}; --cpus 0.02: fifty quotas of the
    // default 0.5 would not fit in two cores.
    let others = |from: usize, to: usize| -> Vec<Running> {
        let list: Vec<Running> = (from..to)
            .map(|i| {
                let name = format!("o{i}");
                let mut c = lab(&[
                    "step",
                    "7",
                    "--no-checks",
                    "--cpus",
                    "0.02",
                    "--name",
                    &name,
                    "--",
                    "sleep",
                    "1000",
                ]);
                Running(c.spawn().unwrap())
            })
            .collect();
        wait_until(|| count_sleepers() >= to - 1);
        list
    };
    let row = || {
        vec![Row {
            name: String::new(),
            like: None,
            command: lab(&["step", "7", "--no-checks", "--", "/bin/true"]),
            times: vec![],
        }]
    };
    // Alone: it makes lab0, and its removal follows it.
    let mut alone = row();
    time_rows(&mut alone, rounds, smoke);
    // 10 and 50 in blocks ordered 10 50 50 10 10 50 50 10 (ABBA): the machine's
    // pace drifts over a run (other jobs share it), and a drift that goes one way
    // falls on both alike; timed 10 then 50 each turn, the 50 always came later.
    // What counts is what 40 *running* containers add: after starting them, a
    // pause lets the kernel's work that follows a start end first (each new
    // link's IPv6 address stays "tentative", being checked, for about a second).
    let (few, many) = if smoke { (2, 3) } else { (10, 50) };
    let blocks = if smoke { 2 } else { 8 };
    let per_block = rounds.div_ceil(blocks / 2);
    let settle = Duration::from_secs(if smoke { 0 } else { 2 });
    let (mut with_few, mut with_many) = (row(), row());
    let mut order = Vec::new();
    let mut phases = [Vec::new(), Vec::new()];
    let timed_per_block = per_block.min(5);
    let base = others(1, few);
    let mut more: Option<Vec<Running>> = None;
    for block in 0..blocks {
        let want_many = matches!(block % 4, 1 | 2);
        if want_many && more.is_none() {
            more = Some(others(few, many));
            std::thread::sleep(settle);
        }
        if !want_many {
            if let Some(more) = more.take() {
                drop(more);
                wait_until(|| count_sleepers() < many - 1);
                std::thread::sleep(settle);
            }
        }
        let rows = if want_many {
            &mut with_many
        } else {
            &mut with_few
        };
        let done = rows[0].times.len();
        time_rows(rows, per_block, smoke);
        order.push((
            if want_many { many } else { few },
            median(&rows[0].times[done..]),
        ));
        // Then where the time goes, with as many running.
        for _ in 0..timed_per_block {
            for (name, d) in timed_step_7(lab, dirs).phases {
                add(&mut phases[usize::from(want_many)], &name, d);
            }
        }
    }
    drop(more);
    drop(base);
    let rows = [(1, alone), (few, with_few), (many, with_many)]
        .into_iter()
        .map(|(n, mut r)| (n, r.pop().unwrap().times))
        .collect();
    Scaling {
        rows,
        blocks: order,
        phases,
        timed_per_block,
    }
}

/// bench/floor.c, compiled with cc -O2, if there is a C compiler.
fn floor(tmp: &Path) -> Option<String> {
    let out = tmp.join("floor");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/floor.c");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| out.to_str().unwrap().to_string())
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Step 9 without root: lab, unshare, bwrap and crun run by user nobody, with a
/// home and a runtime directory of its own under the benchmark's directory, on
/// the root filesystem lab builds for that user (a user cannot use root's: its
/// files belong to IDs the user's namespace does not map). The same namespaces
/// for all four: user, mount, pid, uts, ipc (a user gets no network of step 5).
///
/// crun runs as rootless Podman runs it: in a user namespace made for it
/// (`unshare --user --map-root-user --mount`), told it is rootless, without
/// cgroups (a user may not make any on cgroup v1). On a v1/v2 hybrid host crun
/// 1.8 refuses to run while it sees the cgroup2 mount, which a user cannot
/// unmount (it is locked in the user's namespace): a tmpfs covers it there.
struct WithoutRoot {
    base: PathBuf,
    rootfs: PathBuf,
}

impl WithoutRoot {
    const ID: &'static str = "65534";

    fn prepare(tmp: &Path) -> WithoutRoot {
        let base = tmp.join("without-root");
        let _ = std::fs::remove_dir_all(&base);
        for d in ["home", "run"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        // The user's runtime directory on a tmpfs, as /run/user/UID is.
        nix::mount::mount(
            Some("tmpfs"),
            &base.join("run"),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("mode=700,uid={0},gid={0},size=64m", Self::ID).as_str()),
        )
        .unwrap();
        let own = Command::new("chown")
            .args(["-R", &format!("{0}:{0}", Self::ID)])
            .arg(&base)
            .status()
            .unwrap();
        assert!(own.success(), "chown {}", base.display());
        let me = WithoutRoot {
            rootfs: base.join("home/.local/share/lab/rootfs"),
            base,
        };
        // The first run builds the user's root filesystem.
        let first = me.lab_step_9().status().unwrap();
        assert!(first.success(), "lab step 9 as nobody: {first:?}");
        let linux = serde_json::json!({
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
        });
        let config = oci_config(&me.rootfs.to_string_lossy(), "crun", linux);
        std::fs::write(me.base.join("home/config.json"), config.to_string()).unwrap();
        me
    }

    /// `crun run` in a user namespace of its own, as nobody (see above).
    fn crun(&self) -> Command {
        let home = self.base.join("home");
        let crun = format!(
            "crun --rootless=true --cgroup-manager=disabled --root {} run --bundle {} lab-bench-rootless",
            self.base.join("run").display(),
            home.display()
        );
        let shell = match is_mount(Path::new("/sys/fs/cgroup/unified")) {
            true => {
                format!("mount -t tmpfs -o size=1m lab-bench /sys/fs/cgroup/unified && exec {crun}")
            }
            false => format!("exec {crun}"),
        };
        let mut c = self.command(&[
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &shell,
        ]);
        c.stdout(Stdio::null());
        c
    }

    /// `args` run as nobody, with nothing of root's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", Self::ID, "--regid", Self::ID, "--clear-groups"])
            .args([
                "env",
                "-i",
                "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "NO_COLOR=1",
            ])
            .arg(format!("HOME={}", self.base.join("home").display()))
            .arg(format!(
                "XDG_RUNTIME_DIR={}",
                self.base.join("run").display()
            ))
            .args(args);
        c
    }

    fn lab_step_9(&self) -> Command {
        let lab = env!("CARGO_BIN_EXE_lab");
        let mut c = self.command(&[lab, "step", "9", "--no-checks", "--", "/bin/true"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    fn rows(&self, row: &mut dyn FnMut(&str, Option<Like>, Command)) {
        let root = self.rootfs.to_str().unwrap();
        row(&ROOTLESS.unwrap().row_name(), ROOTLESS, self.lab_step_9());
        row(
            "unshare --user --map-root-user --fork --pid --mount --uts --ipc --mount-proc chroot, without root",
            ROOTLESS,
            self.command(&[
                "unshare",
                "--user",
                "--map-root-user",
                "--fork",
                "--pid",
                "--mount",
                "--uts",
                "--ipc",
                "--mount-proc",
                "chroot",
                root,
                "/bin/true",
            ]),
        );
        if installed("bwrap") {
            row(
                "bwrap --unshare-user --unshare-pid --unshare-uts --unshare-ipc, without root",
                ROOTLESS,
                self.command(&[
                    "bwrap",
                    "--unshare-user",
                    "--unshare-pid",
                    "--unshare-uts",
                    "--unshare-ipc",
                    "--bind",
                    root,
                    "/",
                    "--proc",
                    "/proc",
                    "/bin/true",
                ]),
            );
        }
        if installed("crun") {
            row(
                "crun run, in a user namespace of unshare's (as rootless Podman runs it), without root",
                ROOTLESS,
                self.crun(),
            );
        }
    }
}

/// The user's files (its root filesystem, lab's state), also after a panic.
impl Drop for WithoutRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.base.join("run"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// An OCI runtime's config.json for `/bin/true` as root in the container, on
/// the root filesystem `root`, with /proc, and `linux` (namespaces, limits).
fn oci_config(root: &str, hostname: &str, linux: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/true"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/"
        },
        "root": {"path": root, "readonly": false},
        "hostname": hostname,
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": linux
    })
}

/// crun and runc, each with an OCI bundle of its own copy of the root filesystem
/// (they write device nodes into /dev).
///
/// On a host whose cgroups are a v1/v2 hybrid, crun 1.8 refuses to run ("cgroups
/// in hybrid mode not supported"): both run in a mount namespace prepared once,
/// in which an empty tmpfs of its own covers the cgroup2 mount (so nothing either
/// writes there reaches the machine's), and each v1 hierarchy shows the
/// benchmark's own cgroup as its root (crun reads a relative cgroupsPath from the
/// hierarchy's root): the runtimes' cgroups end up below the benchmark's own.
/// A `sleep` keeps that namespace; each run enters it with setns, which costs
/// microseconds.
struct OciRuntimes {
    bundles: PathBuf,
    /// Their state (`--root`), on the benchmark's tmpfs as /run/crun would be.
    state: PathBuf,
    namespace: Option<Running>,
    /// Each cgroup hierarchy's mount point, and the benchmark's cgroup in it.
    own: Vec<(PathBuf, PathBuf)>,
}

impl OciRuntimes {
    fn prepare(tmp: &Path, run: &Path, rootfs: &Path) -> OciRuntimes {
        let bundles = tmp.join("oci");
        let state = run.join("oci");
        let _ = std::fs::remove_dir_all(&bundles);
        let own = own_cgroups();
        let mut shell = String::from("set -e; mount --make-rprivate /\n");
        if is_mount(Path::new("/sys/fs/cgroup/unified")) {
            shell.push_str("mount -t tmpfs -o size=1m lab-bench /sys/fs/cgroup/unified\n");
        }
        for (hierarchy, dir) in &own {
            if dir != hierarchy {
                shell.push_str(&format!(
                    "mount --bind {} {}\n",
                    dir.display(),
                    hierarchy.display()
                ));
            }
        }
        shell.push_str("exec sleep 100000\n");
        let mut ns = Command::new("unshare");
        ns.args(["--mount", "sh", "-c", &shell]);
        let namespace = Running(ns.spawn().unwrap());
        let pid = namespace.0.id();
        wait_until(|| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\x00100000"))
        });
        for runtime in ["crun", "runc"] {
            let bundle = bundles.join(runtime);
            std::fs::create_dir_all(&bundle).unwrap();
            let copy = Command::new("cp")
                .args(["-a"])
                .arg(rootfs)
                .arg(bundle.join("rootfs"))
                .status()
                .unwrap();
            assert!(copy.success());
            let linux = serde_json::json!({
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "resources": {"memory": {"limit": 64 * 1024 * 1024}},
                "cgroupsPath": format!("/lab-bench-oci/{runtime}")
            });
            let config = oci_config("rootfs", runtime, linux);
            std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        }
        OciRuntimes {
            bundles,
            state,
            namespace: Some(namespace),
            own,
        }
    }

    /// `RUNTIME run --bundle DIR ID`, in the prepared mount namespace.
    fn run(&self, runtime: &str) -> Command {
        let bundle = self.bundles.join(runtime);
        let mut c = Command::new(runtime);
        c.arg("--root")
            .arg(self.state.join(runtime))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("lab-bench-{runtime}"));
        let ns = std::fs::File::open(format!(
            "/proc/{}/ns/mnt",
            self.namespace.as_ref().unwrap().0.id()
        ))
        .unwrap();
        // SAFETY: between fork and exec the closure makes two system calls (setns,
        // chdir) on a descriptor opened before the fork, and allocates nothing.
        unsafe {
            c.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)?;
                nix::unistd::chdir("/")?;
                Ok(())
            });
        }
        c
    }
}

/// Remove the runtimes' cgroups (below the benchmark's own) and the bundles, also
/// when the benchmark panics.
impl Drop for OciRuntimes {
    fn drop(&mut self) {
        drop(self.namespace.take());
        for (_, dir) in &self.own {
            for runtime in ["crun", "runc"] {
                let _ = std::fs::remove_dir(dir.join("lab-bench-oci").join(runtime));
            }
            let _ = std::fs::remove_dir(dir.join("lab-bench-oci"));
        }
        let _ = std::fs::remove_dir_all(&self.bundles);
    }
}

/// The cgroup parent the containers and the scripts use (LAB_CGROUP_PARENT), in
/// each hierarchy: removed at the end, also after a panic. (lab removes the
/// parents it made when its last container leaves; the scripts leave theirs.)
struct RemoveParents;

impl Drop for RemoveParents {
    fn drop(&mut self) {
        for (_, own) in own_cgroups() {
            let _ = std::fs::remove_dir(own.join("lab-bench"));
        }
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(times: &[Duration]) -> f64 {
    let mut t = times.to_vec();
    t.sort();
    ms(&t[t.len() / 2])
}

fn min(times: &[Duration]) -> f64 {
    times.iter().map(ms).fold(f64::INFINITY, f64::min)
}

fn max(times: &[Duration]) -> f64 {
    times.iter().map(ms).fold(0.0, f64::max)
}
