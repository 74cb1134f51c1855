//! Layer 3, the pid namespace (root): lab's init is PID 1 and reaps, and the
//! reap check fails under a PID 1 that does not.

use crate::support::*;
use std::process::Command;

/// Inside, `ps` shows lab's init as `lab-init` (PID 1), and the command is PID 2,
/// its first child, even though the checks' probes ran in the container first.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn lab_init_is_pid_1_and_the_command_is_pid_2_after_the_checks() {
    let _g = privileged!();
    let out = step(
        3,
        &[
            "sh",
            "-c",
            "echo pid=$$; echo comm=$(cat /proc/1/comm); ps; true",
        ],
    );
    assert!(out.status.success(), "{}", err(&out));
    let stdout = text(&out);
    // The summary lists the checks of the step's own layer by name.
    assert!(
        stdout.contains("\n    pass  PID 1 reaps orphaned processes\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\npid=2\n"), "{stdout}");
    assert!(stdout.contains("\ncomm=lab-init\n"), "{stdout}");
    let ps: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("PID "))
        .collect();
    assert!(
        ps.get(1)
            .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "root", "lab-init"]),
        "ps inside: {ps:?}"
    );
    assert!(
        ps.get(2).is_some_and(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.starts_with(&["2", "root", "sh", "-c"])
        }),
        "ps inside: {ps:?}"
    );
}

/// The reap check can fail: in a container built by hand whose PID 1 is `sleep`
/// (it never waits for children), the orphan the check makes stays a zombie.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_pid_1_that_does_not_reap_fails_the_reap_check() {
    let _g = privileged!();
    let marker = format!("{}", 4900 + std::process::id() % 1000);
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--fork",
        "--pid",
        "--mount",
        "--mount-proc",
        "sleep",
        &marker,
    ]);
    let running = Background::spawn(cmd);
    let pid = wait_for_process(&format!("sleep {marker}"));
    let out = lab_isolated()
        .args(["check", "3", "--json", "--pid", &pid.to_string()])
        .output()
        .unwrap();
    drop(running);
    kill_leftovers(&format!("sleep {marker}"));
    let json = text(&out);
    assert_eq!(out.status.code(), Some(1), "{json}");
    let reap = json
        .lines()
        .find(|l| l.contains("PID 1 reaps orphaned processes"))
        .unwrap_or_else(|| panic!("no reap check in:\n{json}"));
    assert!(reap.contains("\"passed\": false"), "{reap}");
    assert!(reap.contains("is still a zombie after 3 s"), "{reap}");
    // The checks that hold for this container still pass: PID 1 and its own /proc.
    for name in ["first process is PID 1", "/proc is the container's own"] {
        let row = json.lines().find(|l| l.contains(name)).unwrap();
        assert!(row.contains("\"passed\": true"), "{row}");
    }
}
