//! A step as a whole, for every step of the curriculum: `lab verify N` (every
//! check passes, each escape of the arc works until the step that closes it),
//! `lab script N` run with bash passes the same checks, a container typed by hand
//! is graded and left running, the checks of step N fail on step N-1, what `lab
//! step 4` prints, the progress file. Root: real containers, one at a time (see
//! support::privileged), lab's state under target/, the host left as it was.

use crate::support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Command;

/// The steps of the curriculum.
const STEPS: std::ops::RangeInclusive<u8> = 1..=9;

/// Escapes that a machine like CI's cannot show, skipped with the reason
/// (support::MACHINE_SKIPS).
fn machine_skips(json: &str) -> usize {
    json.lines()
        .filter(|l| l.contains("\"skipped\": true"))
        .filter(|l| unshowable(l) > 0)
        .count()
}

/// Every escape of the arc (its name ends "(works until step K)"): at step `n`
/// it must have worked when n < K and failed from K on, unless skipped.
fn assert_escape_arc(n: u8, json: &str) {
    for row in json.lines().filter(|l| l.contains("(works until step ")) {
        let closed: u8 = row
            .split("(works until step ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|k| k.parse().ok())
            .unwrap();
        if row.contains("\"skipped\": true") {
            continue;
        }
        let expected = if n < closed {
            format!("\"detail\": \"it works at step {n}")
        } else {
            format!("\"detail\": \"closed since step {closed}")
        };
        assert!(row.contains(&expected), "step {n}: {row}");
    }
}

/// Checks that have nothing to prove with one container and no published port:
/// from step 5, "other containers on lab0 answer" and "a published port reaches".
fn alone_skipped(step: u8) -> usize {
    check_names(step)
        .iter()
        .filter(|c| {
            c.ends_with(": other containers on lab0 answer ping")
                || c.ends_with(": a published port reaches a server in the container")
        })
        .count()
}

/// Checks that need a before and after (the host's mounts, its hostname, ...).
fn after_exit_checks(step: u8) -> usize {
    check_names(step)
        .iter()
        .filter(|c| c.contains(": after exit, "))
        .count()
}

/// `lab verify N --json`: every check of the step runs (the ones of the reviewed
/// snapshots/checks-N.snap) and passes, each escape of the arc works until the
/// step that closes it, and the host's mount table is as before. One test per
/// step, so that a failing step hides none after it.
fn verify_passes_every_check_of(n: u8) {
    let _g = privileged!();
    let before = mountinfo();
    let mut cmd = lab_isolated();
    cmd.args(["verify", &n.to_string(), "--json"]);
    if n >= 5 {
        // So that the published-port check has something to prove.
        cmd.args(["--publish", "18080:80"]);
    }
    let out = cmd.output().unwrap();
    let json = text(&out);
    let passed = json_passed(&json);
    assert!(
        out.status.success(),
        "lab verify {n}:\n{json}\n{}",
        err(&out)
    );
    assert_check_names(n, &json);
    // Alone, only "other containers answer" has nothing to check.
    let skipped = if n >= 5 { 1 } else { 0 };
    assert_eq!(
        passed.iter().filter(|p| **p).count(),
        check_names(n).len() - skipped - machine_skips(&json),
        "{json}"
    );
    assert_escape_arc(n, &json);
    if n >= 6 {
        // The CPU quota is shown by the kernel's own count of the stop.
        assert!(
            json.contains("busy loops got ")
                && json.contains("then none until the next (cpu.stat nr_throttled 0 -> 1)"),
            "{json}"
        );
    }
    assert!(json.trim_start().starts_with('[') && json.trim_end().ends_with(']'));
    assert_eq!(
        mountinfo(),
        before,
        "lab verify {n} changed the host's mount table"
    );
    assert!(leftover_containers().is_empty());
}

/// The reviewed lists of checks (snapshots/checks-N.snap) grow with the steps:
/// step N runs every check of step N-1, in the same order, and adds checks of its
/// own layer only. Needs no root: it reads the snapshots, which the verify tests
/// compare with what lab runs.
#[test]
fn each_steps_checks_are_the_step_befores_and_its_layers_own() {
    let layer = |c: &String| -> u8 {
        c.strip_prefix("layer ")
            .and_then(|r| r.split(':').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("not `layer L: NAME`: {c}"))
    };
    let mut before: Vec<String> = Vec::new();
    for n in STEPS {
        let names = check_names(n);
        let kept: Vec<&String> = names.iter().filter(|c| before.contains(c)).collect();
        assert_eq!(
            kept,
            before.iter().collect::<Vec<_>>(),
            "step {n} lost or reordered a check of the step before"
        );
        let added: Vec<&String> = names.iter().filter(|c| !before.contains(c)).collect();
        assert!(
            !added.is_empty() && added.iter().all(|c| layer(c) == n),
            "step {n} adds checks of layer {n} alone: {added:?}"
        );
        before = names;
    }
}

/// One test per step for a check that holds at every step, so that the first
/// step to fail does not hide the others: `per_step!(helper, name_1, ..., name_9)`.
macro_rules! per_step {
    ($helper:ident, $($name:ident = $n:literal),+ $(,)?) => {
        $(
            #[test]
            #[ignore = "needs root: sudo ./test.sh"]
            fn $name() {
                $helper($n);
            }
        )+
    };
}

per_step!(
    verify_passes_every_check_of,
    verify_passes_every_check_of_step_1 = 1,
    verify_passes_every_check_of_step_2 = 2,
    verify_passes_every_check_of_step_3 = 3,
    verify_passes_every_check_of_step_4 = 4,
    verify_passes_every_check_of_step_5 = 5,
    verify_passes_every_check_of_step_6 = 6,
    verify_passes_every_check_of_step_7 = 7,
    verify_passes_every_check_of_step_8 = 8,
    verify_passes_every_check_of_step_9 = 9,
);

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn step_4_inside_view_is_the_containers() {
    let _g = privileged!();
    let host_pid_max = std::fs::read_dir("/proc").unwrap().count();
    let before = mountinfo();
    let out = lab_isolated()
        .args(["step", "4", "--verbose", "--name", "box7", "--"])
        .args(["sh", "-c", "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]'); echo root=$(ls /); cat /proc/mounts; cat /etc/lab-rootfs"])
        .output()
        .unwrap();
    let s = text(&out);
    assert!(out.status.success(), "{s}\n{}", err(&out));
    // The shell is a child of lab's init (PID 1), so it has a small PID of its own.
    let pid: u32 = s
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid > 1 && pid < 20, "pid inside: {pid}");
    assert!(s.contains("host=box7"), "{s}");
    let procs: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    // lab's init, the shell, and the subshell, ls and grep counting them.
    assert!(
        procs <= 5 && procs < host_pid_max,
        "processes inside: {procs}"
    );
    assert!(
        // lib and lib64: the libraries of setpriv and bwrap, for step 8 by hand.
        s.contains("root=bin dev etc home lib lib64 mnt proc root run sbin sys tmp usr var"),
        "{s}"
    );
    assert!(s.contains("proc /proc proc rw,nosuid,nodev,noexec"), "{s}");
    let mount_points: Vec<&str> = s
        .lines()
        .filter(|l| l.split(' ').count() == 6)
        .filter_map(|l| l.split(' ').nth(1))
        .collect();
    assert!(
        mount_points.contains(&"/") && mount_points.contains(&"/proc"),
        "{s}"
    );
    // pivot_root . . stacks the host's root on the container's, at / too,
    // until umount -l . detaches it: one mount on / left.
    assert_eq!(
        mount_points.iter().filter(|m| **m == "/").count(),
        1,
        "the host's root still stacked on /: {s}"
    );
    assert!(s.contains("lab default root filesystem"), "{s}");
    assert_eq!(mountinfo(), before);
    // What lab printed with --verbose: every command of `lab explain 4` (but how
    // to grade a container typed by hand, which lab step does itself), then every
    // check passed.
    let explain = text(
        &lab_isolated()
            .args(["explain", "4", "--name", "box7"])
            .output()
            .unwrap(),
    );
    let (explain, _grade) = explain.split_once("\nGrade it\n").unwrap();
    for line in explain.lines().filter(|l| {
        l.starts_with("  ")
            && !l.starts_with("   ")
            && !l.starts_with("  (")
            && !l.contains("Note:")
            && !l.contains("exec /bin/sh")
    }) {
        // (Typed by hand, the container's small files go to LAB_RUN/hand, and
        // the teardown removes that directory; lab's own is its state, which
        // lab removes itself.)
        let line = line.trim().replace("/hand/box7", "/containers/box7");
        let line = match line.split_once(" && rmdir ") {
            Some((note, _)) if note.ends_with("/box7/shell") => note.to_string(),
            _ => line,
        };
        assert!(s.contains(&line), "lab step 4 did not print `{line}`");
    }
    // (Counted in the full listing, before the summary names them again.)
    let (full, _summary) = s.split_once("\nSummary · ").unwrap();
    assert_eq!(
        full.matches("  pass  ").count(),
        check_names(4).len() - unshowable(full),
        "{s}"
    );
    assert!(!s.contains("FAIL"), "{s}");
}

per_step!(
    the_script_passes_the_same_checks,
    the_script_of_step_1_passes_the_same_checks = 1,
    the_script_of_step_2_passes_the_same_checks = 2,
    the_script_of_step_3_passes_the_same_checks = 3,
    the_script_of_step_4_passes_the_same_checks = 4,
    the_script_of_step_5_passes_the_same_checks = 5,
    the_script_of_step_6_passes_the_same_checks = 6,
    the_script_of_step_7_passes_the_same_checks = 7,
    the_script_of_step_8_passes_the_same_checks = 8,
    the_script_of_step_9_passes_the_same_checks = 9,
);

/// What `lab script N` prints for the test run's root filesystem.
fn script_of(n: u8) -> String {
    text(
        &lab_isolated()
            .args(["script", &n.to_string(), "--rootfs"])
            .arg(rootfs())
            .output()
            .unwrap(),
    )
}

/// The honesty check of what lab prints: run `lab script N` with bash, and the
/// checks of step N pass against the container it builds, as they do for lab step.
fn the_script_passes_the_same_checks(n: u8) {
    let _g = privileged!();
    let before = mountinfo();
    let marker = format!("{}", 4200 + n as u32 * 7 + std::process::id() % 1000);
    let script = script_of(n);
    let path = run_dir().join(format!("script-{n}.sh"));
    std::fs::create_dir_all(run_dir()).unwrap();
    std::fs::write(&path, &script).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(&path)
        .args(["sh", "-c", &format!("sleep {marker}; true")]);
    let running = Background::spawn(cmd);
    let pid = wait_for_process(&format!("sleep {marker}"));
    let out = lab_isolated()
        .args([
            "check",
            &n.to_string(),
            "--json",
            "--pid",
            &pid.to_string(),
            "--rootfs",
        ])
        .arg(rootfs())
        .output()
        .unwrap();
    // End the command, as a user would: the script then runs its teardown trap
    // (SIGKILL to the script would skip it and leave step 7's overlay mounted).
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    running.wait();
    kill_leftovers(&format!("sleep {marker}"));
    std::fs::remove_file(&path).unwrap();
    let json = text(&out);
    assert!(
        out.status.success(),
        "lab script {n}: the checks failed:\n{json}{}",
        err(&out)
    );
    // lab check runs every check but those that need a before and after.
    let without_after_exit: Vec<String> = check_names(n)
        .into_iter()
        .filter(|c| !c.contains(": after exit, "))
        .collect();
    assert_eq!(checks_in(&json), without_after_exit, "lab script {n}");
    assert_eq!(
        json_passed(&json).iter().filter(|p| **p).count(),
        check_names(n).len() - after_exit_checks(n) - alone_skipped(n) - machine_skips(&json),
        "{json}"
    );
    assert_escape_arc(n, &json);
    assert_eq!(
        mountinfo(),
        before,
        "lab script {n} left a mount on the host"
    );
    remove_test_cgroup_parents();
}

per_step!(
    grading_a_hand_built_container_leaves_it_running,
    grading_a_hand_built_container_of_step_1_leaves_it_running = 1,
    grading_a_hand_built_container_of_step_2_leaves_it_running = 2,
    grading_a_hand_built_container_of_step_3_leaves_it_running = 3,
    grading_a_hand_built_container_of_step_4_leaves_it_running = 4,
    grading_a_hand_built_container_of_step_5_leaves_it_running = 5,
    grading_a_hand_built_container_of_step_6_leaves_it_running = 6,
    grading_a_hand_built_container_of_step_7_leaves_it_running = 7,
    grading_a_hand_built_container_of_step_8_leaves_it_running = 8,
    grading_a_hand_built_container_of_step_9_leaves_it_running = 9,
);

/// The workshop's promise for self-study: a student types a step by hand (here:
/// its script, with an interactive shell on a terminal, idle at its prompt),
/// grades it with the command the lesson and `lab explain` print, and the
/// container is still there afterwards, with the same processes, for every step.
/// The shell as PID 1 does not reap while it waits at its prompt: that check
/// says so (skipped), it does not fail the student.
fn grading_a_hand_built_container_leaves_it_running(n: u8) {
    use std::io::Write;
    let _g = privileged!();
    let note = run_dir().join("hand/c1/shell");
    let progress = home().join("progress");
    let _ = std::fs::remove_file(&progress);
    let before = mountinfo();
    let script = script_of(n);
    let grade = script
        .lines()
        .find_map(|l| l.strip_prefix("# Grade it in a second terminal while it runs: sudo "))
        .unwrap_or_else(|| panic!("lab script {n} does not say how to grade it"))
        .to_string();
    let path = run_dir().join(format!("hand-{n}.sh"));
    std::fs::write(&path, &script).unwrap();
    // `script` gives the shell a terminal, as a student's has.
    let terminal = run_dir().join(format!("hand-{n}.out"));
    let mut cmd = Command::new("script");
    cmd.args(["-qfec"])
        .arg(format!("bash {} /bin/sh -i", path.display()))
        .arg("/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&terminal).unwrap());
    let mut running = Background::spawn(cmd);
    // Up when a shell below the noted one's newest child waits at its prompt;
    // the container is that child (chroot's shell, or unshare) and below.
    let container = || -> Option<Vec<i32>> {
        let shell = std::fs::read_to_string(&note).ok()?;
        let first = *pids_of_children(shell.trim().parse().ok()?).last()?;
        let mut all = vec![first];
        all.extend(descendants(first));
        let prompt = all.iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sh\n")
                && std::fs::read_to_string(format!("/proc/{p}/wchan"))
                    .is_ok_and(|w| w.contains("poll") || w.contains("select"))
        });
        prompt.then_some(all)
    };
    let mut found = None;
    for _ in 0..1000 {
        found = container();
        if found.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let Some(processes) = found else {
        panic!(
            "step {n}: the hand-built container did not come up:\n{}",
            std::fs::read_to_string(&terminal).unwrap_or_default()
        )
    };
    let upper = home().join("hand/c1/upper");
    let upper_before = tree(&upper);
    // The student's command, word for word, in bash (with lab and the
    // test's directories in place of the defaults).
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec {} --json",
            grade.replacen("lab ", "\"$LAB\" ", 1)
        ))
        .env("LAB", LAB)
        .env("LAB_HOME", home())
        .env("LAB_RUN", run_dir())
        .env("LAB_CGROUP_PARENT", CGROUP_PARENT)
        .output()
        .unwrap();
    let json = text(&out);
    // lab beside it takes neither its name nor its files (nor, at step 5,
    // its address), and leaves it running.
    let (beside, refused) = if n == 5 {
        let beside = lab_isolated()
            .args(["step", "5", "--", "true"])
            .output()
            .unwrap();
        let refused = lab_isolated()
            .args(["step", "5", "--name", "c1", "--", "true"])
            .output()
            .unwrap();
        (Some(beside), Some(refused))
    } else {
        (None, None)
    };
    let after = container();
    let upper_after = tree(&upper);
    // Leave as the student does: exit at the prompt; the script tears down.
    let _ = running.0.stdin.as_mut().unwrap().write_all(b"exit\n");
    running.wait();
    std::fs::remove_file(&path).unwrap();
    let _ = std::fs::remove_file(&terminal);
    assert!(
        out.status.success(),
        "step {n}: grading the hand-built container failed:\n{json}{}",
        err(&out)
    );
    // Passed: the step typed by hand is completed.
    let done = std::fs::read_to_string(&progress).unwrap_or_default();
    assert!(done.contains(&format!("step {n} completed ")), "{done}");
    assert_eq!(
        after.as_ref(),
        Some(&processes),
        "step {n}: after lab check, the container's processes changed"
    );
    if let (Some(beside), Some(refused)) = (beside, refused) {
        let said = text(&beside);
        assert!(beside.status.success(), "{said}{}", err(&beside));
        assert!(said.contains("container c2 ·"), "{said}");
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            err(&refused).contains("a container typed by hand uses the name c1"),
            "{}",
            err(&refused)
        );
    }
    if n >= 3 {
        let reap = json
            .lines()
            .find(|l| l.contains("PID 1 reaps orphaned processes"))
            .unwrap();
        assert!(
            reap.contains("\"skipped\": true") && reap.contains("waits for you at its prompt"),
            "step {n}: {reap}"
        );
    }
    assert_eq!(
        mountinfo(),
        before,
        "step {n}: a mount was left on the host"
    );
    assert!(
        !exists(&note),
        "step {n}: the script left {}",
        note.display()
    );
    // In the student's layer, only the copy the whiteout check writes back
    // (the lesson says so; their teardown removes the layer).
    let added: Vec<&String> = upper_after
        .iter()
        .filter(|p| !upper_before.contains(p))
        .collect();
    if n >= 7 {
        assert_eq!(added, ["etc", "etc/lab-rootfs"], "step {n}");
    }
    // The teardown typed by hand removes the parent cgroup too, once empty.
    for parent in test_cgroup_parents() {
        assert!(!parent.exists(), "step {n}: {} is left", parent.display());
    }
    remove_test_cgroup_parents();
    let _ = std::fs::remove_file(&progress);
}

/// Every path below `dir`, relative to it, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The children of process `pid`, oldest first.
fn pids_of_children(pid: i32) -> Vec<i32> {
    let mut all: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    all.sort();
    all
}

/// Every process below `pid`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for c in pids_of_children(pid) {
        out.push(c);
        out.extend(descendants(c));
    }
    out
}

/// Checks can fail: the checks of step N against a container of step N-1 fail,
/// for exactly the layer that is missing.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn checks_of_a_step_fail_on_the_step_before() {
    let _g = privileged!();
    for (n, before) in [
        (2u8, 1u8),
        (3, 2),
        (4, 3),
        (5, 4),
        (6, 5),
        (7, 6),
        (8, 7),
        (9, 8),
    ] {
        let marker = format!("{}", 4300 + n as u32 * 7 + std::process::id() % 1000);
        let mut cmd = lab_isolated();
        cmd.args([
            "step",
            &before.to_string(),
            "--",
            "sh",
            "-c",
            &format!("sleep {marker}; true"),
        ]);
        cmd.stdout(std::process::Stdio::null());
        let running = Background::spawn(cmd);
        let pid = wait_for_process(&format!("sleep {marker}"));
        let out = lab_isolated()
            .args(["check", &n.to_string(), "--json", "--pid", &pid.to_string()])
            .output()
            .unwrap();
        running.stop();
        kill_leftovers(&format!("sleep {marker}"));
        let json = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "step {n} checks on a step {before} container:\n{json}"
        );
        for row in json.lines().filter(|l| l.contains("\"layer\"")) {
            let layer: u8 = row
                .split("\"layer\": ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let passed = row.contains("\"passed\": true");
            let skipped = row.contains("\"skipped\": true");
            // Step 7 expects the overlay as /: layer 1's check fails on a step 4 container too.
            // An escape that step n closes still works on the container of the step
            // before: its check fails, whatever layer lists it.
            let closed_now = row.contains(&format!("(works until step {n})"));
            let kept = layer <= before && !(n == 7 && layer == 1) && !closed_now;
            if kept && !skipped {
                assert!(passed, "step {n}, a check of layer {layer} failed: {row}");
            }
            // The negative control: a container without layer n passes none of
            // layer n's own checks (an escape it lists, closed by a later step,
            // still works here and passes as it should).
            let escape_of_later = row.contains("escape:") && !closed_now;
            if layer == n && !escape_of_later {
                assert!(
                    !passed,
                    "step {n}: a check of layer {n} passed on a container without that layer: {row}"
                );
            }
            if closed_now {
                assert!(
                    !passed && !skipped || skipped && machine_skips(row) == 1,
                    "step {n}: an escape it closes still works on the step before, and must fail: {row}"
                );
            }
        }
        let failed = json
            .lines()
            .filter(|l| l.contains("\"passed\": false, \"skipped\": false"))
            .count();
        assert!(
            failed >= 2,
            "step {n}: only {failed} checks failed:\n{json}"
        );
    }
    // And layer 1's checks fail for a plain process of the host (no root of
    // its own): the negative control of layer 1. (Its escape, closed by
    // layer 2, works there and passes, as it should at step 1.)
    let plain = Background::spawn({
        let mut c = Command::new("sleep");
        c.arg("4317");
        c
    });
    let out = lab_isolated()
        .args(["check", "1", "--json", "--pid", &plain.pid().to_string()])
        .output()
        .unwrap();
    drop(plain);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        json_passed(&text(&out))[..2],
        [false, false],
        "{}{}",
        text(&out),
        err(&out)
    );
}

/// What a student sees from `lab step 4`, reviewed like code: a line per layer,
/// the checks' verdict before the command, the summary after it; on a screen.
/// What `--verbose` prints besides, every command and each check's detail, is
/// step_4_inside_view_is_the_containers's. The escapes a machine cannot show
/// (no modules, a guarded disk) are skipped there, each on a line of its own:
/// those lines and the counts they change are redacted.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn what_lab_step_4_prints() {
    let _g = privileged!();
    let out = lab_isolated()
        .args(["step", "4", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
    let shown = text(&out);
    assert!(shown.lines().count() <= 40, "not on a screen:\n{shown}");
    let mut settings = snapshot_settings();
    let home = home().to_string_lossy().into_owned();
    settings.add_filter(&regex_escape(&home), "[LAB_HOME]");
    for (from, to) in [
        // Three escapes depend on the machine (whether its kernel loads
        // modules, whether root may read its disk, whether the host's files
        // are on ext2/3/4): their skips go, and the counts they change.
        (
            r"Checks: \d+ of \d+ passed(, [123] skipped)?\n",
            "Checks: [N] of [M] passed[, the rest skipped]\n",
        ),
        (
            r"(?m)^ +skip  (layer 2: )?escape: (a device node|it may load code|a file handle it forges)[^\n]*\n",
            "",
        ),
        (
            r"(layer 2 · mount namespace and pivot_root: )\d+ passed(, [123] skipped)?\n",
            "${1}[N] passed[, the rest skipped]\n",
        ),
        (
            r"\n\d+ of \d+ checks passed( \([123] skipped: each says why\))?\.\n",
            "\n[N] of [M] checks passed[, the rest skipped: each says why].\n",
        ),
    ] {
        settings.add_filter(from, to);
    }
    settings.bind(|| insta::assert_snapshot!("step-4-output", shown));
}

/// On a machine where the root filesystem is not built yet, --json output is
/// still JSON: the building notice goes to stderr.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn verify_json_is_only_json_on_a_fresh_machine() {
    let _g = privileged!();
    let fresh = run_dir().join("fresh-home");
    let _ = std::fs::remove_dir_all(&fresh);
    let out = lab_isolated()
        .env("LAB_HOME", &fresh)
        .args(["verify", "2", "--json"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&fresh).unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(text(&out).starts_with('['), "{}", text(&out));
    assert!(err(&out).contains("Building the default root filesystem"));
}

/// Progress for self-study: a step whose checks all pass is noted in the progress
/// file, `lab steps` marks it, a run without checks notes nothing, and `lab next`
/// builds the first step not completed.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn progress_marks_completed_steps_and_next_builds_the_first_left() {
    let _g = privileged!();
    let before = mountinfo();
    let progress = home().join("progress");
    let _ = std::fs::remove_file(&progress);
    let steps = || text(&lab_isolated().arg("steps").output().unwrap());
    assert!(!steps().contains("(completed)"), "{}", steps());

    let verify = lab_isolated().args(["verify", "1"]).output().unwrap();
    assert!(verify.status.success(), "{}", err(&verify));
    let noted = std::fs::read_to_string(&progress).unwrap();
    let line = noted.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("step 1 completed 20") && line.ends_with(" UTC"),
        "{noted}"
    );
    assert!(
        steps()
            .lines()
            .any(|l| l.contains("chroot") && l.ends_with("(completed)")),
        "{}",
        steps()
    );

    let unchecked = lab_isolated()
        .args(["step", "2", "--no-checks", "--", "true"])
        .output()
        .unwrap();
    assert!(unchecked.status.success(), "{}", err(&unchecked));
    assert_eq!(std::fs::read_to_string(&progress).unwrap(), noted);

    let next = lab_isolated()
        .args(["next", "--", "/bin/true"])
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", err(&next));
    assert!(
        text(&next).starts_with("Step 2 · mount namespace and pivot_root"),
        "{}",
        text(&next)
    );
    let noted = std::fs::read_to_string(&progress).unwrap();
    assert_eq!(noted.lines().count(), 2, "{noted}");
    assert!(noted
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("step 2 completed "));
    // Started in the middle: step 4 completed, and lab says what is left before it.
    let four = lab_isolated().args(["verify", "4"]).output().unwrap();
    assert!(four.status.success(), "{}", err(&four));
    assert!(
        err(&four).contains(
            "step 4 completed. Before it, step 3 is not completed yet: `sudo lab next` builds it"
        ),
        "{}",
        err(&four)
    );
    std::fs::remove_file(&progress).unwrap();
    assert_eq!(mountinfo(), before, "a step left a mount on the host");
}
