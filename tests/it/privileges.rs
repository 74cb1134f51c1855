//! Layer 8, privileges (root): `--user` typed by hand (setpriv) leaves the user
//! no capabilities.

use crate::support::*;
use std::process::Command;

/// `--user` typed by hand: the last line's setpriv switches to the user (at
/// step 7 alone, and together with step 8's capabilities and step 9's map), and
/// the user has no capabilities left.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_script_runs_the_command_as_the_user_given() {
    let _g = privileged!();
    for n in ["7", "8", "9"] {
        let script = text(
            &lab_isolated()
                .args(["script", n, "--user", "1000:1000", "--rootfs"])
                .arg(rootfs())
                .output()
                .unwrap(),
        );
        assert!(
            script.contains("setpriv --reuid=1000 --regid=1000 --clear-groups"),
            "{script}"
        );
        let path = run_dir().join(format!("script-user-{n}.sh"));
        std::fs::create_dir_all(run_dir()).unwrap();
        std::fs::write(&path, &script).unwrap();
        let out = Command::new("bash")
            .arg(&path)
            .args(["sh", "-c", "id; grep CapEff /proc/self/status"])
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        remove_test_cgroup_parents();
        assert!(out.status.success(), "lab script {n}: {}", err(&out));
        assert!(
            text(&out).contains("uid=1000 gid=1000\nCapEff:\t0000000000000000\n"),
            "lab script {n}: {}{}",
            text(&out),
            err(&out)
        );
    }
}
