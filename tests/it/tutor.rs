//! The tutor through a real terminal, as a student meets it: tmux runs lab on a
//! pseudo-terminal, the test types keys and reads the screen. The menu, a quiz
//! answered right and wrong (with the progress file), a walk through step 2 to
//! the end, Ctrl-C at the tenth walk prompt of step 5 (the host's links, rules,
//! mounts and cgroups compared), the prompt of the container's shell, hints
//! after a failed check, Tab completion; and the same commands without a
//! terminal.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of the test's own (its own socket), with one window running a
/// command; removed when dropped, even when the test fails.
struct Screen {
    socket: String,
}

impl Screen {
    /// `command` runs in a shell on a 100x50 terminal; `env` is exported first.
    fn start(command: &str, env: &[(&str, &Path)]) -> Screen {
        let socket = format!(
            "lab-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], "");
        let exports: String = env
            .iter()
            .map(|(k, v)| format!("export {k}={}; ", v.display()))
            .collect();
        let script = format!(
            "{exports}export NO_COLOR=1 TERM=xterm; {command}; echo \"EXIT=$?\"; exec sleep 600"
        );
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "50",
            ])
            .args(["sh", "-c", &script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux did not start");
        Screen { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        text(&out)
    }

    /// What the terminal shows, with its scrollback.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-S", "-2000"])
    }

    fn keys(&self, keys: &[&str]) {
        self.tmux(&[&["send-keys", "-t", "0"][..], keys].concat());
    }

    /// Wait (at most 60 s) until the screen holds `what` `n` times; returns it.
    fn wait_for(&self, what: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.matches(what).count() >= n {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waited for {what:?} ({n} times) on:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until `answered` walk prompts are answered and the next one asks;
    /// None once the command has ended instead.
    fn walk_prompt(&self, answered: usize) -> Option<String> {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains("EXIT=") {
                return None;
            }
            if s.matches("✔ --walk").count() >= answered && s.contains("? --walk") {
                return Some(s);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waited for walk prompt {}:\n{s}",
                answered + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status of the command, once it has ended.
    fn exit(&self) -> i32 {
        let s = self.wait_for("EXIT=", 1);
        let code = s.split("EXIT=").nth(1).unwrap().lines().next().unwrap();
        code.trim().parse().unwrap()
    }

    /// Whether the terminal's cursor is shown.
    fn cursor_shown(&self) -> bool {
        self.tmux(&["display", "-p", "-t", "0", "#{cursor_flag}"])
            .trim()
            == "1"
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // The pane's last process is `exec sleep`: it ends with the server (a
        // hangup). The socket tmux leaves goes too.
        let socket = self.tmux(&["display", "-p", "#{socket_path}"]);
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
        if !socket.trim().is_empty() {
            let _ = std::fs::remove_file(socket.trim());
        }
    }
}

fn tmux_or_skip() -> bool {
    installed_or_skip("tmux", "apt-get install tmux", "the tutor's terminal tests")
}

/// Root (one test at a time, in a network namespace of its own) and tmux, for
/// the tests that build containers on a terminal; None, having said why, if not.
fn privileged_terminal() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = privileged()?;
    tmux_or_skip().then_some(guard)
}

/// lab's directories for a test on a terminal: `home`, the test run's
/// LAB_RUN, and cgroups below the test's own.
fn isolated(home: PathBuf) -> [(&'static str, PathBuf); 3] {
    [
        ("LAB_HOME", home),
        ("LAB_RUN", run_dir()),
        ("LAB_CGROUP_PARENT", PathBuf::from(CGROUP_PARENT)),
    ]
}

/// The environment as [`Screen::start`] takes it.
fn as_env<'a>(pairs: &'a [(&'static str, PathBuf)]) -> Vec<(&'static str, &'a Path)> {
    pairs.iter().map(|(k, v)| (*k, v.as_path())).collect()
}

/// Whether a walk prompt on the screen is the one before pivot_root.
fn at_pivot_root(shown: &str) -> bool {
    // What the prompt asks about: the lines after the last one answered (its
    // comment may wrap over many lines of the terminal).
    let asked = shown.rsplit("✔ --walk").next().unwrap_or(shown);
    asked.lines().any(|l| l.trim() == "pivot_root . .")
}

/// A home of the test's own: the progress file and the hints go there.
fn fresh_home(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tutor-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn without_a_terminal_lab_prints_its_help_and_quiz_takes_letters() {
    let out = lab().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err(&out).starts_with("Rebuild a Linux container"),
        "{}",
        err(&out)
    );
    assert!(err(&out).contains("Usage: lab <COMMAND>"), "{}", err(&out));
    assert!(text(&out).is_empty());

    let home = fresh_home("letters");
    let quiz = |args: &[&str]| {
        lab()
            .env("LAB_HOME", &home)
            .args(["quiz", "3"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = quiz(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("--answers aaa"), "{}", err(&out));
    let out = quiz(&["--answers", "ab"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("has 3 questions"), "{}", err(&out));
    let out = quiz(&["--answers", "cab"]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        text(&out).contains("3 of 3 right. Well done."),
        "{}",
        text(&out)
    );
    let out = quiz(&["--answers", "cbb"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("Not quite."), "{t}");
    assert!(
        t.contains("The answer is a) The kernel kills every other process"),
        "{t}"
    );
    assert!(t.contains("2 of 3 right: read the lesson again"), "{t}");
    let progress = std::fs::read_to_string(home.join("progress")).unwrap();
    let scores: Vec<&str> = progress
        .lines()
        .map(|l| l.split(" 20").next().unwrap())
        .collect();
    assert_eq!(scores, ["quiz 3 scored 3/3", "quiz 3 scored 2/3"]);
    let steps = text(&lab().env("LAB_HOME", &home).arg("steps").output().unwrap());
    assert!(
        steps.contains("pid namespace and /proc · quiz 2/3\n"),
        "{steps}"
    );
}

#[test]
fn the_menu_runs_what_it_names_and_a_quiz_is_answered_with_keys() {
    if !tmux_or_skip() {
        return;
    }
    let home = fresh_home("menu");
    let s = Screen::start(LAB, &[("LAB_HOME", &home)]);
    let menu = s.wait_for("Quit", 1);
    assert!(menu.contains("? What next?"), "{menu}");
    assert!(
        menu.contains("Continue: build step 1, chroot (lab next)"),
        "{menu}"
    );
    assert!(!s.cursor_shown(), "a menu hides the cursor while it asks");
    // Down to "Take a quiz", then lesson 1 (the second of the list).
    s.keys(&["Down", "Down", "Down", "Down", "Down", "Enter"]);
    s.wait_for("Which lesson?", 1);
    s.keys(&["Down", "Enter"]);
    s.wait_for("$ lab quiz 1", 1);
    // Question 1 right (a), question 2 wrong (a; c is right), question 3 right (b).
    s.wait_for("your answer", 1);
    s.keys(&["Enter"]);
    s.wait_for("your answer", 2);
    s.keys(&["Enter"]);
    s.wait_for("your answer", 3);
    s.keys(&["Down", "Enter"]);
    let shown = s.wait_for("right: read the lesson again", 1);
    assert_eq!(shown.matches("Right.").count(), 2, "{shown}");
    assert!(
        shown.contains("Not quite.\n   The answer is c) Everything but the view"),
        "{shown}"
    );
    // Back at the menu: progress, then quit.
    s.wait_for("What next?", 2);
    s.keys(&["Up", "Up", "Up", "Enter"]);
    let shown = s.wait_for("· quiz 2/3", 1);
    assert!(shown.contains("$ lab steps"), "{shown}");
    s.wait_for("What next?", 3);
    s.keys(&["Up", "Enter"]);
    assert_eq!(s.exit(), 0);
    assert!(s.cursor_shown());
    let progress = std::fs::read_to_string(home.join("progress")).unwrap();
    assert!(progress.starts_with("quiz 1 scored 2/3 "), "{progress}");

    // Ctrl-C at a question: nothing recorded, the cursor back, exit 130.
    let s = Screen::start(&format!("{LAB} quiz 2"), &[("LAB_HOME", &home)]);
    s.wait_for("your answer", 1);
    s.keys(&["C-c"]);
    assert_eq!(s.exit(), 130);
    assert!(s.screen().contains("nothing was recorded"));
    assert!(s.cursor_shown(), "the cursor stays hidden after Ctrl-C");
    let again = std::fs::read_to_string(home.join("progress")).unwrap();
    assert_eq!(again, progress);
}

/// The state of the host a walk must leave as it found it.
fn host_state() -> (String, String, String, String) {
    settled();
    let run = |cmd: &[&str]| text(&Command::new(cmd[0]).args(&cmd[1..]).output().unwrap());
    let cgroups: Vec<String> = test_cgroup_parents()
        .iter()
        .filter(|d| d.exists())
        .map(|d| d.display().to_string())
        .collect();
    (
        run(&["ip", "-d", "link"]),
        // The rules (a table loaded for the first time stays, empty).
        run(&["iptables-save"])
            .lines()
            .filter(|l| l.starts_with('-'))
            .collect::<Vec<_>>()
            .join("\n"),
        mountinfo(),
        cgroups.join("\n"),
    )
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_walk_on_a_terminal_explains_runs_to_the_end_or_stops_on_ctrl_c() {
    let Some(_g) = privileged_terminal() else {
        return;
    };
    let env = isolated(home());
    let env = as_env(&env);
    // Step 2 to the end: at pivot_root, more from the lesson and its checks.
    let s = Screen::start(&format!("{LAB} step 2 --walk -- echo walked"), &env);
    let mut answered = 0;
    let mut explained = false;
    while let Some(shown) = s.walk_prompt(answered) {
        let at_pivot_root = at_pivot_root(&shown);
        if at_pivot_root && !explained {
            s.keys(&["Down", "Enter"]);
            let more = s.wait_for("From lesson 2:", 1);
            assert!(more.contains("(the whole lesson: lab lesson 2)"), "{more}");
            s.walk_prompt(answered + 1).unwrap();
            s.keys(&["Down", "Down", "Enter"]);
            let checks = s.wait_for("lab proves layer 2 with these checks:", 1);
            assert!(
                checks.contains("  - the host's root is detached"),
                "{checks}"
            );
            answered += 2;
            explained = true;
            continue;
        }
        s.keys(&["Enter"]);
        answered += 1;
    }
    assert!(explained, "no prompt at pivot_root:\n{}", s.screen());
    assert_eq!(s.exit(), 0, "{}", s.screen());
    let shown = s.screen();
    assert!(shown.contains("\nwalked\n"), "{shown}");
    assert!(!shown.contains("FAIL"), "{shown}");
    drop(s);

    // Step 5: Ctrl-C at the tenth prompt, once lab0 and its rules exist.
    let before = host_state();
    let s = Screen::start(&format!("{LAB} step 5 --walk -- true"), &env);
    for n in 0..9 {
        s.walk_prompt(n).expect("lab ended before the tenth prompt");
        s.keys(&["Enter"]);
    }
    s.walk_prompt(9).expect("lab ended before the tenth prompt");
    let made = Command::new("ip")
        .args(["link", "show", "lab0"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "lab0 should exist by the tenth prompt"
    );
    s.keys(&["C-c"]);
    assert_eq!(s.exit(), 130, "{}", s.screen());
    assert!(s
        .screen()
        .contains("interrupted by SIGINT: the container was removed"));
    assert!(s.cursor_shown(), "the cursor stays hidden after Ctrl-C");
    assert_eq!(
        host_state(),
        before,
        "Ctrl-C at a walk prompt left something"
    );
    assert_eq!(leftover_containers(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_shell_inside_says_where_it_is_and_a_command_gets_no_prompt() {
    let Some(_g) = privileged_terminal() else {
        return;
    };
    let env = [("LAB_HOME", home()), ("LAB_RUN", run_dir())];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    // With its checks: on a terminal, lab-init waits on it too, and still reaps.
    let s = Screen::start(&format!("{LAB} step 3 --verbose --name tutor1"), &env);
    let screen = s.wait_for("[tutor1 · step 3] / #", 1);
    assert!(
        screen.contains("pass  layer 3: PID 1 reaps orphaned processes"),
        "{screen}"
    );
    s.keys(&["cd /etc", "Enter"]);
    s.wait_for("[tutor1 · step 3] /etc #", 1);
    s.keys(&["exit", "Enter"]);
    assert_eq!(s.exit(), 0);
    let out = lab_isolated()
        .args([
            "step",
            "3",
            "--no-checks",
            "--",
            "sh",
            "-c",
            "env | grep -q '^PS1=' || echo no PS1 given",
        ])
        .output()
        .unwrap();
    assert!(text(&out).contains("\nno PS1 given\n"), "{}", text(&out));
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn hints_escalate_from_the_cause_to_the_fix() {
    let Some(_g) = privileged() else {
        return;
    };
    let home = fresh_home("hints");
    let lab_here = || {
        let mut c = lab_isolated();
        c.env("LAB_HOME", &home);
        c
    };
    let out = lab_here().args(["hint", "3"]).output().unwrap();
    assert!(
        text(&out).contains("No failed check of step 3 is on record"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).ends_with(".\n"),
        "a line ends the output: {:?}",
        text(&out)
    );
    // A process of the host is no container of step 3: its checks fail.
    let host = Background::spawn({
        let mut c = Command::new("sleep");
        c.arg("4321");
        c
    });
    let out = lab_here()
        .args(["check", "3", "--pid", &host.pid().to_string()])
        .output()
        .unwrap();
    drop(host);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("`lab hint 3` shows what to look at"),
        "{}",
        err(&out)
    );
    let first = text(&out)
        .lines()
        .find(|l| l.contains("FAIL"))
        .unwrap()
        .split(": ")
        .nth(1)
        .unwrap()
        .to_string();
    let two = text(&lab_here().args(["hint", "3"]).output().unwrap());
    assert!(
        two.starts_with(&format!("Hint 2 of 3 for layer 1: {first}")),
        "{two}"
    );
    assert!(
        two.contains("What the check saw:") && two.contains("See the cause yourself:"),
        "{two}"
    );
    let three = text(&lab_here().args(["hint", "3"]).output().unwrap());
    assert!(three.starts_with("Hint 3 of 3"), "{three}");
    assert!(
        three.contains("as lab explain 3 --only 1 prints them"),
        "{three}"
    );
    assert!(three.contains("Layer 1 · chroot"), "{three}");
    // Once step 3's checks pass, nothing is left to hint at.
    let out = lab_here().args(["verify", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(!home.join("hints").exists());
}

#[test]
fn tab_completes_commands_steps_lessons_and_images() {
    let script = text(&lab().args(["completions", "bash"]).output().unwrap());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("completion");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lab.bash"), &script).unwrap();
    let bin = Path::new(LAB).parent().unwrap();
    let complete = |words: &str| {
        let probe = format!(
            ". {}/lab.bash; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _lab lab \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"",
            dir.display()
        );
        let out = Command::new("bash")
            .args(["-c", &probe])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("LAB_HOME", dir.join("home"))
            .output()
            .unwrap();
        text(&out).trim().to_string()
    };
    assert_eq!(complete("lab qu"), "quiz");
    assert_eq!(
        complete("lab quiz ''"),
        "0 intro 1 2 3 4 5 6 7 8 9 10 closing"
    );
    assert_eq!(complete("lab step ''"), "1 2 3 4 5 6 7 8 9");
    assert_eq!(complete("lab verify 1"), "1");
    assert_eq!(complete("lab step 7 --ima"), "--image");
    assert!(complete("lab image ''").contains("import"));
    for shell in ["zsh", "fish"] {
        let out = lab().args(["completions", shell]).output().unwrap();
        assert!(
            out.status.success() && text(&out).contains("quiz"),
            "{shell}"
        );
    }
}

/// The menu through a step with a shell, and back, from an interactive bash as
/// a student's terminal runs it: from step 3 the container's shell (busybox sh
/// with job control) makes its own process group the terminal's foreground,
/// and lab, once it exits, must take the terminal back before it draws the
/// menu again. Without that the kernel stops lab (SIGTTOU), bash says
/// `[1]+ Stopped`, and the keys go to bash. Every step; failures are listed
/// together, so that one does not hide the others.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_menu_gets_the_terminal_back_after_a_steps_shell_at_every_step() {
    let Some(_g) = privileged_terminal() else {
        return;
    };
    let home = fresh_home("menu-steps");
    let copied = Command::new("cp")
        .args(["-a"])
        .arg(crate::support::home().join("rootfs"))
        .arg(home.join("rootfs"))
        .status()
        .unwrap();
    assert!(copied.success(), "copying the test's root filesystem");
    let mut failed = Vec::new();
    for step in 1..=9u8 {
        // The steps before it completed: "Continue" (the first item) builds it.
        let progress: String = (1..step)
            .map(|n| format!("step {n} completed 2026-01-01 00:00:00 UTC\n"))
            .collect();
        std::fs::write(home.join("progress"), progress).unwrap();
        let env = isolated(home.clone());
        let env = as_env(&env);
        let s = Screen::start("PS1='host$ ' exec bash --norc --noprofile -i", &env);
        s.wait_for("host$", 1);
        s.keys(&[LAB, "Enter"]);
        // The question comes before its items: wait for the first item.
        let menu = s.wait_for("Continue: build step", 1);
        assert!(
            menu.contains(&format!("Continue: build step {step},")),
            "{menu}"
        );
        s.keys(&["Enter"]);
        s.wait_for(&format!(" · step {step}] / #"), 1);
        s.keys(&["exit", "Enter"]);
        s.wait_for("What next?", 2);
        // Quit (Up from the first item goes round to the last).
        s.keys(&["Up", "Enter"]);
        s.wait_for("host$", 2);
        s.keys(&["echo DONE=$?", "Enter"]);
        let shown = s.wait_for("DONE=", 2);
        if shown.contains("Stopped") || !shown.contains("DONE=0") {
            failed.push(format!("step {step}:\n{shown}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert_eq!(leftover_containers(), Vec::<String>::new());
}

/// "stop" at a --walk prompt says so (not "interrupted by SIGINT"), inside the
/// container (at pivot_root, a prompt of lab's init) as on the host (the first
/// prompt), removes everything, and exits as Ctrl-C would.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn stop_at_a_walk_prompt_says_it_was_stopped() {
    let Some(_g) = privileged_terminal() else {
        return;
    };
    let env = isolated(home());
    let env = as_env(&env);
    for inside in [false, true] {
        let s = Screen::start(&format!("{LAB} step 2 --walk -- true"), &env);
        let mut answered = 0;
        loop {
            let shown = s
                .walk_prompt(answered)
                .expect("lab ended before the prompt to stop at");
            let at_pivot_root = at_pivot_root(&shown);
            if !inside || at_pivot_root {
                break;
            }
            s.keys(&["Enter"]);
            answered += 1;
        }
        s.keys(&["Down", "Down", "Down", "Enter"]);
        assert_eq!(s.exit(), 130, "{}", s.screen());
        let shown = s.screen();
        assert!(
            shown.contains("lab: stopped at a --walk prompt: the container was removed"),
            "{shown}"
        );
        assert!(!shown.contains("SIGINT"), "{shown}");
        drop(s);
        assert_eq!(leftover_containers(), Vec::<String>::new());
    }
}
