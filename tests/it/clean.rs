//! What a killed lab leaves (root): the next run or `lab clean` removes it, and
//! never deletes files through a mount left below.

use crate::support::*;
use nix::sys::signal::Signal;
use std::process::Command;

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn after_kill_9_the_next_run_or_lab_clean_removes_the_leftovers() {
    let _g = privileged!();
    let mut cmd = lab_isolated();
    cmd.args(["step", "4", "--name", "killed", "--", "sleep", "4455"])
        .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    wait_for_process("sleep 4455");
    // A running lab holds a lock on its owner file: other labs see it running
    // by that, without reading /proc. Its children close their copies, so the
    // lock goes with lab itself.
    let owner = run_dir().join("containers/killed/owner");
    let lock_free = || {
        Command::new("flock")
            .args(["-n", "-s"])
            .arg(&owner)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    assert!(!lock_free(), "lab holds no lock on {}", owner.display());
    running.signal(Signal::SIGKILL);
    let _ = running.wait();
    assert!(lock_free(), "the lock outlived lab");
    // The container dies with lab (parent-death signal), its state stays behind.
    for _ in 0..100 {
        if pids_of("sleep 4455").is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        pids_of("sleep 4455").is_empty(),
        "the container outlived lab"
    );
    assert_eq!(leftover_containers(), ["killed"]);
    // The next run with that name takes it over.
    let out = lab_isolated()
        .args(["step", "2", "--name", "killed", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(leftover_containers().is_empty());
    // lab clean stops the containers and removes what they left, keeps what lab
    // keeps on purpose (the root filesystem, images, --keep layers), and says so.
    let mut cmd = lab_isolated();
    cmd.args(["step", "4", "--", "sleep", "4466"])
        .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    wait_for_process("sleep 4466");
    let scratch_home = run_dir().join("clean-home");
    let _scratch = RemoveOnDrop(scratch_home.clone());
    for d in [
        "rootfs/bin",
        "images/alpine",
        "containers/kept/upper",
        "shifted/.x.new-1",
    ] {
        std::fs::create_dir_all(scratch_home.join(d)).unwrap();
    }
    let out = lab_isolated()
        .env("LAB_HOME", &scratch_home)
        .arg("clean")
        .output()
        .unwrap();
    let _ = running.wait();
    assert!(out.status.success(), "{}", err(&out));
    let said = text(&out);
    assert!(said.contains("stopped container c1"), "{said}");
    for kept in [
        "kept the default root filesystem",
        "kept 1 imported image(s)",
        "kept 1 writable layer(s) left by --keep",
    ] {
        assert!(said.contains(kept), "{said}");
    }
    assert!(said.contains("lab clean --all removes it"), "{said}");
    assert!(!run_dir().join("containers").exists());
    assert!(
        scratch_home.join("rootfs/bin").is_dir()
            && scratch_home.join("containers/kept/upper").is_dir()
    );
    // A half-made shifted copy is no keeper.
    assert!(!scratch_home.join("shifted/.x.new-1").exists(), "{said}");
    assert!(pids_of("sleep 4466").is_empty());
    // --all removes them too.
    let out = lab_isolated()
        .env("LAB_HOME", &scratch_home)
        .args(["clean", "--all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(!scratch_home.exists(), "{}", text(&out));
    // Once everything is gone, there is nothing more to clean.
    let clean = || {
        lab_isolated()
            .env("LAB_HOME", &scratch_home)
            .args(["clean", "--all"])
            .output()
            .unwrap()
    };
    let _ = clean();
    let out = clean();
    assert!(text(&out).contains("Nothing to clean"), "{}", text(&out));
    // What lab did not make stays, wherever LAB_HOME points.
    let foreign = run_dir().join("not-labs");
    std::fs::create_dir_all(foreign.join("rootfs")).unwrap();
    std::fs::write(foreign.join("precious"), "keep me").unwrap();
    let out = lab_isolated()
        .env("LAB_HOME", &foreign)
        .args(["clean", "--all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(foreign.join("precious").exists() && !foreign.join("rootfs").exists());
    std::fs::remove_dir_all(&foreign).unwrap();
}

/// What a killed run left may have something mounted into it: `lab clean`
/// detaches it before it removes the tree (a directory mounted deep below, and
/// a file mounted on, which the walk for mounts does not look at) and never
/// deletes a file of what was mounted there.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn clean_never_removes_files_through_a_mount_left_below() {
    let _g = privileged!();
    let scratch = run_dir().join("mounted-below");
    let (home, run) = (scratch.join("home"), scratch.join("run"));
    let layer = home.join("containers/zz");
    let state = run.join("containers/zz");
    let precious = scratch.join("precious");
    let mounted = [
        layer.join("merged"),
        layer.join("upper/deep/dir"),
        state.join("etc/hosts"),
    ];
    // Also when the test fails: detach what it mounted before removing.
    struct Unmount(Vec<std::path::PathBuf>, std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            for m in &self.0 {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _guard = Unmount(mounted.to_vec(), scratch.clone());
    for d in [&precious, &mounted[0], &mounted[1], &state.join("etc")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(precious.join("keep"), "x").unwrap();
    std::fs::write(scratch.join("precious.txt"), "y").unwrap();
    std::fs::write(&mounted[2], "").unwrap();
    // A run that is gone: no process has this start time.
    std::fs::write(state.join("owner"), "1 1\n").unwrap();
    for (m, source) in [
        (&mounted[0], &precious),
        (&mounted[1], &precious),
        (&mounted[2], &scratch.join("precious.txt")),
    ] {
        nix::mount::mount(
            Some(source.as_path()),
            m.as_path(),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
    }
    let out = lab_isolated()
        .env("LAB_HOME", &home)
        .env("LAB_RUN", &run)
        .arg("clean")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", text(&out), err(&out));
    assert_eq!(std::fs::read_to_string(precious.join("keep")).unwrap(), "x");
    assert_eq!(
        std::fs::read_to_string(scratch.join("precious.txt")).unwrap(),
        "y"
    );
    assert!(!layer.exists() && !state.exists(), "{}", text(&out));
    let scratch_text = scratch.to_string_lossy().into_owned();
    assert!(
        !mountinfo().contains(&scratch_text),
        "left mounted:\n{}",
        mountinfo()
    );
}

/// The directories of containers typed by hand are the student's: `lab clean`
/// removes them when empty, and says what it keeps when not.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn clean_removes_empty_hand_directories_and_names_what_it_keeps() {
    let _g = privileged!();
    let (run_hand, home_hand) = (run_dir().join("hand"), home().join("hand"));
    std::fs::create_dir_all(&run_hand).unwrap();
    std::fs::create_dir_all(home_hand.join("c9")).unwrap();
    let _cleanup = RemoveOnDrop(home_hand.join("c9"));
    let out = lab_isolated().arg("clean").output().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}{}", err(&out));
    assert!(!run_hand.exists(), "{said}");
    assert!(
        said.contains(&format!("removed {} (empty)", run_hand.display())),
        "{said}"
    );
    assert!(home_hand.join("c9").is_dir(), "{said}");
    assert!(
        said.contains(&format!("kept {} (c9)", home_hand.display())),
        "{said}"
    );
}
