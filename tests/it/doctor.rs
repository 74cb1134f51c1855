//! `lab doctor` as root: every feature tried, nothing changed.

use crate::support::*;
use std::process::Command;

/// lab doctor tries every feature for real, as root, and leaves no trace: the
/// namespaces and links it makes die with its child process.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn doctor_tries_every_feature_and_changes_nothing() {
    let _g = privileged!();
    let links = || {
        settled();
        text(&Command::new("ip").args(["-d", "link"]).output().unwrap())
    };
    let (links_before, mounts_before) = (links(), mountinfo());
    let out = lab_isolated().arg("doctor").output().unwrap();
    let s = text(&out);
    assert!(out.status.success(), "{s}{}", err(&out));
    assert!(!s.contains("MISSING"), "{s}");
    for ns in ["mount", "pid", "uts", "ipc", "network", "cgroup", "user"] {
        assert!(
            s.contains(&format!("{:<18} unshare works", format!("{ns} namespace"))),
            "{ns}: {s}"
        );
    }
    assert!(
        s.contains("made and removed in a throwaway network namespace"),
        "{s}"
    );
    let v1 = mountinfo().contains(" - cgroup ");
    let version = if v1 {
        "cgroup v1 hierarchies"
    } else {
        "cgroup v2 at"
    };
    assert!(s.contains(&format!("cgroups            {version}")), "{s}");
    assert!(s.ends_with("Nothing missing: every step can run.\n"), "{s}");
    assert_eq!(links(), links_before, "lab doctor left a link");
    assert_eq!(mountinfo(), mounts_before, "lab doctor left a mount");

    // Programs hidden (in a mount namespace of this command only): iptables is
    // needed, busybox is not (lab falls back on host programs).
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            &format!(
                "for f in /usr/sbin/iptables /sbin/iptables /usr/bin/busybox /bin/busybox; do [ -e $f ] && mount --bind /dev/null $f; done; exec {} doctor",
                LAB
            ),
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let s = text(&out);
    assert_eq!(out.status.code(), Some(1), "{s}{}", err(&out));
    assert!(s.contains("  MISSING iptables "), "{s}");
    assert!(s.contains("fix: apt-get install iptables"), "{s}");
    assert!(s.contains("  maybe   busybox "), "{s}");
    assert!(s.contains("fix: apt-get install busybox-static"), "{s}");
    assert!(s.contains("1 missing: run the fix lines above"), "{s}");
}

/// Under `ip netns exec` (a fresh /sys, without the cgroup filesystem), the
/// doctor says that this shell does not see the cgroups, not that the machine
/// should boot into cgroup v2. The fresh /sys is made as ip netns exec makes
/// it, in a mount namespace of the test's own.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn doctor_tells_an_empty_sys_fs_cgroup_from_a_machine_without_cgroup_v2() {
    let _g = privileged!();
    let out = Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            "mount -t sysfs sysfs /sys && exec \"$0\" doctor",
        ])
        .arg(LAB)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out), err(&out));
    assert!(
        said.contains("/sys/fs/cgroup is empty in this shell: its /sys is not the host's"),
        "{said}"
    );
    assert!(!said.contains("systemd.unified_cgroup_hierarchy"), "{said}");
}
