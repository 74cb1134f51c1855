//! The instructor's deck (slides/deck.md) as a plan for a real day, tested:
//! its schedule adds up, what a student types by hand from its slides works as
//! typed (the note of the shell that `lab check` reads, the earlier layers, the
//! teardown), and the notes of each step's live slide are that step's (part of
//! lesson/, beside blocks.rs, whose blocks the deck takes from `lab explain`).

#[cfg(test)]
mod tests {
    use super::super::blocks::{after_exit, MARKER};
    use super::super::tests::classroom_explain;

    fn deck() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("slides/deck.md");
        std::fs::read_to_string(path).unwrap()
    }

    /// The deck's slides, after its front matter.
    fn slides(deck: &str) -> Vec<&str> {
        deck.splitn(3, "---\n")
            .nth(2)
            .unwrap()
            .split("\n---\n")
            .collect()
    }

    /// A slide's title: its first `# ` line.
    fn heading(slide: &str) -> &str {
        slide
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or_default()
    }

    /// A slide's speaker notes: its HTML comment of more than one line.
    fn notes(slide: &str) -> &str {
        slide
            .split_once("<!--\n")
            .and_then(|(_, n)| n.split_once("-->"))
            .map(|(n, _)| n)
            .unwrap_or_default()
    }

    /// The blocks of commands of a slide: each marker line and the lines below it.
    fn blocks(slide: &str) -> Vec<(&str, Vec<&str>)> {
        let mut out = Vec::new();
        let mut lines = slide.lines();
        while let Some(line) = lines.next() {
            if line.starts_with(MARKER) {
                lines.next();
                out.push((line, lines.by_ref().take_while(|l| *l != "```").collect()));
            }
        }
        out
    }

    /// `HH:MM` in minutes.
    fn minutes(time: &str) -> u32 {
        let (h, m) = time.trim().split_once(':').unwrap();
        h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap()
    }

    /// One row of the schedule: when it starts, what, and its minutes (the parts
    /// of a step: idea, live, by hand, break it, quiz; else one number).
    struct Row {
        from: u32,
        what: String,
        parts: Vec<u32>,
        total: u32,
    }

    /// The rows of the slides "The day ...", and those slides.
    fn schedule(deck: &str) -> (Vec<Row>, Vec<&str>) {
        let days: Vec<&str> = slides(deck)
            .into_iter()
            .filter(|s| heading(s).starts_with("The day"))
            .collect();
        let mut rows = Vec::new();
        for day in &days {
            for line in day.lines().filter(|l| l.starts_with("| ")) {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                if !cells[1].contains(':') {
                    continue;
                }
                let (parts, total) = match cells[3].split_once('=') {
                    Some((parts, total)) => (
                        parts
                            .split('·')
                            .map(|p| p.trim().parse().unwrap())
                            .collect(),
                        total.trim().parse().unwrap(),
                    ),
                    None => (vec![], cells[3].parse().unwrap()),
                };
                rows.push(Row {
                    from: minutes(cells[1]),
                    what: cells[2].to_string(),
                    parts,
                    total,
                });
            }
        }
        (rows, days)
    }

    /// The day, as the deck plans it: from 09:00, each row as long as its minutes
    /// (the next starts when it ends, the last when the day does), each step's
    /// parts adding up to them with time for its quiz, as the schedule's notes give
    /// them; breaks, lunch and a buffer; and the sentence that sums it up true.
    #[test]
    fn the_schedule_of_the_day_adds_up() {
        let deck = deck();
        let (rows, days) = schedule(&deck);
        assert_eq!(days.len(), 2, "the day, morning and afternoon");
        assert!(rows.len() >= 15, "{} rows", rows.len());
        assert_eq!(rows[0].from, minutes("09:00"));
        // "09:00 to HH:MM: ..." on the afternoon's slide.
        let summary = days[1]
            .lines()
            .find(|l| l.starts_with("09:00 to "))
            .expect("the afternoon's slide says when the day ends");
        let end = minutes(&summary["09:00 to ".len()..][..5]);
        let ends: Vec<u32> = rows.iter().skip(1).map(|r| r.from).chain([end]).collect();
        let (mut work, mut breaks, mut buffers) = (0, 0, 0);
        let mut steps = Vec::new();
        for (r, to) in rows.iter().zip(ends) {
            assert_eq!(to - r.from, r.total, "{}: its minutes", r.what);
            if r.what.contains("*break*") || r.what.contains("*lunch*") {
                breaks += r.total;
            } else if r.what.contains("*buffer*") {
                buffers += r.total;
            } else {
                work += r.total;
            }
            let Some(n) = r.what.strip_prefix("step ") else {
                assert!(r.parts.is_empty(), "{}", r.what);
                continue;
            };
            let n: u8 = n.split(' ').next().unwrap().parse().unwrap();
            steps.push(n);
            // idea · live · by hand · break it · quiz, as the notes say: idea 5
            // (10 for step 8, with the escape arc), live 5, by hand 10-25, break
            // it 5-10, quiz 5.
            let [idea, live, hand, break_it, quiz] = r.parts[..] else {
                panic!("{}: {:?}", r.what, r.parts)
            };
            assert_eq!(idea + live + hand + break_it + quiz, r.total, "step {n}");
            assert_eq!(idea, if n == 8 { 10 } else { 5 }, "step {n}: idea");
            assert_eq!((live, quiz), (5, 5), "step {n}: live, quiz");
            assert!((10..=25).contains(&hand), "step {n}: by hand {hand}");
            assert!(
                (5..=10).contains(&break_it),
                "step {n}: break it {break_it}"
            );
            assert!((30..=50).contains(&r.total), "step {n}: {} min", r.total);
        }
        assert_eq!(
            steps,
            (1..=9).collect::<Vec<u8>>(),
            "each step once, in order"
        );
        assert!(rows.iter().any(|r| r.what.contains("*lunch*")));
        assert!(rows.iter().filter(|r| r.what.contains("*break*")).count() >= 2);
        assert!(buffers > 0, "no buffer");
        let hm = |m: u32| match m % 60 {
            0 => format!("{} h", m / 60),
            r if m >= 60 => format!("{} h {r}", m / 60),
            r => format!("{r} min"),
        };
        let said = format!(
            "09:00 to {:02}:{:02}: work {}, breaks {}, buffers {}.",
            end / 60,
            end % 60,
            hm(work),
            hm(breaks),
            hm(buffers)
        );
        assert_eq!(summary, said);
        assert!(
            notes(days[0])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains("30 to 50 minutes a step"),
            "the notes say how long a step takes"
        );
    }

    const NOTE: &str = "mkdir -p /run/lab/hand/c1 && echo $$ > /run/lab/hand/c1/shell";

    /// `lab check N --pid "$(pgrep -n -P "$(cat /run/lab/hand/c1/shell)")"` finds
    /// a container typed by hand by the note of the shell that started it: every
    /// block that starts a container writes that note first, and each step's first
    /// block on the host starts with it.
    #[test]
    fn every_block_that_starts_a_container_notes_its_shell_first() {
        let deck = deck();
        let mut starts = 0;
        // A host block whose lines go on, on the next slide, in a block of lines
        // from N on: the note is at the top of its first part.
        let mut noted_part = false;
        for slide in slides(&deck) {
            for (marker, lines) in blocks(slide) {
                let host = marker.contains(" host");
                let first_part = marker.ends_with(" host -->") || marker.contains(" host 1-");
                if first_part {
                    noted_part = lines.first() == Some(&NOTE);
                }
                let start = lines
                    .iter()
                    .position(|l| l.starts_with("chroot ") || l.contains("unshare "));
                if let Some(start) = start {
                    starts += 1;
                    let noted = match lines.iter().position(|l| *l == NOTE) {
                        Some(n) => n < start,
                        None => host && !first_part && noted_part,
                    };
                    assert!(
                        noted,
                        "{marker} starts a container without the note of its shell first:\n{}",
                        lines.join("\n")
                    );
                }
            }
        }
        assert!(starts >= 6, "{starts} blocks start a container");
        for n in 1..=9 {
            let host = format!("{MARKER}{n} layer {n} host");
            let (_, lines) = slides(&deck)
                .into_iter()
                .flat_map(blocks)
                .find(|(m, _)| m.starts_with(&host))
                .unwrap_or_else(|| panic!("no host block of step {n}"));
            assert_eq!(lines.first(), Some(&NOTE), "step {n}'s first host block");
        }
    }

    /// Steps 5 to 7 leave lab0, the LAB-* chains, the cgroups and the overlay on
    /// the host: each has its teardown on its slides, every line of what `lab
    /// explain N` types after exit, in order, on slides that say so.
    #[test]
    fn steps_5_to_7_have_their_teardown() {
        let deck = deck();
        for n in 5..=7u8 {
            let want = after_exit(&classroom_explain(n, None)).lines().count();
            let mut next = 1;
            for slide in slides(&deck) {
                for (marker, lines) in blocks(slide) {
                    let Some(rest) = marker
                        .strip_prefix(&format!("{MARKER}{n} after"))
                        .and_then(|r| r.strip_suffix(" -->"))
                    else {
                        continue;
                    };
                    assert!(heading(slide).contains("after exit"), "{}", heading(slide));
                    let from = match rest.trim().split_once('-') {
                        Some((from, _)) => from.parse().unwrap(),
                        None => 1,
                    };
                    assert_eq!(
                        from, next,
                        "{marker}: the teardown of step {n} from line {next}"
                    );
                    next += lines.len();
                }
            }
            assert_eq!(
                next - 1,
                want,
                "step {n}: {want} lines of teardown, {} on the slides",
                next - 1
            );
        }
    }

    /// A step's slides show its own layer's lines: its first by-hand slide says
    /// where the earlier layers' come from (`lab explain N`), or how to have them
    /// all typed (`lab script N`), and a slide says so where by-hand work starts.
    #[test]
    fn the_by_hand_slides_say_where_the_earlier_layers_come_from() {
        let deck = deck();
        let all = slides(&deck);
        let first_hand = |n: u8| {
            all.iter()
                .position(|s| s.contains(&format!("{MARKER}{n} layer {n} ")))
                .unwrap_or_else(|| panic!("no by-hand slide of step {n}"))
        };
        let intro = all
            .iter()
            .position(|s| heading(s).starts_with("By hand"))
            .expect("a slide where by-hand work starts");
        assert!(intro < first_hand(1), "it comes before step 1's commands");
        for words in [
            "`lab explain N`",
            "sudo lab script N > stepN.sh; sudo bash stepN.sh",
        ] {
            assert!(all[intro].contains(words), "{words}");
        }
        for n in 1..=9u8 {
            let slide = all[first_hand(n)];
            let script = format!("`sudo lab script {n} > step{n}.sh; sudo bash step{n}.sh`");
            assert!(
                slide.contains(&script),
                "step {n}'s first by-hand slide: {script}"
            );
        }
    }

    /// Each step's live, break-it and checkpoint slide has notes of its own: what
    /// lab prints (as many checks as `lab verify N` runs, snapshots/checks-N.snap,
    /// and `lab check N` by hand, without the after-exit ones), the errors students
    /// hit, the questions they ask.
    #[test]
    fn each_live_slide_has_notes_of_its_own() {
        let deck = deck();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
        let mut seen: Vec<String> = Vec::new();
        for n in 1..=9u8 {
            let title = format!("Step {n}: live, break it, checkpoint");
            let slide = slides(&deck)
                .into_iter()
                .find(|s| heading(s) == title)
                .unwrap_or_else(|| panic!("no slide {title:?}"));
            let notes = notes(slide)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            for part in ["Expected", "Errors they hit:", "Questions:"] {
                assert!(notes.contains(part), "{title}: no {part:?}");
            }
            let snap = std::fs::read_to_string(dir.join(format!("checks-{n}.snap"))).unwrap();
            let checks: Vec<&str> = snap.lines().filter(|l| l.starts_with("layer ")).collect();
            let after = checks.iter().filter(|c| c.contains(": after exit")).count();
            let m = checks.len();
            assert!(
                notes.contains(&format!("\"{m} of {m} checks passed.")),
                "{title}: lab verify {n} runs {m} checks"
            );
            let by_hand = match after {
                0 => format!("runs the same {m}"),
                _ => format!("runs {}", m - after),
            };
            assert!(notes.contains(&by_hand), "{title}: lab check {n} {by_hand}");
            let own = notes.replace(&n.to_string(), "N");
            assert!(
                !seen.contains(&own),
                "{title}: the same notes as another step's"
            );
            seen.push(own);
        }
    }

    /// The escape arc's table, in the deck and in src/layers/escapes.rs, says what
    /// the code does: each escape closed at the step its check's `closed_at` names,
    /// and working until the step before.
    #[test]
    fn the_escape_arc_tables_say_what_the_checks_do() {
        use crate::engine::check::Kind;
        let mut closed: Vec<u8> = crate::layers::STEPS
            .iter()
            .filter_map(|s| s.layer)
            .flat_map(|l| (l.checks)(9))
            .filter_map(|c| match c.kind {
                Kind::Escape(e) => Some(e.closed_at),
                _ => None,
            })
            .collect();
        closed.sort();
        let code = include_str!("../layers/escapes.rs");
        let deck = deck();
        let arc = slides(&deck)
            .into_iter()
            .find(|s| heading(s).starts_with("The escape arc"))
            .unwrap();
        for (table, text) in [
            ("slides/deck.md", arc.to_string()),
            ("escapes.rs", code.replace("//! ", "")),
        ] {
            let mut found = Vec::new();
            for line in text.lines().filter(|l| l.starts_with("| ")) {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let works = cells[2].split(' ').next().unwrap();
                let Ok(by) = cells[3].split(':').next().unwrap().parse::<u8>() else {
                    continue;
                };
                let until: u8 = works.rsplit('-').next().unwrap().parse().unwrap();
                assert_eq!(until + 1, by, "{table}: {line}");
                found.push(by);
            }
            found.sort();
            assert_eq!(
                found, closed,
                "{table}: the escapes and the steps that close them"
            );
        }
        let row = |text: &str| {
            text.lines()
                .find(|l| l.contains("host file of root's"))
                .map(String::from)
                .unwrap()
        };
        // Root inside is user 0 of the host until step 9's user namespace: that
        // escape works from step 1 (lab tries it from step 8, whose layer lists it).
        assert!(row(arc).contains("| 1-8"), "{}", row(arc));
        assert!(row(code).contains("| 1-8"), "{}", row(code));
    }

    /// The edges of a Graphviz file: `a -> b -> c [...]` as (a, b), (b, c).
    fn edges(dot: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for statement in dot.lines().flat_map(|l| l.split(';')) {
            let statement = statement.split('[').next().unwrap_or_default();
            let nodes: Vec<String> = statement
                .split("->")
                .map(|n| n.trim().to_string())
                .collect();
            for pair in nodes.windows(2) {
                out.push((pair[0].clone(), pair[1].clone()));
            }
        }
        out
    }

    /// The diagrams the lessons and slides share draw what the kernel does:
    /// seccomp before any capability check; a published port's packet routed
    /// and forwarded to lab0, not back out of the uplink; the shared peer group
    /// that --make-rprivate cuts; both ID maps, and who owns the image before
    /// and after the shifted copy.
    #[test]
    fn the_diagrams_draw_what_the_kernel_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons/diagrams");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let has =
            |e: &[(String, String)], a: &str, b: &str| e.iter().any(|(x, y)| x == a && y == b);
        let privileges = edges(&read("08-privileges.dot"));
        assert!(
            has(&privileges, "proc", "seccomp"),
            "a system call meets seccomp first"
        );
        assert!(
            has(&privileges, "seccomp", "caps"),
            "then, allowed, its capability check"
        );
        assert!(!has(&privileges, "caps", "seccomp"), "not the other way");
        let network = edges(&read("05-network.dot"));
        for (a, b) in [
            ("uplink", "pre"),
            ("pre", "route"),
            ("route", "fwd"),
            ("fwd", "lab0"),
        ] {
            assert!(has(&network, a, b), "in to a published port: {a} -> {b}");
        }
        assert!(!has(&network, "pre", "uplink") && !has(&network, "pre", "post"));
        let mount = read("02-mount.dot");
        assert!(
            mount.contains("shared") && mount.contains("peer group"),
            "02-mount.dot"
        );
        assert!(mount.contains("mount --make-rprivate /"), "02-mount.dot");
        assert!(
            has(&edges(&mount), "h_root", "b_root"),
            "the host's / and its copy"
        );
        let userns = read("09-userns.dot");
        for words in [
            "uid_map",
            "gid_map",
            "owned by 0:0",
            "owned by 200000:200000",
        ] {
            assert!(userns.contains(words), "09-userns.dot: {words}");
        }
    }
}
