//! Layer 6, cgroups (root): what a killed lab left in the cgroup hierarchies is
//! removed by the next run or `lab clean`.

use crate::support::*;
use nix::sys::signal::Signal;

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn after_kill_9_at_step_6_the_cgroups_are_removed_by_the_next_run_or_lab_clean() {
    let _g = privileged!();
    let cgroups = || -> Vec<String> {
        let pattern = format!(
            "ls -d /sys/fs/cgroup/*/{p}/k6 /sys/fs/cgroup/{p}/k6 /sys/fs/cgroup/memory/*/*/{p}/k6 2>/dev/null",
            p = CGROUP_PARENT
        );
        let found = std::process::Command::new("sh")
            .args(["-c", &pattern])
            .output()
            .unwrap();
        text(&found).lines().map(String::from).collect()
    };
    for clean in [false, true] {
        let mut cmd = lab_isolated();
        cmd.args(["step", "6", "--name", "k6", "--", "sleep", "4511"])
            .stdout(std::process::Stdio::null());
        let running = Background::spawn(cmd);
        wait_for_process("sleep 4511");
        assert!(!cgroups().is_empty(), "no cgroup made");
        running.signal(Signal::SIGKILL);
        let _ = running.wait();
        assert!(
            !cgroups().is_empty(),
            "the cgroups should outlive a killed lab"
        );
        let out = if clean {
            // lab clean, with a scratch LAB_HOME so the test's root filesystem stays.
            // (an empty LAB_HOME, which lab clean removes too).
            let scratch = run_dir().join("clean-home-6");
            std::fs::create_dir_all(&scratch).unwrap();
            lab_isolated()
                .env("LAB_HOME", &scratch)
                .arg("clean")
                .output()
                .unwrap()
        } else {
            // The next run with that name takes the leftovers over.
            lab_isolated()
                .args(["step", "6", "--name", "k6", "--", "true"])
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{}", err(&out));
        assert!(cgroups().is_empty(), "left: {:?}", cgroups());
    }
    remove_test_cgroup_parents();
}
