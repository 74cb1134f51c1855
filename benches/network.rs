//! What the network of step 5 costs.
//!
//! `sudo cargo bench --bench network` prints, as medians and ranges:
//! - a container of step 4 and one of step 5 (`--no-checks -- /bin/true`): the
//!   difference is layer 5's setup and teardown;
//! - the same step 5 built by its commands in a shell (`lab script 5`, run with bash);
//! - step 5 started while 0, 9 and 49 other containers are on lab0 (1, 10, 50 in all).
//!
//! It runs in a network namespace of its own, so the machine's network is never
//! touched. Figures, not a pass/fail test.

mod common;

use common::{count_sleepers, wait_until, Running};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LAB: &str = env!("CARGO_BIN_EXE_lab");

fn main() {
    if !common::root_in_own_network("network") {
        return;
    }
    // Under `cargo test --all-targets` (no --bench): one round, few containers.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-network");
    let (home, run) = (tmp.join("home"), tmp.join("run"));
    let lab = |args: &[&str]| common::lab(&home, &run, args);
    std::fs::create_dir_all(&home).unwrap();
    assert!(lab(&["rootfs"]).status().unwrap().success());
    let script = tmp.join("step5.sh");
    let text = Command::new(LAB)
        .args(["script", "5", "--rootfs"])
        .arg(home.join("rootfs"))
        .env("LAB_RUN", &run)
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&script, text).unwrap();

    let rounds = if smoke { 1 } else { 21 };
    let time = |mut c: Command| {
        let t = Instant::now();
        let s = c.status().unwrap();
        assert!(s.success(), "{c:?}: {s:?}");
        t.elapsed()
    };
    let mut rows: Vec<(String, Vec<Duration>)> = vec![
        ("lab step 4 --no-checks".into(), vec![]),
        ("lab step 5 --no-checks".into(), vec![]),
        ("bash (lab script 5)".into(), vec![]),
    ];
    for _ in 0..rounds {
        rows[0]
            .1
            .push(time(lab(&["step", "4", "--no-checks", "--", "/bin/true"])));
        rows[1]
            .1
            .push(time(lab(&["step", "5", "--no-checks", "--", "/bin/true"])));
        let mut bash = Command::new("bash");
        bash.arg(&script).arg("/bin/true");
        bash.stdout(Stdio::null()).stderr(Stdio::null());
        rows[2].1.push(time(bash));
    }
    let sizes: &[usize] = if smoke { &[1, 3] } else { &[1, 10, 50] };
    for &n in sizes {
        // n-1 containers that stay up, then time the n-th.
        let mut others = Vec::new();
        for i in 1..n {
            let mut c = lab(&[
                "step",
                "5",
                "--no-checks",
                "--name",
                &format!("o{i}"),
                "--",
                "sleep",
                "1000",
            ]);
            others.push(Running(c.spawn().unwrap()));
        }
        wait_until(|| count_sleepers() >= n - 1);
        let mut times = Vec::new();
        for _ in 0..rounds.min(7) {
            times.push(time(lab(&["step", "5", "--no-checks", "--", "/bin/true"])));
        }
        drop(others);
        rows.push((format!("lab step 5 with {n} containers on lab0"), times));
    }
    if smoke {
        return;
    }
    println!("{:<44} {:>10} {:>16}", "command", "median ms", "min-max ms");
    for (name, mut t) in rows {
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<44} {:>10.1} {:>7.1}-{:<8.1}",
            ms(t[t.len() / 2]),
            ms(t[0]),
            ms(t[t.len() - 1])
        );
    }
}
