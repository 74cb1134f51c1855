//! How long a container of step 4 takes to start and stop, beside `unshare`.
//!
//! `sudo cargo bench --bench start` prints, for each command, the median and the
//! range of the wall time of running `/bin/true` in it, and the ratio to unshare.
//! The commands are interleaved (A B C A B C ...) so that load from other jobs on
//! the machine falls on all of them alike. Figures, not a pass/fail test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LAB: &str = env!("CARGO_BIN_EXE_lab");

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "bench start: needs root to make namespaces. Run: sudo cargo bench --bench start"
        );
        return;
    }
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (home, run) = (tmp.join("bench-home"), tmp.join("bench-run"));
    let lab = |args: &[&str]| {
        let mut c = Command::new(LAB);
        c.args(args)
            .env("LAB_HOME", &home)
            .env("LAB_RUN", &run)
            .env("NO_COLOR", "1")
            .env("LAB_CGROUP_PARENT", "lab-bench");
        c
    };
    if !home.join("rootfs/bin").is_dir() {
        assert!(
            lab(&["rootfs"]).status().unwrap().success(),
            "lab rootfs failed"
        );
    }
    let rootfs = home.join("rootfs");
    let rootfs = rootfs.to_str().unwrap();
    // `cargo test --all-targets` runs this too, without --bench: one round then, as a
    // smoke test that keeps the benchmark working, and no figures.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = match smoke {
        true => 1,
        false => std::env::var("LAB_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(40),
    };
    let warmup = if smoke { 0 } else { 3 };

    let mut cases: Vec<(&str, Command)> = vec![
        (
            "unshare --fork --pid --mount --uts --ipc --mount-proc chroot ROOTFS /bin/true",
            {
                let mut c = Command::new("unshare");
                c.args([
                    "--fork",
                    "--pid",
                    "--mount",
                    "--uts",
                    "--ipc",
                    "--mount-proc",
                    "chroot",
                    rootfs,
                    "/bin/true",
                ]);
                c
            },
        ),
        (
            "lab step 4 --no-checks -- /bin/true",
            lab(&["step", "4", "--no-checks", "--", "/bin/true"]),
        ),
        (
            "lab step 4 -- /bin/true (with its 14 checks)",
            lab(&["step", "4", "--", "/bin/true"]),
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds + warmup {
        for (i, (name, cmd)) in cases.iter_mut().enumerate() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let start = Instant::now();
            let status = cmd.status().expect("run");
            let took = start.elapsed();
            assert!(status.success(), "{name} failed");
            if round >= warmup {
                times[i].push(took); // the first rounds warm the caches
            }
        }
    }
    if smoke {
        println!(
            "bench start: every command ran; `sudo cargo bench --bench start` prints the figures"
        );
        let _ = std::fs::remove_dir_all(&run);
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let base = ms(median(&mut times[0].clone()));
    println!("Wall time of one container running /bin/true, {rounds} interleaved rounds, 2 cores:");
    println!(
        "{:<72} {:>9} {:>17} {:>9}",
        "command", "median ms", "min-max ms", "x unshare"
    );
    for (i, (name, _)) in cases.iter().enumerate() {
        let v = &mut times[i];
        let m = ms(median(v));
        println!(
            "{:<72} {:>9.2} {:>8.2}-{:<8.2} {:>9.2}",
            name,
            m,
            ms(v[0]),
            ms(v[v.len() - 1]),
            m / base
        );
    }
    let _ = std::fs::remove_dir_all(&run);
}
