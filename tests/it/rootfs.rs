//! The root filesystem (root): a broken one is a clear error, one built from the
//! host's programs works, and labs started at once on a new machine share one.

use crate::support::*;

/// On a machine where lab has never run, several labs started at once each
/// build the default root filesystem; the first one in place stays, as the
/// containers already running on it need (a later one replaced it under them),
/// and no half-built tree is left.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn labs_started_at_once_on_a_new_machine_share_one_root_filesystem() {
    let _g = privileged!();
    let scratch = run_dir().join("first-use-home");
    let _ = std::fs::remove_dir_all(&scratch);
    let _scratch = RemoveOnDrop(scratch.clone());
    let labs: Vec<(usize, Background)> = (0..6)
        .map(|i| {
            let mut cmd = lab_isolated();
            cmd.env("LAB_HOME", &scratch)
                .args(["step", "2", "--no-checks", "--name"])
                .arg(format!("first{i}"))
                .args(["--", "sh", "-c", "sleep 0.5; test -x /bin/sh"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            (i, Background::spawn(cmd))
        })
        .collect();
    for (i, mut lab) in labs {
        let status = lab.0.wait().unwrap();
        let stderr = lab.stderr_text();
        assert!(status.success(), "lab {i}: {stderr}");
    }
    let left: Vec<String> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rootfs-"))
        .collect();
    assert!(left.is_empty(), "half-built trees left: {left:?}");
    assert!(scratch.join("rootfs/bin/sh").exists());
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_broken_root_filesystem_is_a_clear_error_that_leaves_nothing() {
    let _g = privileged!();
    let before = mountinfo();
    let out = lab_isolated()
        .args(["step", "3", "--rootfs", "/nonexistent/rootfs", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("does not look like a root filesystem"),
        "{}",
        err(&out)
    );
    // A tree with bin/ and a file where /proc should be: pivot_root works,
    // mounting /proc does not (a missing /proc is made, as runc does).
    let broken = run_dir().join("broken-rootfs");
    std::fs::create_dir_all(broken.join("bin")).unwrap();
    std::fs::write(broken.join("proc"), "").unwrap();
    let out = lab_isolated()
        .args(["step", "3", "--rootfs"])
        .arg(&broken)
        .args(["--", "true"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&broken).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = err(&out);
    assert!(
        e.contains(
            "`mount -t proc -o nosuid,nodev,noexec proc /proc` failed: /proc is not a directory"
        ),
        "{e}"
    );
    assert!(
        e.contains("hint: The root filesystem has a file where"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    assert!(leftover_containers().is_empty());
    assert_eq!(mountinfo(), before);
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_root_filesystem_from_host_programs_works_without_busybox() {
    let _g = privileged!();
    let home = run_dir().join("host-home");
    let out = lab_isolated()
        .env("LAB_HOME", &home)
        .args(["rootfs", "--from", "host"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(text(&out).contains("libraries ldd names"), "{}", text(&out));
    // The dynamic loader had to come along, or no program would start.
    let rootfs = home.join("rootfs");
    assert!(
        std::fs::read_dir(rootfs.join("lib64"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
            || rootfs.join("lib").exists()
    );
    let out = lab_isolated()
        .env("LAB_HOME", &home)
        .args(["verify", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), err(&out));
    let out = lab_isolated()
        .env("LAB_HOME", &home)
        .args(["step", "4", "--", "sh", "-c", "echo bash=$BASH_VERSION"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        text(&out).lines().any(|l| l.starts_with("bash=5.")),
        "the host's bash is the shell: {}",
        text(&out)
    );
    std::fs::remove_dir_all(&home).unwrap();
}
