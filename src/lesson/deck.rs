//! The instructor's deck (slides/deck.md) as a plan for a real day, tested:
//! its schedule adds up (part of lesson/, beside blocks.rs, whose blocks the
//! deck takes from `lab explain`).

#[cfg(test)]
mod tests {
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
}
