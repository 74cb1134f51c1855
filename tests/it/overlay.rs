//! Layer 7, the overlay filesystem (root): the writable layer is volatile unless
//! kept, `--keep` leaves it to look at, and a killed lab's overlay is unmounted
//! by the next run.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn after_kill_9_at_step_7_the_next_run_unmounts_the_overlay() {
    let _g = privileged!();
    let before = mountinfo();
    // A neighbour that outlives it, with its checks.
    let mut cmd = lab_isolated();
    // (--verbose: each check with its detail, read below.)
    cmd.args([
        "step",
        "7",
        "--verbose",
        "--name",
        "s7",
        "--",
        "sleep",
        "4477",
    ])
    .stdout(std::process::Stdio::piped());
    let survivor = Background::spawn(cmd);
    let sleeper = wait_for_process("sleep 4477");
    let mut cmd = lab_isolated();
    cmd.args(["step", "7", "--name", "k7", "--", "sleep", "4488"])
        .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    wait_for_process("sleep 4488");
    assert!(
        mountinfo().contains("overlay"),
        "no overlay mounted on the host"
    );
    running.signal(Signal::SIGKILL);
    let _ = running.wait();
    // lab had no chance to take the overlay down.
    let layer = home().join("containers/k7");
    assert!(layer.exists());
    // The neighbour ends: the overlay k7 left is not its doing.
    let _ = kill(Pid::from_raw(sleeper), Signal::SIGTERM);
    let mut survivor = survivor;
    let mut said = String::new();
    std::io::Read::read_to_string(survivor.0.stdout.as_mut().unwrap(), &mut said).unwrap();
    survivor.wait();
    let row = said
        .lines()
        .skip_while(|l| !l.contains("after exit, the host's mount table is as before"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(row.starts_with("  pass "), "{said}");
    assert!(
        row.contains("the mounts of other containers left out: k7"),
        "{row}"
    );
    // The next run with that name takes the leftovers over, unmounting first.
    let out = lab_isolated()
        .args(["step", "7", "--name", "k7", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(!layer.exists());
    assert_eq!(mountinfo(), before, "an overlay is still mounted");
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn keep_leaves_the_writable_layer_to_look_at() {
    let _g = privileged!();
    let _kept = RemoveOnDrop(home().join("containers/kept"));
    let before = mountinfo();
    let out = lab_isolated()
        .args([
            "step",
            "7",
            "--keep",
            "--name",
            "kept",
            "--",
            "sh",
            "-c",
            "echo changed > /etc/motd; rm /etc/group",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let upper = home().join("containers/kept/upper");
    // The summary says where the layer is, and that it holds the name.
    let kept = text(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("kept  "))
        .unwrap_or_else(|| panic!("no kept line in:\n{}", text(&out)))
        .to_string();
    assert!(
        kept.contains(&format!(
            "{}: what container kept changed (--keep)",
            upper.display()
        )) && kept.contains("It holds the name kept until you remove it"),
        "{kept}"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "changed\n"
    );
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = upper.join("etc/group").symlink_metadata().unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "no whiteout for /etc/group"
    );
    assert!(
        rootfs().join("etc/group").exists(),
        "the image lost /etc/group"
    );
    assert!(
        !rootfs().join("etc/motd").exists(),
        "the write reached the image"
    );
    // Only what the container changed: the checks' own writes are gone (the
    // whiteout check deletes an image file and writes it back).
    let mut kept: Vec<String> = std::fs::read_dir(upper.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        ["group", "motd"],
        "the kept layer holds more than the container's changes"
    );
    assert_eq!(
        std::fs::read_dir(&upper).unwrap().count(),
        1,
        "the kept layer holds more than /etc"
    );
    assert_eq!(mountinfo(), before);
    // The name stays taken until the kept layer is removed.
    let out = lab_isolated()
        .args(["step", "7", "--name", "kept", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("--keep"), "{}", err(&out));
    // Without --name too: the next container gets the next free name, and a
    // line says why it is not the kept one's.
    let name_of = |out: &std::process::Output| -> String {
        text(out)
            .lines()
            .find_map(|l| l.strip_prefix("container "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("no container named in:\n{}", text(out)))
            .to_string()
    };
    let out = lab_isolated()
        .args(["step", "7", "--keep", "--no-checks", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let first = name_of(&out);
    let _first = RemoveOnDrop(home().join("containers").join(&first));
    let out = lab_isolated()
        .args(["step", "7", "--no-checks", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert_ne!(name_of(&out), first);
    let said = err(&out);
    let why = said
        .lines()
        .find(|l| l.contains("that --keep left hold"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(why.contains(&format!(" {first} (")), "{said}");
}

/// The container's root as its own /proc/self/mountinfo shows it: is the overlay
/// mounted volatile (`volatile` up to Linux 6.11, `fsync=volatile` after)?
fn root_overlay_is_volatile(extra: &[&str]) -> bool {
    let mut args = vec!["step", "7", "--no-checks"];
    args.extend_from_slice(extra);
    args.extend(["--", "cat", "/proc/self/mountinfo"]);
    let out = lab_isolated().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let root = text
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/") && l.contains(" - overlay "))
        .unwrap_or_else(|| panic!("no overlay mounted on / inside:\n{text}"));
    super_options(root)
        .iter()
        .any(|o| *o == "volatile" || *o == "fsync=volatile")
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_writable_layer_is_volatile_unless_kept() {
    let _g = privileged!();
    let _kept = RemoveOnDrop(home().join("containers/vkept"));
    // Removed at exit: the kernel need not sync it (nor the disk below at umount).
    assert!(
        root_overlay_is_volatile(&[]),
        "the overlay of a container whose layer goes at exit is not volatile"
    );
    // Kept for the student: synced as any file is.
    assert!(
        !root_overlay_is_volatile(&["--keep", "--name", "vkept"]),
        "a layer kept with --keep was mounted volatile"
    );
}
