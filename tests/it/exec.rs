//! `lab ps` and `lab exec` (root): entering a running container.

use crate::support::*;
use std::process::Command;

/// `lab ps` lists a running container; `lab exec` runs programs in its cgroups and
/// namespaces, passes their exit status through, and prints an nsenter command that
/// does the same when a person types it.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn ps_and_exec_enter_a_running_container() {
    let _g = privileged!();
    let marker = format!("{}", 5100 + std::process::id() % 1000);
    let mut cmd = lab_isolated();
    cmd.args([
        "step",
        "6",
        "--name",
        "exectest",
        "-p",
        "8080:80",
        "--no-checks",
        "--",
        "sleep",
        &marker,
    ])
    .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    let sleeper = wait_for_process(&format!("sleep {marker}"));
    // The sleeper's parent is the container's first process, lab's init.
    let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap();
    let init: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();

    let ps = text(&lab_isolated().arg("ps").output().unwrap());
    let row: Vec<&str> = ps
        .lines()
        .find(|l| l.starts_with("exectest "))
        .unwrap_or_else(|| panic!("exectest not listed:\n{ps}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "exectest",
            "6",
            &init.to_string(),
            "10.200.0.2/24",
            "8080:80"
        ],
        "{ps}"
    );

    let exec = |cmd: &[&str]| {
        lab_isolated()
            .args(["exec", "exectest", "--"])
            .args(cmd)
            .output()
            .unwrap()
    };
    let out = exec(&["hostname"]);
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(
        text(&out),
        "exectest\n",
        "stdout holds only the program's output"
    );

    // Every namespace is the container's, and so is the cgroup.
    let out = exec(&["sh", "-c", "for n in mnt uts ipc net pid cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup; exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the exit status passes through: {}",
        err(&out)
    );
    let inside = text(&out);
    for ns in ["mnt", "uts", "ipc", "net", "pid", "cgroup"] {
        let theirs = std::fs::read_link(format!("/proc/{sleeper}/ns/{ns}")).unwrap();
        // This test thread's (its network namespace is its own), not the main thread's.
        let ours = std::fs::read_link(format!("/proc/thread-self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours);
        assert!(
            inside.contains(&*theirs.to_string_lossy()),
            "not in the container's {ns} namespace:\n{inside}"
        );
    }
    // In the container's cgroup namespace its cgroup is the root, /; the host
    // sees where that is.
    let cgroup_line = inside
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
        .unwrap_or_else(|| panic!("{inside}"));
    assert!(cgroup_line.ends_with(":/"), "{inside}");
    let host_view = std::fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap();
    assert!(
        host_view
            .lines()
            .any(|l| (l.contains(":memory:") || l.starts_with("0::")) && l.ends_with("/exectest")),
        "{host_view}"
    );

    // What lab printed works when a person types it.
    let out = exec(&["hostname"]);
    let printed = err(&out);
    let line = printed
        .lines()
        .find(|l| l.contains("nsenter -t"))
        .unwrap_or_else(|| panic!("no nsenter command in:\n{printed}"));
    assert!(
        line.contains(&format!(
            "nsenter -t {init} -m -u -i -n -p -C -r -w hostname"
        )),
        "{line}"
    );
    let typed = Command::new("bash")
        .args(["-c", line.trim()])
        .output()
        .unwrap();
    assert!(typed.status.success(), "{line}\n{}", err(&typed));
    assert_eq!(text(&typed), "exectest\n");

    let out = lab_isolated()
        .args(["exec", "nosuch", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("no running container is named nosuch (running: exectest"),
        "{}",
        err(&out)
    );
    let out = exec(&["/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", err(&out));

    // lab passes SIGTERM on to the command, and exits with its status (128 + 15).
    assert_eq!(running.stop().code(), Some(143));
    kill_leftovers(&format!("sleep {marker}"));
    let ps = text(&lab_isolated().arg("ps").output().unwrap());
    assert!(ps.starts_with("No container is running"), "{ps}");
    remove_test_cgroup_parents();
}
