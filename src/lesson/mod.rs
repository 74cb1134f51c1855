//! `lab lesson`: the lessons of lessons/, in the terminal, for self-study without
//! a browser.
//!
//! A lesson shows the commands of its step as `lab explain N` prints them, in a
//! block after a `<!-- lab explain N -->` line. The files hold the text printed for
//! the classroom VM (cgroup v2, subnet 10.200.0.0/24, uplink eth0, vagrant's
//! range 100000-165535 in /etc/subuid, so lab's is 200000-265535); the test below
//! fails when it differs from what lab prints, so the two never drift apart
//! (`LAB_UPDATE_LESSONS=1 cargo test lesson` rewrites the blocks). `lab lesson N`
//! fills the block in with the commands for this machine. The slides (slides/)
//! use `<!-- lab explain N layer L -->`: only the command lines of layer L.

/// One lesson: what `lab lesson` calls it, its file, its text.
pub struct Lesson {
    pub key: &'static str,
    pub file: &'static str,
    pub text: &'static str,
}

macro_rules! lesson {
    ($key:expr, $file:expr) => {
        Lesson {
            key: $key,
            file: $file,
            text: include_str!(concat!("../../lessons/", $file)),
        }
    };
}

pub const LESSONS: &[Lesson] = &[
    lesson!("intro", "00-introduction.md"),
    lesson!("1", "01-chroot.md"),
    lesson!("2", "02-mount-pivot-root.md"),
    lesson!("3", "03-pid-namespace.md"),
    lesson!("4", "04-uts-ipc.md"),
    lesson!("5", "05-network.md"),
    lesson!("6", "06-cgroups.md"),
    lesson!("7", "07-overlay.md"),
    lesson!("8", "08-privileges.md"),
    lesson!("9", "09-user-namespace.md"),
    lesson!("closing", "10-what-comes-next.md"),
];

mod blocks;
mod claims;
mod deck;
mod terminal;
pub use blocks::fill;
#[cfg(test)]
use blocks::{layer_commands, MARKER};
pub use terminal::{for_terminal, words_in_lines, wrap};

/// How `lab explain` titles a section typed in a second terminal (render.rs
/// prints it; the lessons and slides find those sections by it).
pub const SECOND_TERMINAL: &str = "in a second terminal, on the host";

/// A lesson by its number (`0`, `03`, `10`) or its name (`intro`, `closing`).
pub fn find(key: &str) -> Option<&'static Lesson> {
    match key.parse::<u8>() {
        Ok(n) => LESSONS.iter().find(|l| number(l) == n),
        Err(_) => LESSONS
            .iter()
            .find(|l| l.key == key || (key == "introduction" && l.key == "intro")),
    }
}

/// The number a lesson's file carries (`00-introduction.md`: 0).
pub fn number(lesson: &Lesson) -> u8 {
    lesson.file[..2].parse().unwrap_or(0)
}

/// How `lab lesson` names it: its number, and its name when it has one.
pub fn label(lesson: &Lesson) -> String {
    match lesson.key.parse::<u8>() {
        Ok(_) => number(lesson).to_string(),
        Err(_) => format!("{} ({})", number(lesson), lesson.key),
    }
}

/// The lesson's title: its first line, without the `# `.
pub fn title(lesson: &Lesson) -> &'static str {
    lesson
        .text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
}

/// What a lesson's sentences say about the machine its commands are for, read
/// from what `lab explain` prints on this one (so that they match the blocks).
pub struct Machine {
    pub cgroup: String,
    pub uplink: String,
    pub resolv: String,
}

impl Machine {
    /// From this machine's `lab explain` of the last step.
    pub fn from_explain(explain: &str) -> Machine {
        let cgroup = ["cgroup v1", "cgroup v2"]
            .into_iter()
            .find(|v| explain.contains(&format!("{v} found here")))
            .unwrap_or("cgroups");
        let uplink = explain
            .lines()
            .filter(|l| l.contains("-j MASQUERADE"))
            .find_map(|l| {
                l.split("-o ")
                    .nth(1)?
                    .split_whitespace()
                    .next()
                    .map(String::from)
            })
            .unwrap_or_else(|| "none: no default route".into());
        let resolv = explain
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("sed '/^nameserver 127\\./d' ")?
                    .split_whitespace()
                    .next()
                    .map(String::from)
            })
            .unwrap_or_else(|| "/etc/resolv.conf".into());
        Machine {
            cgroup: cgroup.into(),
            uplink,
            resolv,
        }
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{cgroup}", &self.cgroup)
            .replace("{uplink}", &self.uplink)
            .replace("{resolv}", &self.resolv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// What `lab explain N` prints for the classroom VM: cgroup v2, lab0 on
    /// 10.200.0.0/24, the uplink called eth0, the resolver list of systemd-resolved
    /// (/run/systemd/resolve/resolv.conf), the range of host IDs lab takes there
    /// (vagrant has the first in /etc/subuid).
    pub(super) fn classroom_explain(n: u8, only: Option<u8>) -> String {
        colored::control::set_override(false);
        let n = n.to_string();
        let mut args = vec!["lab", "explain", n.as_str()];
        if n.parse::<u8>().unwrap() >= 5 {
            args.extend(["--subnet", "10.200.0.0/24"]);
        }
        if n.parse::<u8>().unwrap() >= 6 {
            args.extend(["--cgroup", "v2"]);
        }
        // The range of host IDs lab takes with the classroom VM's /etc/subuid,
        // /etc/subgid, /etc/passwd and /etc/group.
        let (range, from) =
            crate::layers::userns::range::choose(&crate::layers::userns::range::classroom())
                .unwrap();
        let range = format!("{}:{}", range.base, range.count);
        if n.parse::<u8>().unwrap() >= 9 {
            args.extend(["--id-range", range.as_str()]);
        }
        let Some(crate::Cmd::Explain { target, .. }) = crate::Cli::parse_from(args).command else {
            unreachable!()
        };
        let plan =
            crate::engine::plan::Plan::new(crate::options::spec(&target, vec![], false).unwrap())
                .unwrap();
        let text = crate::engine::render::explain(&plan, only);
        // The classroom VM finds cgroup v2 itself (the test asks for it).
        let text = text.replace(
            "cgroup v2, as --cgroup asks",
            "cgroup v2 found here: /sys/fs/cgroup is a cgroup2 filesystem",
        );
        let text = text.replace("as --id-range asks", &from);
        // The classroom VM runs systemd-resolved: lab reads its list of servers.
        let text = text.replace(
            "/d' /etc/resolv.conf >",
            "/d' /run/systemd/resolve/resolv.conf >",
        );
        text.lines()
            .map(|l| match l.find("-o ").zip(l.find(" -j MASQUERADE")) {
                Some((o, j)) if l.contains("MASQUERADE") && o < j => {
                    let start = if l[..o].ends_with("! ") { o - 2 } else { o };
                    format!("{}-o eth0{}", &l[..start], &l[j..])
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_lesson_shows_the_commands_lab_prints() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
        let mut blocks = 0;
        for lesson in LESSONS {
            let expected = fill(lesson.text, classroom_explain);
            blocks += lesson.text.matches(MARKER).count();
            if expected == lesson.text {
                continue;
            }
            if std::env::var_os("LAB_UPDATE_LESSONS").is_some() {
                std::fs::write(dir.join(lesson.file), &expected).unwrap();
                continue;
            }
            let (line, (want, have)) = expected
                .lines()
                .zip(lesson.text.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap_or((0, ("(length differs)", "")));
            panic!(
                "lessons/{}, line {}: lab prints\n  {want}\nbut the lesson has\n  {have}\n\
                 When what lab prints changes, the lessons change in the same commit: \
                 LAB_UPDATE_LESSONS=1 cargo test lesson, then read the diff.",
                lesson.file,
                line + 1
            );
        }
        // Steps 1 to 9, one block each (step 9 shows layer 7's changes too), and
        // each lesson's command that grades what the student typed: a lesson that
        // lost one fails here.
        assert_eq!(
            blocks,
            10 + 9,
            "every step's lesson has its blocks of commands"
        );
        for n in 1..=9 {
            let lesson = find(&n.to_string()).unwrap();
            assert!(
                lesson.text.contains(&format!(
                    "{MARKER}{n} grade -->\n```text\nsudo lab check {n} --pid "
                )),
                "lessons/{} does not say how to grade what the student typed",
                lesson.file
            );
        }
    }

    #[test]
    fn the_slides_show_the_commands_lab_prints() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("slides/deck.md");
        let deck = std::fs::read_to_string(&path).unwrap();
        let expected = fill(&deck, classroom_explain);
        if expected != deck && std::env::var_os("LAB_UPDATE_LESSONS").is_some() {
            std::fs::write(&path, &expected).unwrap();
            return;
        }
        for (i, (want, have)) in expected.lines().zip(deck.lines()).enumerate() {
            assert_eq!(
                want,
                have,
                "slides/deck.md, line {}: lab prints the first, the slide has the second. \
                 LAB_UPDATE_LESSONS=1 cargo test lesson rewrites it; read the diff.",
                i + 1
            );
        }
        assert_eq!(expected, deck);
        // Every step has its commands on a slide, and every command slide can be
        // read from the back of a room: 15 lines at most.
        for n in 1..=crate::engine::curriculum::last_step() {
            assert!(
                deck.contains(&format!("{MARKER}{n} ")),
                "no commands of step {n}"
            );
        }
        let mut lines = deck.lines();
        while let Some(line) = lines.next() {
            if line.starts_with(MARKER) {
                lines.next();
                let shown = lines.by_ref().take_while(|l| *l != "```").count();
                assert!((1..=15).contains(&shown), "{line}: {shown} lines");
            }
        }
    }

    /// The site's table of contents (mdBook's SUMMARY.md) lists every lesson that
    /// `lab lesson` knows, in the same order, with its title.
    #[test]
    fn the_sites_contents_are_the_lessons() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons/SUMMARY.md");
        let summary = std::fs::read_to_string(path).unwrap();
        let listed: Vec<String> = summary
            .lines()
            .filter_map(|l| l.split_once("]("))
            .map(|(title, file)| {
                let title = title.rsplit('[').next().unwrap_or_default();
                format!("{title} {}", file.trim_end_matches(')'))
            })
            .collect();
        let lessons: Vec<String> = LESSONS
            .iter()
            .map(|l| format!("{} {}", title(l), l.file))
            .collect();
        assert_eq!(listed, lessons);
    }

    #[test]
    fn layer_commands_are_the_layers_command_lines() {
        let explain = classroom_explain(4, None);
        let four = layer_commands(&explain, 4);
        assert_eq!(
            four,
            "unshare --mount --pid --fork --uts --ipc bash\nhostname c1\n"
        );
        let three = layer_commands(&explain, 3);
        assert!(three.starts_with("unshare "), "{three}");
        assert!(three.ends_with("mount -t proc -o nosuid,nodev,noexec proc /proc\n"));
        // Layer 5's PID line reads the note that the first terminal writes: a
        // slide that shows it shows that line first.
        let five = layer_commands(&classroom_explain(5, None), 5);
        let note = "mkdir -p /run/lab/hand/c1 && echo $$ > /run/lab/hand/c1/shell\n";
        assert!(five.starts_with(note), "{five}");
        assert!(five.contains("PID=$(pgrep -nx -P \"$(cat /run/lab/hand/c1/shell)\" unshare)"));
        assert!(!four.contains("/shell"), "{four}");
    }

    /// What each terminal types, for the slides: at step 5, lab0 and the rules
    /// on the host before unshare, the veth pair from a second terminal, the
    /// addresses inside; every line of the layer in one of the three.
    #[test]
    fn commands_split_by_terminal() {
        use blocks::{terminal_commands, Terminal};
        let explain = classroom_explain(9, None);
        let host = terminal_commands(&explain, 5, Terminal::Host);
        let second = terminal_commands(&explain, 5, Terminal::Second);
        let inside = terminal_commands(&explain, 5, Terminal::Inside);
        eprintln!("HOST\n{host}SECOND\n{second}INSIDE\n{inside}");
        assert!(
            host.starts_with("mkdir -p /run/lab/hand/c1 && echo $$"),
            "{host}"
        );
        assert!(
            host.contains("ip link add lab0 ") && host.contains("iptables -N LAB-FORWARD"),
            "{host}"
        );
        assert!(
            host.trim_end().ends_with("bash'") && host.contains("exec unshare "),
            "{host}"
        );
        assert!(second.starts_with("PID=$(pgrep"), "{second}");
        assert!(
            second.contains("ip link set lab-veth2 master lab0"),
            "{second}"
        );
        assert!(inside.starts_with("ip link set lo up"), "{inside}");
        assert!(
            inside.contains("ip route add default via 10.200.0.1"),
            "{inside}"
        );
        assert!(
            inside.contains("mount --bind /../run/lab/hand/c1/etc/hosts /etc/hosts"),
            "{inside}"
        );
        let all = layer_commands(&explain, 5);
        for line in all.lines() {
            assert!(
                [&host, &second, &inside]
                    .iter()
                    .any(|t| t.lines().any(|l| l == line)),
                "{line}"
            );
        }
        // The cgroups are joined on the host, before unshare: nothing of
        // layer 6 is typed in the second terminal, even at step 9.
        let six = terminal_commands(&explain, 6, Terminal::Second);
        assert_eq!(six, "", "{six}");
        let host6 = terminal_commands(&explain, 6, Terminal::Host);
        assert!(
            host6.contains(
                "bash -c 'set -e; echo $$ > /sys/fs/cgroup/lab/c1/cgroup.procs; exec unshare "
            ),
            "{host6}"
        );
        let nine = terminal_commands(&explain, 9, Terminal::Inside);
        assert!(
            nine.starts_with("until grep -q . /proc/self/uid_map"),
            "{nine}"
        );
    }

    /// Whether `line` reads the shell variable `name` (`$PID`, `"$PID"`,
    /// `${PID}`), and whether it sets it (`PID=...`), each at a word's edge:
    /// `$PIDS` and `PPID=` are other variables.
    fn reads_and_sets(line: &str, name: &str) -> (bool, bool) {
        let edge = |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let reads = line
            .match_indices(&format!("${name}"))
            .any(|(i, m)| edge(line[i + m.len()..].chars().next()))
            || line.contains(&format!("${{{name}}}"));
        let sets = line
            .match_indices(&format!("{name}="))
            .any(|(i, _)| edge(line[..i].chars().next_back()));
        (reads, sets)
    }

    /// Every `$PID` a lesson's commands read is set before it, in an earlier
    /// line of the lesson (of the same block, or of one before it: the second
    /// terminal where the reader set it), so that they work as typed. A block
    /// of one layer (`lab explain 9 --only 9`) whose lines use the PID that an
    /// earlier layer finds shows the line that finds it.
    #[test]
    fn every_pid_a_lesson_reads_is_set_before() {
        for lesson in LESSONS {
            let mut set = false;
            for (n, line) in lesson.text.lines().enumerate() {
                let (reads, sets) = reads_and_sets(line, "PID");
                let set_here = sets
                    && line.find("PID=").unwrap_or(usize::MAX)
                        < line.find("$PID").unwrap_or(usize::MAX);
                assert!(
                    !reads || set || set_here,
                    "lessons/{}, line {}: $PID is read before any line sets it:\n  {line}",
                    lesson.file,
                    n + 1
                );
                set |= sets;
            }
        }
        assert_eq!(
            reads_and_sets("echo x > /proc/$PID/uid_map", "PID"),
            (true, false)
        );
        assert_eq!(reads_and_sets("PID=$(pgrep -n x)", "PID"), (false, true));
        assert_eq!(reads_and_sets("PPID=1; echo $PIDS", "PID"), (false, false));
    }

    /// `lab explain 9 --only 9` shows the line that finds the PID, which is
    /// layer 5's in the whole step, before the maps that read it; the whole
    /// step and layer 5's own block show it once.
    #[test]
    fn a_layers_own_block_finds_the_pid_it_uses() {
        let find = "PID=$(pgrep -nx -P \"$(cat /run/lab/hand/c1/shell)\" unshare)";
        let nine = classroom_explain(9, Some(9));
        let (at, map) = (nine.find(find), nine.find("> /proc/$PID/uid_map"));
        assert!(at.is_some() && at < map, "{nine}");
        assert_eq!(nine.matches(find).count(), 1, "{nine}");
        assert_eq!(classroom_explain(9, None).matches(find).count(), 1);
        assert_eq!(classroom_explain(5, Some(5)).matches(find).count(), 1);
        // A layer with no line in the second terminal gets none.
        assert!(!classroom_explain(9, Some(8)).contains(find));
    }

    #[test]
    fn fill_replaces_only_the_block_after_the_marker() {
        let text = "a\n<!-- lab explain 3 -->\n```text\nold\nlines\n```\nb\n";
        let filled = fill(text, |n, _| format!("step {n}\n"));
        assert_eq!(
            filled,
            "a\n<!-- lab explain 3 -->\n```text\nstep 3\n```\nb\n"
        );
    }

    #[test]
    fn lessons_are_found_by_number_and_name() {
        assert_eq!(find("0").unwrap().file, "00-introduction.md");
        assert_eq!(find("intro").unwrap().file, "00-introduction.md");
        assert_eq!(find("03").unwrap().file, "03-pid-namespace.md");
        assert_eq!(find("10").unwrap().file, "10-what-comes-next.md");
        assert_eq!(find("closing").unwrap().file, "10-what-comes-next.md");
        assert!(find("11").is_none() && find("x").is_none());
    }
}
