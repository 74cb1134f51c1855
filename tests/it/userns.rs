//! Layer 9, the user namespace: step 9 without root, the range of host IDs
//! (one holding a real user's or another's range is refused), and the shifted
//! copy of the image.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Command;

/// Step 9 refuses a range of host IDs that holds a real user's ID (here daemon,
/// 1), or that overlaps another user's range of /etc/subuid, said in one line,
/// and makes nothing; without a lab line it takes the first free range. The
/// files are bind-mounted over /etc/subuid and /etc/subgid, in a mount namespace
/// of the test's own.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_range_that_holds_a_real_users_id_is_refused() {
    let _g = privileged!();
    let fake = run_dir().join("subuid-test");
    std::fs::create_dir_all(run_dir()).unwrap();
    let with = |lines: &str, args: &str| {
        std::fs::write(&fake, lines).unwrap();
        let script = format!(
            "mount --make-rprivate / && mount --bind {0} /etc/subuid && mount --bind {0} /etc/subgid && exec {1} {args}",
            fake.display(),
            LAB
        );
        Command::new("unshare")
            .args(["--mount", "sh", "-c", &script])
            .env("LAB_HOME", home())
            .env("LAB_RUN", run_dir())
            .env("LAB_CGROUP_PARENT", CGROUP_PARENT)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for (lines, says) in [
        (
            "lab:1:100\n",
            "the ID range 1-100 holds the user daemon (1)",
        ),
        (
            "vagrant:100000:65536\nlab:120000:65536\n",
            "the ID range 120000-185535 overlaps vagrant's range 100000-165535 in /etc/subuid",
        ),
    ] {
        let out = with(lines, "step 9 -- true");
        assert_eq!(out.status.code(), Some(1), "{}{}", text(&out), err(&out));
        let e = err(&out);
        assert!(e.contains(says), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(leftover_containers().is_empty());
    }
    // vagrant's range, the first useradd gives: lab takes the next free one.
    let out = with("vagrant:100000:65536\n", "explain 9");
    let _ = std::fs::remove_file(&fake);
    assert!(
        text(&out).contains("echo '0 200000 65536' > /proc/$PID/uid_map"),
        "{}{}",
        text(&out),
        err(&out)
    );
}

/// Without root, step 9 runs in a user namespace of the user's own, with the
/// layers a user can have (not the network's host side, not the cgroups), and its
/// checks pass; lab script 9 does the same by hand, and lab check 9 grades it.
/// The steps before 9 say in one line that they need root. Run as nobody, with
/// its files in XDG directories of the test's own.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn step_9_runs_without_root() {
    let _g = privileged!();
    let base = home().join("rootless");
    let _ = std::fs::remove_dir_all(&base);
    let (h, r) = (base.join("home"), base.join("run"));
    for d in [&h, &r] {
        std::fs::create_dir_all(d).unwrap();
    }
    let own = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(own.success());
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "env",
            "-i",
        ])
        .arg(format!("HOME={}", h.display()))
        .arg(format!("XDG_RUNTIME_DIR={}", r.display()))
        .args(["PATH=/usr/local/bin:/usr/bin:/bin", "NO_COLOR=1"])
        .args(args);
        c
    };
    let out = as_nobody(&[LAB, "step", "3", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(
        err(&out).contains("without sudo only step 9 runs"),
        "{}",
        err(&out)
    );

    // A user other than root needs a map of more than one user: sudo.
    let out = as_nobody(&[LAB, "step", "9", "--user", "1000", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains("Run it with sudo"), "{}", err(&out));

    let out = as_nobody(&[LAB, "verify", "9", "--json"]).output().unwrap();
    let json = text(&out);
    assert!(out.status.success(), "{json}{}", err(&out));
    let rows: Vec<&str> = json
        .lines()
        .filter(|l| l.contains("\"passed\": "))
        .collect();
    // Without layers 5 and 6, but with what a user can have of layer 5: a
    // network namespace with only lo, brought up (snapshots/checks-9-rootless.snap).
    let names = checks_in(&json).join("\n");
    snapshot_settings().bind(|| insta::assert_snapshot!("checks-9-rootless", names));
    assert_eq!(rows.len(), names.lines().count(), "{json}");
    for row in rows.iter().filter(|r| r.contains("\"skipped\": true")) {
        assert!(
            row.contains("without root") || row.contains("lab runs without root"),
            "an unexpected skip: {row}"
        );
    }
    assert!(
        json.contains(
            "on the host, the container's root is the first user of the range\", \"passed\": true"
        ),
        "{json}"
    );

    // By hand: the script, run as nobody, and lab check as nobody.
    let script = text(&as_nobody(&[LAB, "script", "9"]).output().unwrap());
    assert!(
        script.contains("echo 'deny' > /proc/$PID/setgroups"),
        "{script}"
    );
    let path = base.join("s9.sh");
    std::fs::write(&path, &script).unwrap();
    let marker = format!("{}", 4900 + std::process::id() % 1000);
    let running = Background::spawn(as_nobody(&[
        "bash",
        path.to_str().unwrap(),
        "sh",
        "-c",
        &format!("sleep {marker}; true"),
    ]));
    let pid = wait_for_process(&format!("sleep {marker}"));
    let out = as_nobody(&[LAB, "check", "9", "--json", "--pid", &pid.to_string()])
        .output()
        .unwrap();
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    running.wait();
    kill_leftovers(&format!("sleep {marker}"));
    assert!(out.status.success(), "{}{}", text(&out), err(&out));
    assert!(!text(&out).contains("\"passed\": false, \"skipped\": false"));
    let left = Command::new("pgrep")
        .args(["-u", "65534"])
        .output()
        .unwrap();
    assert!(
        text(&left).trim().is_empty(),
        "processes of nobody left: {}",
        text(&left)
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// Step 9's shifted copy of the image: what lab makes with system calls is what
/// the printed commands (cp -a, then shift_ids and shift_caps) make, file for
/// file: kind, mode, owner, link target, size. (The file capabilities, which the
/// default root filesystem has none of, are compared in caps.rs's unit test.)
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_shifted_copy_lab_makes_is_the_one_the_commands_make() {
    let _g = privileged!();
    let out = step(9, &["true"]);
    assert!(out.status.success(), "{}", err(&out));
    // The range lab takes on this machine (100000, or the first free one after
    // the ranges of /etc/subuid): the one `lab explain 9` prints here.
    let explain = text(&lab_isolated().args(["explain", "9"]).output().unwrap());
    let base: u32 = explain
        .lines()
        .find_map(|l| l.trim().strip_prefix("echo '0 "))
        .and_then(|l| l.split(' ').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no uid_map line in lab explain 9: {explain}"));
    let ours = home().join(format!("shifted/{base}-65536/rootfs"));
    assert!(
        ours.is_dir(),
        "lab made no shifted copy at {}",
        ours.display()
    );
    // The same lines, from `lab explain 9`, run with bash into another directory.
    let define = explain
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("shift_ids() ") || l.starts_with("shift_caps() "))
        .collect::<Vec<_>>();
    assert_eq!(define.len(), 2, "{explain}");
    let by_hand = home().join("shifted-by-hand");
    let _ = std::fs::remove_dir_all(&by_hand);
    let script = format!(
        "{}\ncp -a {rootfs} {to} && shift_ids {base} {to} && shift_caps {base} {rootfs} {to}",
        define.join("\n"),
        rootfs = rootfs().display(),
        to = by_hand.display()
    );
    let out = Command::new("bash")
        .args(["-ec", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let list = |root: &std::path::Path| {
        let out = Command::new("find")
            .arg(".")
            .args(["-printf", "%y %m %U %G %l %s %p\n"])
            .current_dir(root)
            .output()
            .unwrap();
        let mut lines: Vec<String> = text(&out)
            .lines()
            // A directory's size depends on its history, not on what it holds.
            .map(|l| {
                let f: Vec<&str> = l.splitn(7, ' ').collect();
                if f[0] == "d" {
                    format!("{} {} {} {} {}", f[0], f[1], f[2], f[3], f[6])
                } else {
                    l.to_string()
                }
            })
            .collect();
        lines.sort();
        lines
    };
    let (a, b) = (list(&ours), list(&by_hand));
    let _ = std::fs::remove_dir_all(&by_hand);
    assert!(a.len() > 100, "{a:?}");
    assert!(
        a.iter().all(|l| l.split(' ').nth(2) != Some("0")),
        "an owner was not shifted"
    );
    let only_ours: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_by_hand: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_ours.is_empty() && only_by_hand.is_empty(),
        "lab's shifted copy differs from the commands': only in lab's: {only_ours:?}; only in the commands': {only_by_hand:?}"
    );
    // Steps 1 to 6 write into the root filesystem itself: the next step 9 sees
    // what they wrote (its copy is made again).
    let marker = rootfs().join("written-at-step-3");
    let _gone = RemoveOnDrop(marker.clone());
    let out = step(3, &["sh", "-c", "echo at step 3 > /written-at-step-3"]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(marker.exists());
    let out = step(9, &["cat", "/written-at-step-3"]);
    assert!(out.status.success(), "{}{}", text(&out), err(&out));
    assert!(text(&out).contains("at step 3"), "{}", text(&out));
}
