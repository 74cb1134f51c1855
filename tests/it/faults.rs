//! Nothing left behind, whatever happens: lab is made to die by SIGKILL, to fail,
//! or to panic at every point where it has just made something on the host
//! (`LAB_FAULT=MODE:N`, see state::fault_point), and the host is compared with
//! what it was: mounts, links, routes, iptables, ip_forward, the test's cgroups,
//! lab's state. After a failure or a panic lab must have undone everything
//! itself; after SIGKILL, `lab clean` or simply the next run must.
//!
//! Runs in the test's own network namespace and below the test's own cgroup.

use crate::support::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Everything lab could leave on the host, as text to compare.
fn host_state() -> Vec<(&'static str, String)> {
    settled();
    let run = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        text(&out)
    };
    let iptables: String = run(&["iptables-save"])
        .lines()
        // Rules and chains; tables appear, empty, once they are used.
        .filter(|l| l.starts_with("-A ") || (l.starts_with(':') && !l.contains(" ACCEPT [")))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut cgroups = Vec::new();
    for dir in test_cgroup_parents() {
        walk(&dir, &mut cgroups);
    }
    let mut state = Vec::new();
    for dir in [run_dir(), home().join("containers")] {
        walk(&dir, &mut state);
    }
    // lab's own directories and its lock file stay, empty, once made.
    let skeleton = [
        run_dir(),
        run_dir().join("containers"),
        run_dir().join("network.lock"),
        run_dir().join("cgroups.lock"),
        home().join("containers"),
    ];
    state.retain(|p| !skeleton.iter().any(|s| s.as_os_str() == p.as_str()));
    let queues = std::fs::read_to_string("/proc/sysvipc/msg").unwrap_or_default();
    vec![
        ("mounts", mountinfo()),
        ("links", run(&["ip", "-d", "link"])),
        ("routes", run(&["ip", "route"])),
        ("named network namespaces", run(&["ip", "netns", "list"])),
        ("iptables", iptables),
        (
            "ip_forward",
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        ),
        ("cgroups", cgroups.join("\n")),
        ("lab's state", state.join("\n")),
        ("message queues", queues),
    ]
}

/// Every path below `dir` (directories only for cgroups: their files come with them).
fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    out.push(dir.display().to_string());
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&p, out);
        } else if !p.starts_with("/sys/fs/cgroup") {
            out.push(p.display().to_string());
        }
    }
    out.sort();
}

fn assert_same(before: &[(&str, String)], after: &[(&str, String)], what: &str) {
    for ((name, was), (_, now)) in before.iter().zip(after) {
        assert_eq!(now, was, "{what}: the host's {name} changed");
    }
}

/// One step, faulted at each point in turn until it runs to the end. After each
/// run the host must be as `before`.
fn fault_every_point(before: &[(&str, String)], mode: &str, step: &str, args: &[&str]) -> usize {
    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-points");
    for n in 1.. {
        let _ = std::fs::remove_file(&log);
        let out = lab_isolated()
            .args(["step", step])
            .args(args)
            .args(["--", "true"])
            .env("LAB_FAULT", format!("{mode}:{n}"))
            .env("LAB_FAULT_LOG", &log)
            .output()
            .unwrap();
        let points = std::fs::read_to_string(&log).unwrap_or_default();
        let point = points.lines().last().unwrap_or("").to_string();
        let what = format!("lab step {step} {args:?}, LAB_FAULT={mode}:{n} ({point})");
        if out.status.success() {
            // n is past the last point: the run went through.
            assert!(n > 1 && points.lines().count() < n, "{what}");
            assert_same(before, &host_state(), &what);
            return n - 1;
        }
        match mode {
            "kill" => {
                assert_eq!(out.status.signal(), Some(9), "{what}: {}", err(&out));
                // Half the time `lab clean`, half the time the next run cleans up.
                if n % 2 == 0 {
                    let clean = lab_isolated().arg("clean").output().unwrap();
                    assert!(clean.status.success(), "{what}: lab clean: {}", err(&clean));
                } else {
                    let next = lab_isolated()
                        .args(["step", "1", "--no-checks", "--", "true"])
                        .output()
                        .unwrap();
                    assert!(
                        next.status.success(),
                        "{what}: the next run: {}",
                        err(&next)
                    );
                    let said = err(&next);
                    assert!(
                        n < 3 || said.contains("that a killed run left behind"),
                        "{what}: the next run did not say what it removed: {said}"
                    );
                }
            }
            "error" => {
                assert_eq!(out.status.code(), Some(1), "{what}: {}", err(&out));
                assert!(
                    err(&out).contains("fault injected"),
                    "{what}: {}",
                    err(&out)
                );
            }
            _ => {
                assert_eq!(out.status.code(), Some(101), "{what}: {}", err(&out));
                assert!(
                    err(&out).contains("fault injected"),
                    "{what}: {}",
                    err(&out)
                );
            }
        }
        assert_same(before, &host_state(), &what);
    }
    unreachable!()
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn killed_failing_or_panicking_at_any_point_lab_leaves_nothing() {
    let _g = privileged!();
    remove_test_cgroup_parents();
    let _ = lab_isolated().arg("clean").output();
    // Step 9 has every layer; --publish adds the port's rules. Step 5 with its
    // checks adds the checks' fixtures (a directory, a message queue).
    let runs: [(&str, &[&str]); 2] = [
        ("9", &["--no-checks", "--publish", "8080:80"]),
        ("5", &["--publish", "8081:80"]),
    ];
    // Each run is compared with the host as it was before the first.
    let before = host_state();
    for mode in ["kill", "error", "panic"] {
        for (step, args) in runs {
            let points = fault_every_point(&before, mode, step, args);
            assert!(points >= 20, "lab step {step}: only {points} fault points");
            eprintln!("{mode}: lab step {step} {args:?}: {points} points, nothing left at any");
        }
    }
}
