//! A container's life from start to teardown (root): exit status, bad input,
//! signals and Ctrl-C at any moment, `--walk`, names, several containers at once,
//! a reader that goes away, the teardown typed by hand.

use crate::support::*;
use nix::sys::signal::Signal;
use std::process::Command;

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn step_passes_the_commands_exit_status_through() {
    let _g = privileged!();
    for (cmd, code) in [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 143)] {
        let out = step(4, &["sh", "-c", cmd]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", err(&out));
    }
    let out = step(3, &["no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        err(&out).contains("cannot run no-such-program inside the container"),
        "{}",
        err(&out)
    );
}

/// Bad input, as root: one clear line (clap's usage error for malformed
/// arguments), a non-zero exit, no panic, and nothing created: no state
/// directory, no mount, no link.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn bad_input_gets_one_clear_line_and_creates_nothing() {
    let _g = privileged!();
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-input");
    let _ = std::fs::remove_dir_all(&tmp);
    let no_shell = tmp.join("no-shell");
    std::fs::create_dir_all(no_shell.join("bin")).unwrap();
    std::fs::create_dir_all(no_shell.join("proc")).unwrap();
    let not_an_image = tmp.join("notes.txt");
    std::fs::write(&not_an_image, "not an image\n".repeat(100)).unwrap();
    let (state_home, state_run) = (tmp.join("home"), tmp.join("run"));
    let rootfs = rootfs();
    let r = rootfs.to_str().unwrap();
    let links = || {
        settled();
        text(&Command::new("ip").args(["-d", "link"]).output().unwrap())
    };
    let table: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["step", "0"], 2, "lab has steps 1 to"),
        (vec!["step", "99"], 2, "lab has steps 1 to"),
        (
            vec!["step", "6", "--memory", "-5M"],
            2,
            "\"-5M\" is not a size",
        ),
        (
            vec!["step", "5", "--publish", "99999:80"],
            2,
            "HOSTPORT:CONTAINERPORT",
        ),
        (
            vec!["step", "3", "--rootfs", "/nonexistent"],
            1,
            "/nonexistent does not look like a root filesystem",
        ),
        (
            vec!["step", "3", "--rootfs", no_shell.to_str().unwrap()],
            1,
            "has no /bin/sh",
        ),
        (
            vec!["step", "3", "--rootfs", r, "--", "/no/such/program"],
            1,
            "has no /no/such/program",
        ),
        (
            vec!["image", "import", not_an_image.to_str().unwrap()],
            1,
            "is not an image",
        ),
        (
            vec!["image", "import", "/nonexistent.tar"],
            1,
            "/nonexistent.tar does not exist",
        ),
        (
            vec!["step", "7", "--image", "nosuch"],
            1,
            "no image named nosuch",
        ),
        (vec!["image", "rm", "nosuch"], 1, "no image named nosuch"),
        (
            vec!["exec", "nosuch"],
            1,
            "no running container is named nosuch",
        ),
        (
            vec!["check", "3", "--pid", "999999999"],
            1,
            "process 999999999 not found",
        ),
        (
            vec!["step", "4", "--rootfs", r, "--publish", "8080:80"],
            1,
            "belong to step 5",
        ),
        (
            vec!["step", "5", "--rootfs", r, "--memory", "64M"],
            1,
            "belong to step 6",
        ),
        (
            vec!["step", "6", "--rootfs", r, "--keep"],
            1,
            "belong to step 7",
        ),
        (
            vec!["step", "3", "--rootfs", r, "--user", "1000"],
            1,
            "belong to step 7",
        ),
        (
            vec!["step", "7", "--rootfs", r, "--user", "nosuch"],
            1,
            "unable to find user nosuch",
        ),
    ];
    for (args, code, says) in table {
        let (links_before, mounts_before) = (links(), mountinfo());
        let out = lab()
            .env("LAB_HOME", &state_home)
            .env("LAB_RUN", &state_run)
            .env("LAB_CGROUP_PARENT", CGROUP_PARENT)
            .args(&args)
            .output()
            .unwrap();
        let e = err(&out);
        assert_eq!(out.status.code(), Some(code), "lab {args:?}: {e}");
        assert!(!e.contains("panicked"), "lab {args:?}: {e}");
        let first = e.lines().next().unwrap_or("");
        assert!(first.contains(says), "lab {args:?}: {e}");
        if code == 1 {
            assert_eq!(e.lines().count(), 1, "lab {args:?}: one line: {e}");
            assert!(first.starts_with("lab: "), "lab {args:?}: {e}");
        } else {
            assert!(first.starts_with("error: "), "lab {args:?}: {e}");
        }
        assert!(
            !state_home.exists() && !state_run.exists(),
            "lab {args:?} created state"
        );
        assert_eq!(mountinfo(), mounts_before, "lab {args:?} left a mount");
        assert_eq!(links(), links_before, "lab {args:?} left a link");
    }
    // A missing kernel feature: no cgroup controller in sight (an empty tmpfs over
    // /sys/fs/cgroup, in a mount namespace of this command only). Said before
    // anything is made, step 5's network included.
    let links_before = links();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /sys/fs/cgroup && exec {LAB} step 6 --rootfs {r} -- true"
        ))
        .env("LAB_HOME", &state_home)
        .env("LAB_RUN", &state_run)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let e = err(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("lab: step 6 needs cgroups: the memory controller is not available"),
        "{e}"
    );
    assert!(
        text(&out).is_empty(),
        "nothing printed, nothing done: {}",
        text(&out)
    );
    assert!(!state_home.exists() && !state_run.exists());
    assert_eq!(links(), links_before);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Ten containers of step 7 started at once: distinct names, addresses and
/// cgroups, every check passes in each (the after-exit checks leave out what the
/// others have on the host meanwhile), and once all are gone the host is as
/// before: no lab0, no rule, no mount, no cgroup, no state. `--cpus 0.1`, so that
/// ten CPU quotas fit in two cores and each busy loop can reach its own.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn ten_containers_at_step_7_at_once() {
    let _g = privileged!();
    const N: usize = 10;
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ten");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let host = || {
        settled();
        let run = |args: &[&str]| text(&Command::new(args[0]).args(&args[1..]).output().unwrap());
        (
            run(&["ip", "-d", "link"]),
            run(&["ip", "route"]),
            run(&["iptables-save"])
                .lines()
                // Rules and chains; tables appear, empty, once they are used.
                .filter(|l| {
                    l.starts_with("-A ") || (l.starts_with(':') && !l.contains(" ACCEPT ["))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            mountinfo(),
        )
    };
    remove_test_cgroup_parents();
    let before = host();
    let markers: Vec<String> = (0..N)
        .map(|i| format!("{}{:03}", 53 + i, std::process::id() % 1000))
        .collect();
    let running: Vec<Background> = markers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut c = lab_isolated();
            c.args([
                "step",
                "7",
                "--verbose",
                "--cpus",
                "0.1",
                "--",
                "sh",
                "-c",
                &format!("sleep {m}; true"),
            ])
            .stdout(std::fs::File::create(tmp.join(format!("out{i}"))).unwrap());
            Background::spawn(c)
        })
        .collect();
    let start = std::time::Instant::now();
    let sleepers: Vec<i32> = markers
        .iter()
        .map(|m| loop {
            if let Some(pid) = pids_of(&format!("sleep {m}")).first() {
                break *pid;
            }
            assert!(
                start.elapsed().as_secs() < 120,
                "the containers did not all start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        })
        .collect();

    let ps = text(&lab_isolated().arg("ps").output().unwrap());
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), N, "{ps}");
    let distinct = |col: usize| {
        let mut v: Vec<&str> = rows.iter().map(|r| r[col]).collect();
        v.sort();
        v.dedup();
        v.len()
    };
    assert_eq!(
        (distinct(0), distinct(3)),
        (N, N),
        "names and addresses: {ps}"
    );
    assert!(rows.iter().all(|r| r[1] == "7"), "{ps}");
    let mut cgroups: Vec<String> = sleepers
        .iter()
        .map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            text.lines()
                .find(|l| l.contains(":memory:") || l.starts_with("0::"))
                .unwrap()
                .to_string()
        })
        .collect();
    cgroups.sort();
    cgroups.dedup();
    assert_eq!(cgroups.len(), N, "{cgroups:?}");

    for (bg, m) in running.into_iter().zip(&markers) {
        assert_eq!(bg.stop().code(), Some(143));
        kill_leftovers(&format!("sleep {m}"));
    }
    for i in 0..N {
        let out = std::fs::read_to_string(tmp.join(format!("out{i}"))).unwrap();
        // Alone only "a published port reaches" has nothing to check (and what
        // this machine cannot show: machine_skips). Counted in the full listing
        // (--verbose), before the summary names some again.
        let full = out.split("\nSummary · ").next().unwrap_or_default();
        assert_eq!(
            full.matches("  pass  ").count(),
            check_names(7).len() - 1 - unshowable(full),
            "container {i}:\n{out}"
        );
        assert!(!out.contains("FAIL"), "container {i}:\n{out}");
    }
    let after = host();
    assert_eq!(after.0, before.0, "links");
    assert_eq!(after.1, before.1, "routes");
    assert_eq!(after.2, before.2, "iptables");
    assert_eq!(after.3, before.3, "ip_forward");
    assert_eq!(after.4, before.4, "mounts");
    assert_eq!(leftover_containers(), Vec::<String>::new());
    // The parent cgroups lab made go with the last container, whichever it is.
    let left: Vec<_> = test_cgroup_parents()
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    remove_test_cgroup_parents();
    assert!(left.is_empty(), "cgroup parents left: {left:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `--walk` waits for Enter before each command; Ctrl-C at a prompt, with lab0,
/// rules and the veth already made, takes everything down.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn walk_waits_for_enter_and_ctrl_c_at_a_prompt_removes_everything() {
    use std::io::{Read, Write};
    let _g = privileged!();
    const PROMPT: &str = "[--walk] press Enter to run it";
    // Enough Enters: the step runs to the end, one prompt per command.
    let mut c = lab_isolated();
    c.args(["step", "4", "--walk", "--no-checks", "--", "hostname"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[b'\n'; 100])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = text(&out);
    assert!(out.status.success(), "{s}{}", err(&out));
    let explain = text(&lab_isolated().args(["explain", "4"]).output().unwrap());
    // Every command of explain but unshare (the clone), the final exec and what
    // comes after exit (the teardown runs without prompts; at step 4 only the
    // note of the terminal's shell, and how to grade a container typed by hand).
    let (explain, _after) = explain.split_once("\nThis terminal, after exit\n").unwrap();
    let commands = explain.lines().filter(|l| l.starts_with("    # ")).count() - 2;
    assert_eq!(s.matches(PROMPT).count(), commands, "{s}");
    assert!(s.lines().any(|l| l == "c1"), "{s}");

    // Ctrl-C at the 25th prompt of step 5: lab0, the rules and the veth exist.
    let before = (
        mountinfo(),
        text(&Command::new("ip").args(["-d", "link"]).output().unwrap()),
    );
    let mut c = lab_isolated();
    c.args(["step", "5", "--walk", "--", "true"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let running = Background::spawn(c);
    let mut child = running;
    let mut stdin = child.0.stdin.take().unwrap();
    let mut stdout = child.0.stdout.take().unwrap();
    // The prompt ends its line only once Enter is read: read what comes, not lines.
    let mut seen = String::new();
    let mut answered = 0;
    while seen.matches(PROMPT).count() < 25 {
        let mut buf = [0u8; 4096];
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "lab stopped early:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        while answered < seen.matches(PROMPT).count().min(24) {
            stdin.write_all(b"\n").unwrap();
            answered += 1;
        }
    }
    assert!(
        Command::new("ip")
            .args(["link", "show", "lab0"])
            .output()
            .unwrap()
            .status
            .success(),
        "lab0 should exist by now"
    );
    child.signal(Signal::SIGINT);
    let status = child.wait();
    assert_eq!(status.code(), Some(130));
    settled();
    let after = (
        mountinfo(),
        text(&Command::new("ip").args(["-d", "link"]).output().unwrap()),
    );
    assert_eq!(after, before, "Ctrl-C at a prompt left something");
    assert_eq!(leftover_containers(), Vec::<String>::new());
    let rules = text(&Command::new("iptables-save").output().unwrap());
    assert!(!rules.contains("LAB-"), "{rules}");
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn signals_tear_the_container_down() {
    let _g = privileged!();
    // The signal comes the moment the command runs, while lab may not yet wait
    // for it: a signal noted then and acted on only in the wait was lost (lab
    // hung in a benchmark's run). Ten times each.
    let runs = [(Signal::SIGTERM, 143), (Signal::SIGHUP, 129)]
        .into_iter()
        .flat_map(|s| std::iter::repeat(s).take(10));
    for (sig, code) in runs {
        let before = mountinfo();
        let mut cmd = lab_isolated();
        cmd.args(["step", "4", "--", "sleep", "4444"])
            .stdout(std::process::Stdio::null());
        let mut running = Background::spawn(cmd);
        let sleeper = wait_for_process("sleep 4444");
        running.signal(sig);
        let status = ends_within_20_s(&mut running, "sleep 4444", &format!("{sig}"));
        assert_eq!(status.code(), Some(code), "{sig}");
        assert!(
            !std::path::Path::new(&format!("/proc/{sleeper}/cmdline")).exists()
                || pids_of("sleep 4444").is_empty()
        );
        assert!(
            leftover_containers().is_empty(),
            "{sig}: state left: {:?}",
            leftover_containers()
        );
        assert_eq!(mountinfo(), before);
    }
}

/// The exit status of a lab that was sent a signal, or a failure that names
/// `what` if it has not ended 20 s later (then its `command` is killed, so
/// that no test waits for ever).
fn ends_within_20_s(
    running: &mut Background,
    command: &str,
    what: &str,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            kill_leftovers(command);
            panic!("{what}: lab did not end within 20 s of the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// SIGTERM at any moment of the setup, not only once the command runs: lab
/// ends (143) and leaves nothing, whether it was blocked in a wait then or not
/// (a benchmark's lab once noted a SIGTERM that came between two calls, and
/// waited for its container for ever).
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn sigterm_during_the_setup_ends_lab_too() {
    let _g = privileged!();
    let _ = lab_isolated().arg("clean").output();
    let before = mountinfo();
    for delay_us in (0..20).map(|i| i * 700) {
        let mut cmd = lab_isolated();
        cmd.args(["step", "4", "--no-checks", "--", "sleep", "4445"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut running = Background::spawn(cmd);
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        running.signal(Signal::SIGTERM);
        let what = format!("SIGTERM {delay_us} µs after the start");
        let status = ends_within_20_s(&mut running, "sleep 4445", &what);
        assert!(
            matches!(status.code(), Some(143))
                || std::os::unix::process::ExitStatusExt::signal(&status) == Some(15),
            "{delay_us} µs: {status:?}"
        );
        settled();
        assert!(
            pids_of("sleep 4445").is_empty(),
            "{delay_us} µs: the command lives on"
        );
        assert!(
            leftover_containers().is_empty(),
            "{delay_us} µs: {:?}",
            leftover_containers()
        );
    }
    assert_eq!(mountinfo(), before);
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_teardown_typed_by_hand_frees_the_name() {
    let _g = privileged!();
    let hand = run_dir().join("hand").join("c1");
    let _cleanup = RemoveOnDrop(hand.clone());
    std::fs::create_dir_all(&hand).unwrap();
    std::fs::write(hand.join("shell"), "1\n").unwrap();
    // While the note is there, the name is the hand-built container's.
    let refused = lab_isolated()
        .args(["step", "1", "--name", "c1", "--no-checks", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", err(&refused));
    assert!(err(&refused).contains("a container typed by hand uses the name c1"));
    // The lesson's teardown, typed as lab explain prints it, leaves nothing.
    let explain = lab_isolated().args(["explain", "1"]).output().unwrap();
    let teardown = text(&explain)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("rm -f ") && l.contains("hand/c1/shell"))
        .unwrap_or_else(|| panic!("no teardown line in:\n{}", text(&explain)))
        .to_string();
    let typed = Command::new("sh").args(["-c", &teardown]).status().unwrap();
    assert!(typed.success(), "{teardown}");
    assert!(!exists(&hand), "{teardown} left {}", hand.display());
    // A directory left empty (the teardown of older lessons) holds no name.
    std::fs::create_dir_all(&hand).unwrap();
    let out = lab_isolated()
        .args(["step", "1", "--name", "c1", "--no-checks", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", err(&out));
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn two_containers_run_at_once_with_their_own_names() {
    let _g = privileged!();
    let mut a = lab_isolated();
    a.args(["step", "4", "--", "sleep", "4477"])
        .stdout(std::process::Stdio::null());
    let a = Background::spawn(a);
    wait_for_process("sleep 4477");
    let out = step(4, &["hostname"]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(text(&out).lines().any(|l| l == "c2"), "{}", text(&out));
    a.stop();
}

/// `sudo lab step 7 | head`: lab keeps going, tears down, and does not panic.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn step_7_with_its_reader_gone_still_tears_down() {
    let _g = privileged!();
    let before = mountinfo();
    let mut cmd = lab_isolated();
    cmd.args(["step", "7", "--", "true"]);
    let out = with_reader_gone(cmd);
    assert!(out.status.success(), "{:?} {}", out.status, err(&out));
    assert!(!err(&out).contains("panicked"), "{}", err(&out));
    assert_eq!(mountinfo(), before);
    assert!(leftover_containers().is_empty());
}

/// Ctrl-C while lab is still building and checking: it stops, removes everything,
/// and exits 130 without starting the command.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn ctrl_c_during_setup_removes_everything() {
    let _g = privileged!();
    let before = mountinfo();
    // Ctrl-C the moment the checks begin (a signal from outside would race with
    // them: they take a tenth of a second). lab goes on with them, then stops.
    let out = lab_isolated()
        .args(["step", "7", "--name", "cc", "--", "sh", "-c", "exit 7"])
        .env("LAB_FAULT", "interrupt:the checks' fixtures")
        .output()
        .unwrap();
    // 7: the command ran anyway.
    assert_eq!(out.status.code(), Some(130), "{}", err(&out));
    assert!(
        !leftover_containers().contains(&"cc".to_string()),
        "left: {:?}",
        leftover_containers()
    );
    assert!(
        !home().join("containers/cc").exists(),
        "the overlay layer is left"
    );
    assert_eq!(mountinfo(), before);
    remove_test_cgroup_parents();
}
