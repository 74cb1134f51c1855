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

/// Where AppArmor keeps users from making user namespaces (Ubuntu 24.04's
/// kernel.apparmor_restrict_unprivileged_userns = 1), the doctor says so,
/// whether lab's profile is loaded (the kernel's list, which only root may
/// read), and what to do: never to turn the restriction off. This kernel has no
/// AppArmor: the switch and the list are files made on tmpfs over
/// /proc/sys/kernel and /sys/kernel/security, in a mount namespace of this
/// command only. The lab that runs is target/'s, not /usr/local/bin/lab, the
/// program the profile names.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn doctor_says_what_apparmors_restriction_of_user_namespaces_asks() {
    let _g = privileged!();
    let doctor = |switch: &str, profiles: Option<&str>, as_user: bool| {
        let list = match profiles {
            Some(list) => format!(
                "mkdir -p /sys/kernel/security && mount -t tmpfs tmpfs /sys/kernel/security && mkdir /sys/kernel/security/apparmor && printf '{list}' > /sys/kernel/security/apparmor/profiles && chmod 0600 /sys/kernel/security/apparmor/profiles && "
            ),
            None => String::new(),
        };
        let user = if as_user {
            "setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/tmp XDG_RUNTIME_DIR=/tmp "
        } else {
            ""
        };
        let out = Command::new("unshare")
            .args([
                "--mount",
                "sh",
                "-ec",
                &format!("mount -t tmpfs tmpfs /proc/sys/kernel && echo {switch} > /proc/sys/kernel/apparmor_restrict_unprivileged_userns && {list}exec {user}\"$0\" doctor"),
            ])
            .arg(LAB)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let said = format!("{}{}", text(&out), err(&out));
        assert!(said.contains("What this machine has"), "{said}");
        assert!(!said.contains("sysctl kernel.apparmor"), "{said}");
        said
    };
    let on = "maybe   rootless           AppArmor keeps users from making user namespaces here (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 24.04's default), and ";

    // Loaded, and this lab is not the program it names.
    let said = doctor("1", Some("crun (unconfined)\\nlab (unconfined)\\n"), false);
    assert!(said.contains(&format!("{on}lab's profile is loaded, for /usr/local/bin/lab only, and this lab is {LAB}: lab step 9 needs sudo until then")), "{said}");
    assert!(
        said.contains(
            "fix: run /usr/local/bin/lab (sudo ./lab.sh in lab's repository installs it there)"
        ),
        "{said}"
    );
    // Not loaded: how to install or load it.
    let said = doctor("1", Some("crun (unconfined)\\n"), false);
    let (why, fix) = if std::path::Path::new("/etc/apparmor.d/lab").exists() {
        (
            "lab's profile, /etc/apparmor.d/lab, is not loaded",
            "fix: sudo apparmor_parser -r /etc/apparmor.d/lab",
        )
    } else {
        ("lab's profile is not installed", "fix: sudo ./lab.sh in lab's repository installs scripts/apparmor/lab as /etc/apparmor.d/lab and loads it (apparmor_parser -r), then run /usr/local/bin/lab, the program it names")
    };
    assert!(said.contains(&format!("{on}{why}")), "{said}");
    assert!(said.contains(fix), "{said}");
    // A user may not read the list: lab's program is named, and sudo lab doctor.
    let said = doctor("1", Some("lab (unconfined)\\n"), true);
    assert!(
        said.contains(&format!(
            "{on}lab's profile is for /usr/local/bin/lab only, and this lab is {LAB}"
        )),
        "{said}"
    );
    assert!(
        said.contains("sudo lab doctor says whether the profile is loaded"),
        "{said}"
    );
    // The switch off: users may, and the doctor says the restriction is off.
    let said = doctor("0", None, false);
    assert!(said.contains("ok      rootless           users may make user namespaces: lab step 9 runs without sudo (AppArmor does not restrict them here: kernel.apparmor_restrict_unprivileged_userns = 0)"), "{said}");
}
