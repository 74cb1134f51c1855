//! `lab show`: a running container drawn from the kernel's state. Needs root
//! (a container of step 7, in a network namespace of the test's own).

use crate::support::*;

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn show_draws_a_running_container_from_the_kernel() {
    let _g = privileged!();
    let out = lab_isolated().args(["show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("no container is running: start one with sudo lab step N"),
        "{}",
        err(&out)
    );

    let mut cmd = lab_isolated();
    cmd.args([
        "step",
        "7",
        "--no-checks",
        "--name",
        "shown",
        "--publish",
        "18081:80",
        "--",
        "sleep",
        "4495",
    ])
    .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    let sleeper = wait_for_process("sleep 4495");

    let out = lab_isolated().args(["show", "shown"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}{}", err(&out));
    // From the kernel, each part: its own namespaces but the user namespace
    // (step 9 does not exist at step 7), lab-init as PID 1 and the command as 2,
    // both with the host's numbers, the network path with the real names, the
    // cgroup limits of step 6, the overlay's layers.
    for line in ["mnt", "uts", "ipc", "pid", "net", "cgroup"] {
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with(line) && l.contains("its own")),
            "{line}: {t}"
        );
    }
    assert!(
        t.lines()
            .any(|l| l.trim_start().starts_with("user") && l.contains("the host's")),
        "user: {t}"
    );
    assert!(t.contains(&format!(" 2 {sleeper:>8}  sleep 4495")), "{t}");
    assert!(
        t.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("lab-init")),
        "{t}"
    );
    assert!(t.contains("eth0 10.200.0.2/24"), "{t}");
    assert!(
        t.contains("lab-veth2 ── bridge lab0 (gateway 10.200.0.1/24)"),
        "{t}"
    );
    assert!(
        t.contains("host port 18081 ── DNAT ──▶ 10.200.0.2:80"),
        "{t}"
    );
    assert!(t.contains("of 64.0 MB"), "{t}");
    assert!(t.contains("processes of 64"), "{t}");
    assert!(t.contains("50% of one CPU"), "{t}");
    assert!(
        t.contains("overlay: the image's layers read-only below"),
        "{t}"
    );
    assert!(
        t.lines().all(|l| l.chars().count() <= 100),
        "wider than 100 columns: {t}"
    );

    let json = text(
        &lab_isolated()
            .args(["show", "shown", "--json"])
            .output()
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["processes"][1]["host_pid"], sleeper);
    assert_eq!(v["network"]["host_end"], "lab-veth2");
    assert_eq!(v["root"]["type"], "overlay");

    // Redacted, the drawing is reviewed as a snapshot.
    let mut settings = snapshot_settings();
    settings.add_filter(&regex_escape(&home().to_string_lossy()), "[LAB_HOME]");
    for (from, to) in [
        (r"\b\d{9,}\b", "[INODE]"),
        (r"PID \d+ on the host", "PID [PID] on the host"),
        (r"(?m)^(\s+\d+) +\d+  ", "$1 [PID]  "),
        (r"[0-9.]+ [KM]?B of", "[USAGE] of"),
        (r"\d+ processes of", "[N] processes of"),
        (r"\(([0-9.]+ [KM]?B|\d+ B) written\)", "([SIZE] written)"),
        (r"(?m)^(  out +).*$", "$1[UPLINK]"),
        (r"/sys/fs/cgroup/\S+", "[CGROUP]"),
        (r"sha256-[0-9a-f]{64}", "sha256-[DIGEST]"),
    ] {
        settings.add_filter(from, to);
    }
    settings.bind(|| insta::assert_snapshot!("show", t));

    let out = lab_isolated().args(["show", "nosuch"]).output().unwrap();
    assert!(
        err(&out).contains("no container named nosuch is running"),
        "{}",
        err(&out)
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGTERM,
    );
    running.wait();

    // Step 2 has no pid namespace: its processes are those with its root, not
    // every process of the host; no cgroup of its own, so none is shown.
    let mut cmd = lab_isolated();
    cmd.args(["step", "2", "--no-checks", "--", "sleep", "4494"])
        .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    let sleeper = wait_for_process("sleep 4494");
    let t = text(&lab_isolated().args(["show"]).output().unwrap());
    let processes = t
        .split("── Processes")
        .nth(1)
        .and_then(|p| p.split("\n\n").next())
        .unwrap_or_default();
    assert_eq!(processes.lines().count(), 3, "{t}");
    assert!(processes.contains(&format!("{sleeper}  sleep 4494")), "{t}");
    assert!(
        !t.contains("── Cgroups") && !t.contains("── Network"),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.trim_start().starts_with("pid ") && l.contains("the host's")),
        "{t}"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGTERM,
    );
    running.wait();
}
