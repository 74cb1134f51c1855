//! What lab prints without root: the steps, the commands of each step, the scripts,
//! and the messages for bad input. Snapshots live in snapshots/ at the top of the
//! project: review them like code (`cargo insta review`).

use crate::support;
use crate::support::{err, lab, text};

/// Every step of the curriculum.
const BUILT: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

/// `lab explain N` and `lab script N`, for steps with cgroups printed for cgroup v2
/// (the classroom's), whatever this machine runs, from step 5 with the
/// subnet lab would pick on a machine without 10.200.0.0/24 in use, and from
/// step 9 with the range of host IDs lab takes on the classroom VM (where
/// vagrant has 100000-165535), whatever /etc/subuid holds here.
fn print(what: &str, n: u8) -> std::process::Output {
    let n = n.to_string();
    let mut args = vec![what, n.as_str()];
    if n.parse::<u8>().unwrap() >= 5 {
        args.extend(["--subnet", "10.200.0.0/24"]);
    }
    if n.parse::<u8>().unwrap() >= 6 {
        args.extend(["--cgroup", "v2"]);
    }
    if n.parse::<u8>().unwrap() >= 9 {
        args.extend(["--id-range", "200000:65536"]);
    }
    run(&args)
}

/// What depends on the machine is redacted: the interface of the default route
/// (or none), and where the host's resolver configuration lives.
fn snapshot_settings() -> insta::Settings {
    let mut s = support::snapshot_settings();
    s.add_filter(r"(! )?-o [^ ]+ -j MASQUERADE", "-o [UPLINK] -j MASQUERADE");
    s.add_filter(
        r"(/run/systemd/resolve|/etc)/resolv\.conf >",
        "[HOST-RESOLV.CONF] >",
    );
    s
}

fn run(args: &[&str]) -> std::process::Output {
    lab().args(args).output().expect("run lab")
}

#[test]
fn steps_lists_the_curriculum() {
    // With no progress file: no step is marked completed.
    let home = std::env::temp_dir().join(format!("lab-cli-steps-{}", std::process::id()));
    let out = lab().arg("steps").env("LAB_HOME", &home).output().unwrap();
    assert!(out.status.success());
    snapshot_settings().bind(|| insta::assert_snapshot!("steps", text(&out)));
}

#[test]
fn explain_prints_the_commands_of_each_step() {
    for n in BUILT {
        let out = print("explain", n);
        assert!(out.status.success(), "{}", err(&out));
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("explain-{n}"), text(&out)));
    }
}

#[test]
fn script_prints_a_runnable_bash_script_for_each_step() {
    for n in BUILT {
        let out = print("script", n);
        assert!(out.status.success(), "{}", err(&out));
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("script-{n}"), text(&out)));
        // bash must at least parse it.
        let mut check = std::process::Command::new("bash")
            .args(["-n", "/dev/stdin"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        assert!(
            check.wait().unwrap().success(),
            "bash -n rejects lab script {n}"
        );
    }
}

/// From step 2 on, the root changes with `pivot_root . .` and the host's tree,
/// stacked on the new root, goes with `umount -l .`: lab names no path of its
/// own in the image's tree (an image may hold a file or a link at any path; it
/// once made `/.oldroot` there, and an image holding one was refused), and what
/// comes from the host is named through `/..` before the host's tree goes.
#[test]
fn the_root_changes_without_a_name_of_labs_in_the_image() {
    for n in BUILT.into_iter().filter(|n| *n >= 2) {
        for what in ["explain", "script"] {
            let out = print(what, n);
            let s = text(&out);
            assert!(out.status.success(), "{}", err(&out));
            assert!(!s.contains("oldroot"), "lab {what} {n}:\n{s}");
            let lines: Vec<&str> = s.lines().map(str::trim).collect();
            let at = |line: &str| {
                lines
                    .iter()
                    .position(|l| *l == line)
                    .unwrap_or_else(|| panic!("lab {what} {n} has no `{line}`:\n{s}"))
            };
            let (pivot, detach) = (at("pivot_root . ."), at("umount -l ."));
            assert!(pivot < detach, "lab {what} {n}:\n{s}");
            // Every line that takes a file of the host's tree comes between them.
            for (i, l) in lines.iter().enumerate() {
                if l.contains(" /../") {
                    assert!(pivot < i && i < detach, "lab {what} {n}: `{l}`");
                }
            }
        }
    }
}

#[test]
fn script_carries_the_command_and_quotes_it() {
    let out = run(&[
        "script",
        "3",
        "--rootfs",
        "/srv/my rootfs",
        "--",
        "sh",
        "-c",
        "echo it's me",
    ]);
    assert!(out.status.success());
    let s = text(&out);
    assert!(s.contains(r#"set -- sh -c 'echo it'\''s me'"#), "{s}");
    assert!(
        s.contains("mount --bind '/srv/my rootfs' '/srv/my rootfs'"),
        "{s}"
    );
}

#[test]
fn explain_and_script_hold_the_same_commands() {
    // Every command line of `lab explain N` appears in `lab script N`, apart from
    // the two that differ by design: the shell started by unshare, and the command.
    for n in BUILT {
        let explain = text(&print("explain", n));
        let script = text(&print("script", n));
        // The last section, how to grade it, is a comment at the top of the script.
        let (explain, grade) = explain
            .split_once("\nGrade it\n")
            .expect("a Grade it section");
        let grade = grade.lines().next().unwrap().trim();
        assert!(
            script.contains(&format!(
                "# Grade it in a second terminal while it runs: {grade}\n"
            )),
            "step {n}: the script does not say how to grade it: {script}"
        );
        for line in explain.lines().filter(|l| {
            l.starts_with("  ")
                && !l.starts_with("   ")
                && !l.contains("Note:")
                && !l.starts_with("  (")
        }) {
            let cmd = line.trim();
            if cmd.starts_with("PID=$(pgrep") {
                // By hand, PID comes from pgrep; the script knows its child.
                assert!(script.contains("PID=$(pgrep -P $$ -x unshare)"), "{script}");
                continue;
            }
            if cmd.starts_with("until grep -q . /proc/self/uid_map;") {
                // By hand the shell execs a new one as root; the script starts its
                // inside() again as root.
                assert!(
                    script.contains("until grep -q . /proc/self/uid_map; do sleep 0.01; done; [ \"$(id -u)\" = 0 ] || exec setpriv --reuid 0 --regid 0 --clear-groups bash -c 'inside \"$@\"' inside \"$@\""),
                    "{script}"
                );
                continue;
            }
            if cmd.starts_with("bash -c 'set -e; ") && cmd.ends_with(" bash'") {
                // Lines of Phase::Join, then unshare in the same shell: in the
                // script, unshare runs inside() and the script's arguments follow.
                let start = cmd.trim_end_matches("bash'");
                assert!(
                    script.lines().any(|l| l.starts_with(start)
                        && l.contains(" bash -c '\\''inside \"$@\"'\\'' inside \"$@\"'")
                        && l.ends_with(" join \"$@\"")),
                    "step {n}: no script line starts like `{cmd}`:\n{script}"
                );
                continue;
            }
            let expected = if cmd.starts_with("unshare ") {
                format!("{} -c 'inside \"$@\"' inside \"$@\"", cmd)
            } else if cmd.starts_with("exec ") && cmd.ends_with(" /bin/sh") {
                // The last line runs the command, which the script takes as "$@".
                cmd.replace(" /bin/sh", " \"$@\"")
            } else if cmd.starts_with("chroot ") {
                cmd.replace(" /bin/sh", " \"$@\"")
            } else {
                cmd.to_string()
            };
            // A script line may guard the command so that it can run twice (`ip link
            // show lab0 || ip link add lab0 ...`); the command itself is the same text.
            assert!(
                script.lines().any(|l| l.trim() == expected
                    || l.contains(&format!("|| {expected}"))
                    || l.contains(&format!("; {expected}"))
                    || l.contains(&format!("{{ {expected};"))
                    || l.trim().starts_with(&format!("{expected}; "))
                    || l.trim()
                        .starts_with(&format!("{expected} 2>/dev/null || true"))),
                "step {n}: `{expected}` is in lab explain but not in lab script"
            );
        }
    }
}

#[test]
fn bad_input_gets_a_usage_error() {
    for args in [
        vec!["step", "99"],
        vec!["step", "0"],
        vec!["step", "x"],
        vec!["explain"],
        vec!["frobnicate"],
        vec!["step", "3", "--name", "bad name"],
        vec!["exec"],
        vec!["exec", "bad/name"],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "lab {args:?} should be a usage error"
        );
        assert!(
            err(&out).contains("Usage:") || err(&out).contains("--help"),
            "{}",
            err(&out)
        );
    }
}

#[test]
fn network_flags_are_checked() {
    for (args, says) in [
        (
            vec!["explain", "5", "--subnet", "10.200.0.7/24"],
            "did you mean 10.200.0.0/24",
        ),
        (
            vec!["explain", "5", "--subnet", "10.200.0.0/30"],
            "from /8 to /29",
        ),
        (
            vec!["explain", "5", "--publish", "8080"],
            "HOSTPORT:CONTAINERPORT",
        ),
        (
            vec!["explain", "5", "--publish", "99999:80"],
            "HOSTPORT:CONTAINERPORT",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "lab {args:?}");
        assert!(err(&out).contains(says), "lab {args:?}: {}", err(&out));
    }
    let out = run(&["explain", "4", "--publish", "8080:80"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("belong to step 5"), "{}", err(&out));
    // Published ports appear as their DNAT and FORWARD rules, and are removed after.
    let out = run(&["explain", "5", "--subnet", "10.200.0.0/24", "-p", "8080:80"]);
    let s = text(&out);
    assert!(s.contains("iptables -t nat -A LAB-DNAT -p tcp --dport 8080 -j DNAT --to-destination 10.200.0.2:80"), "{s}");
    assert!(
        s.contains("iptables -A LAB-FORWARD -d 10.200.0.2/32 -o lab0 -p tcp --dport 80 -j ACCEPT"),
        "{s}"
    );
    assert!(s.contains("iptables -t nat -D LAB-DNAT -p tcp --dport 8080 -j DNAT --to-destination 10.200.0.2:80"), "{s}");
}

/// lab as a user without root: as root (CI), dropped to nobody for this command.
fn lab_not_root() -> std::process::Command {
    if !support::is_root() {
        return lab();
    }
    let mut c = std::process::Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        support::LAB,
    ])
    .env("NO_COLOR", "1")
    .env_remove("LAB_HOME")
    .env_remove("LAB_RUN");
    c
}

#[test]
fn without_root_lab_says_to_use_sudo_and_creates_nothing() {
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("not-root");
    let _ = std::fs::remove_dir_all(&tmp);
    for args in [
        vec!["step", "3"],
        vec!["verify", "2"],
        vec!["rootfs"],
        vec!["clean"],
        vec!["check", "1", "--pid", "1"],
        vec!["exec", "c1"],
    ] {
        let out = lab_not_root()
            .env("LAB_HOME", tmp.join("home"))
            .env("LAB_RUN", tmp.join("run"))
            .args(&args)
            .output()
            .expect("run lab");
        assert_eq!(out.status.code(), Some(1), "lab {args:?}");
        let e = err(&out);
        assert!(e.contains("run it with sudo"), "lab {args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "one line, not a backtrace: {e}");
        assert!(
            !tmp.exists(),
            "lab {args:?} created {} without root",
            tmp.display()
        );
    }
}

/// Without root, lab doctor still looks (it changes nothing), and says the first
/// thing missing is root.
#[test]
fn doctor_without_root_says_to_use_sudo() {
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("doctor-not-root");
    let out = lab_not_root()
        .arg("doctor")
        .env("LAB_HOME", tmp.join("home"))
        .env("LAB_RUN", tmp.join("run"))
        .output()
        .expect("run lab doctor");
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out);
    assert!(s.contains("  MISSING root "), "{s}");
    assert!(s.contains("fix: sudo lab doctor"), "{s}");
    assert!(
        s.contains("  ok      pid namespace      in the kernel, for step 3"),
        "{s}"
    );
    assert!(!tmp.exists(), "lab doctor created {}", tmp.display());
}

#[test]
fn ps_with_nothing_running_says_so_and_needs_no_root() {
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ps-empty");
    let out = lab()
        .env("LAB_RUN", &tmp)
        .arg("ps")
        .output()
        .expect("run lab");
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(
        text(&out),
        "No container is running. Start one with sudo lab step N.\n"
    );
    assert!(!tmp.exists(), "lab ps created {}", tmp.display());
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let piped = std::process::Command::new(support::LAB)
        .args(["explain", "2"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap();
    assert!(
        !text(&piped).contains('\x1b'),
        "colour codes in piped output"
    );
    // `script` runs lab on a pseudo-terminal, as a student's shell would.
    let on_tty = |no_color: bool| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &format!("{} explain 2", support::LAB), "/dev/null"])
            .env_remove("CLICOLOR_FORCE");
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        text(&c.output().expect("script (util-linux)"))
    };
    assert!(on_tty(false).contains("\x1b["), "no colour on a terminal");
    assert!(!on_tty(true).contains('\x1b'), "colour despite NO_COLOR");
}

#[test]
fn a_reader_that_goes_away_is_no_panic() {
    let mut cmd = lab();
    cmd.args(["explain", "7"]);
    let out = support::with_reader_gone(cmd);
    assert!(out.status.success(), "{:?}", out.status);
    assert!(!err(&out).contains("panicked"), "{}", err(&out));
}

#[test]
fn explain_6_prints_cgroup_v1_commands_too() {
    let out = run(&[
        "explain",
        "6",
        "--cgroup",
        "v1",
        "--subnet",
        "10.200.0.0/24",
    ]);
    assert!(out.status.success(), "{}", err(&out));
    snapshot_settings().bind(|| insta::assert_snapshot!("explain-6-v1", text(&out)));
}

#[test]
fn limits_are_checked_before_anything_runs() {
    for (args, message) in [
        (vec!["step", "6", "--memory", "64X"], "is not a size"),
        (vec!["step", "6", "--memory", "1K"], "at least 4M"),
        (vec!["step", "6", "--cpus", "0"], "a share of one CPU"),
        (vec!["step", "6", "--pids", "2"], "--pids"),
        (vec!["step", "6", "--cgroup", "v3"], "--cgroup"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "lab {args:?}");
        assert!(err(&out).contains(message), "lab {args:?}: {}", err(&out));
    }
    let out = run(&["explain", "3", "--memory", "64M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("belong to step 6"), "{}", err(&out));
}

/// `lab lesson`: the list, a lesson with this machine's commands in it, and a
/// clear error for a lesson that does not exist.
#[test]
fn lesson_shows_the_lessons_in_the_terminal() {
    let list = run(&["lesson"]);
    assert!(list.status.success());
    let list = text(&list);
    for key in ["0 (intro)", "1", "7", "9", "10 (closing)"] {
        assert!(
            list.lines()
                .any(|l| l.trim_start().starts_with(&format!("{key} "))),
            "{list}"
        );
    }
    // Not on a terminal: no pager, no colour, the same text.
    let three = run(&["lesson", "3"]);
    assert!(three.status.success());
    let three = text(&three);
    assert!(
        three.starts_with("Step 3 · pid namespace and /proc\n===="),
        "{three}"
    );
    // The block holds what lab explain 3 prints here, whole, indented.
    let explain = text(&run(&["explain", "3"]));
    for line in explain.lines().filter(|l| !l.is_empty()) {
        assert!(three.contains(&format!("    {line}\n")), "{line}\n{three}");
    }
    assert!(
        three.contains("(Answer folded: think first, then lab quiz 3, or lab lesson 3 --answers)")
    );
    for gone in ["<details>", "<!--", "```"] {
        assert!(!three.contains(gone), "{three}");
    }
    let answered = text(&run(&["lesson", "03", "--answers"]));
    assert!(answered.contains("Answer:") && !answered.contains("Answer folded"));
    // The introduction and the closing chapter by their numbers too.
    assert!(text(&run(&["lesson", "0"])).starts_with("Introduction"));
    assert!(text(&run(&["lesson", "10"])).starts_with("What comes next"));
    let none = run(&["lesson", "99"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        err(&none).contains("there is no lesson \"99\": choose one of 0 (intro), 1, 2"),
        "{}",
        err(&none)
    );
}

/// The classroom VM's cloud-init file (Multipass) is valid cloud-config, and it
/// installs at least what lab's own scripts install. `cloud-init schema` works
/// offline; test.sh installs cloud-init (Debian's package, switched off at boot).
#[test]
fn the_cloud_init_file_is_valid() {
    if !support::installed_or_skip(
        "cloud-init",
        "apt-get install cloud-init",
        "the_cloud_init_file_is_valid",
    ) {
        return;
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/cloud-init.yaml");
    let out = std::process::Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out).contains("Valid cloud-config"),
        "{}{}",
        text(&out),
        err(&out)
    );
    // A broken one fails: the check is real.
    let broken = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cloud-init-broken.yaml");
    std::fs::write(&broken, "#cloud-config\npackages: busybox-static\n").unwrap();
    let out = std::process::Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_file(&broken);
    // What lab.sh and test.sh install for lab, the VM installs too.
    let config = std::fs::read_to_string(&file).unwrap();
    let common = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/common.sh"),
    )
    .unwrap();
    let needed = common
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("need_packages ")
                .filter(|_| l.starts_with("  need_packages busybox"))
        })
        .unwrap();
    for p in needed.split_whitespace() {
        assert!(
            config.contains(&format!("  - {p}\n")),
            "vm/cloud-init.yaml does not install {p}"
        );
    }
}

/// The classroom VM's Vagrantfile is valid: `vagrant validate --ignore-provider`
/// needs no box and no network. test.sh installs vagrant (Debian's package);
/// without it the test says so, and with CI=true it fails.
#[test]
fn the_vagrantfile_is_valid() {
    if !support::installed_or_skip(
        "vagrant",
        "apt-get install vagrant",
        "the_vagrantfile_is_valid",
    ) {
        return;
    }
    let home = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("vagrant-home");
    let out = std::process::Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("VAGRANT_HOME", &home)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out).contains("Vagrantfile validated successfully."),
        "{}{}",
        text(&out),
        err(&out)
    );
}

/// The setup's package step without a network: apt-get update is said before it
/// starts, gives up after LAB_APT_TIMEOUT seconds with what to check, and an
/// optional package (Tab completion) does not stop the setup. A fake apt-get
/// that hangs, as one does with no network, and a dpkg-query that finds nothing.
#[test]
fn the_setup_says_what_it_waits_for_and_gives_up_on_a_dead_network() {
    let fake = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fake-apt");
    let _ = std::fs::remove_dir_all(&fake);
    std::fs::create_dir_all(&fake).unwrap();
    for (name, body) in [("apt-get", "sleep 30"), ("dpkg-query", "exit 1")] {
        let path = fake.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        let mut p = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
        std::fs::set_permissions(&path, p).unwrap();
    }
    let run = |script: &str| {
        let start = std::time::Instant::now();
        let out = std::process::Command::new("bash")
            .args(["-c", &format!(". scripts/common.sh; {script}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", format!("{}:/usr/bin:/bin", fake.display()))
            .env("LAB_APT_TIMEOUT", "1")
            .output()
            .unwrap();
        (out, start.elapsed())
    };
    let (out, took) = run("need_packages some-package");
    assert!(!out.status.success());
    assert!(
        took < std::time::Duration::from_secs(20),
        "it waited {took:?}"
    );
    assert!(
        text(&out).contains("Updating the package lists (apt-get update; at most 1 s)..."),
        "{}",
        text(&out)
    );
    assert!(
        err(&out).contains("apt-get update did not finish in 1 s: check the network"),
        "{}",
        err(&out)
    );
    let (out, _) = run("want_packages bash-completion && echo went-on");
    assert!(out.status.success(), "{}", err(&out));
    assert!(text(&out).contains("went-on"), "{}", text(&out));
    assert!(
        err(&out).contains("Could not install bash-completion (optional): lab works without it."),
        "{}",
        err(&out)
    );
}
