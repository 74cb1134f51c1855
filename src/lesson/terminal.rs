//! A lesson in the terminal, for `lab lesson` (part of lesson/, after
//! blocks.rs): its Markdown as text with colours, the paragraphs about the
//! classroom VM's commands said of this machine.

use super::Machine;

/// A lesson (its blocks already filled with this machine's commands) for a
/// terminal: headings, indented code, no HTML comments; each paragraph after a
/// `<!-- terminal: TEXT -->` line replaced by TEXT about this machine (it names
/// the classroom VM's commands in the browser); answers folded unless `answers`.
pub fn for_terminal(text: &str, key: &str, answers: bool, machine: &Machine) -> String {
    use colored::Colorize;
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut code = false;
    while let Some(line) = lines.next() {
        // A fence may be indented, in a list item.
        if line.trim_start().starts_with("```") {
            code = !code;
            continue;
        }
        if code {
            out.push_str(&format!("    {}\n", line.cyan()));
            continue;
        }
        if let Some(instead) = line
            .strip_prefix("<!-- terminal: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            // The paragraph it stands for goes.
            while lines.next_if(|l| !l.trim().is_empty()).is_some() {}
            out.push_str(&wrap(&machine.fill(instead), 80));
            continue;
        }
        if line.starts_with("<!--") {
            continue;
        }
        // A diagram (an SVG made from lessons/diagrams/*.dot) is for the site.
        if let Some((alt, file)) = line
            .strip_prefix("![")
            .and_then(|l| l.strip_suffix(')'))
            .and_then(|l| l.split_once("]("))
        {
            out.push_str(&wrap(
                &format!("[Diagram: {alt}. In the lesson site, or lessons/{file} once built.]"),
                80,
            ));
            continue;
        }
        // A table is too wide for a terminal: a block per row instead.
        if line.starts_with('|') {
            let mut rows = vec![line];
            while let Some(l) = lines.next_if(|l| l.starts_with('|')) {
                rows.push(l);
            }
            out.push_str(&table(&rows));
            continue;
        }
        let trimmed = line.trim();
        if trimmed == "<details><summary>Answer</summary>" {
            let mut answer = Vec::new();
            for l in lines.by_ref() {
                if l.trim() == "</details>" {
                    break;
                }
                answer.push(l);
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            if answers {
                out.push_str(&format!("{indent}{}\n", "Answer:".bold()));
                let mut answer = answer.into_iter().peekable();
                while let Some(l) = answer.next() {
                    out.push_str(&paragraph(l, &mut answer));
                }
            } else {
                out.push_str(&format!(
                    "{indent}{}\n",
                    format!("(Answer folded: think first, then lab quiz {key}, or lab lesson {key} --answers)")
                        .italic()
                ));
            }
            continue;
        }
        if let Some((h, rule)) = line
            .strip_prefix("# ")
            .map(|h| (h, '='))
            .or_else(|| line.strip_prefix("## ").map(|h| (h, '-')))
        {
            let shown = inline(h);
            let rule = rule.to_string().repeat(visible_width(&shown));
            out.push_str(&format!("{}\n{rule}\n", shown.bold()));
        } else {
            out.push_str(&paragraph(line, &mut lines));
        }
    }
    out
}

/// A Markdown table as a block per row: the row's first cell, then each other
/// cell under its column's heading, wrapped to 80 columns.
fn table(rows: &[&str]) -> String {
    let cells = |row: &str| -> Vec<String> {
        row.trim()
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    let Some((head, body)) = rows.split_first() else {
        return String::new();
    };
    let head = cells(head);
    let mut out = String::new();
    for row in body.iter().filter(|r| !r.starts_with("|---")) {
        let row = cells(row);
        out.push_str(&format!("{}\n", inline(&row[0])));
        for (name, cell) in head.iter().zip(&row).skip(1) {
            for (i, l) in words_in_lines(&format!("{name}: {cell}"), 74)
                .iter()
                .enumerate()
            {
                let indent = if i == 0 { "  " } else { "      " };
                out.push_str(&format!("{indent}{}\n", inline(l)));
            }
        }
    }
    out + "\n"
}

/// The paragraph (or list item) that starts with `first` and goes on with the
/// lines after it, for a terminal. Its lines stay as they are, unless a code
/// span goes on from one line to the next (a line break in it is a space, as in
/// CommonMark): then the paragraph is wrapped again, each code span whole on a
/// line of its own. Bold that goes on to the next line is closed at the end of
/// the one and opened again on the next.
fn paragraph<'a>(
    first: &'a str,
    rest: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> String {
    let mut block = vec![first];
    if !first.trim().is_empty() {
        while let Some(l) = rest.next_if(|l| goes_on(l)) {
            block.push(l);
        }
    }
    let lines: Vec<String> = if block.len() > 1 && code_span_across_lines(&block.join("\n")) {
        let indent = |l: &str| l[..l.len() - l.trim_start().len()].to_string();
        let (first_indent, next_indent) = (indent(block[0]), indent(block[1]));
        let text: Vec<&str> = block.iter().map(|l| l.trim()).collect();
        words_in_lines(&text.join(" "), 80usize.saturating_sub(next_indent.len()))
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let indent = if i == 0 { &first_indent } else { &next_indent };
                format!("{indent}{l}")
            })
            .collect()
    } else {
        block.iter().map(|l| l.to_string()).collect()
    };
    styled_lines(lines)
}

/// Whether `line` goes on the paragraph above it: not empty, nor a new list
/// item, a heading, a fence, a table's row, a diagram or HTML.
fn goes_on(line: &str) -> bool {
    let t = line.trim_start();
    let numbered = t
        .split_once(". ")
        .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    !t.is_empty()
        && !numbered
        && !["- ", "* ", "#", "```", "|", "![", "<"]
            .iter()
            .any(|p| t.starts_with(p))
}

/// Whether a code span of `text` holds one of its line breaks.
fn code_span_across_lines(text: &str) -> bool {
    let mut code = false;
    for c in text.chars() {
        match c {
            '`' => code = !code,
            '\n' if code => return true,
            _ => {}
        }
    }
    false
}

/// Whether `line` ends inside bold (`**`), code spans aside.
fn bold_left_open(line: &str) -> bool {
    let (mut code, mut bold) = (false, false);
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            code = !code;
        } else if !code && rest.starts_with("**") {
            bold = !bold;
            rest = &rest[2..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
    }
    bold
}

/// Lines of Markdown with their `code` and **bold** for a terminal, bold that
/// goes on to the next line closed and opened again there.
fn styled_lines(lines: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    let mut bold = false;
    for line in lines {
        let mut line = if bold {
            let at = line.len() - line.trim_start().len();
            format!("{}**{}", &line[..at], &line[at..])
        } else {
            line
        };
        bold = bold_left_open(&line);
        if bold {
            line.push_str("**");
        }
        out.push_str(&inline(&line));
        out.push('\n');
    }
    out
}

/// How many columns `text` takes on a terminal: its characters without the
/// escape sequences of colours.
fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            width += 1;
        }
    }
    width
}

/// `code` and **bold** of a line of Markdown, for a terminal: with colours the
/// marks go; without, the backticks stay (they say where a command starts).
fn inline(line: &str) -> String {
    use colored::Colorize;
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(['`', '*']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (mark, styled): (&str, fn(&str) -> String) = if tail.starts_with("**") {
            ("**", |s| inline(s).bold().to_string())
        } else if tail.starts_with('`') {
            ("`", |s| {
                if colored::control::SHOULD_COLORIZE.should_colorize() {
                    s.cyan().to_string()
                } else {
                    format!("`{s}`")
                }
            })
        } else {
            out.push('*');
            rest = &tail[1..];
            continue;
        };
        match tail[mark.len()..].find(mark) {
            Some(end) => {
                out.push_str(&styled(&tail[mark.len()..mark.len() + end]));
                rest = &tail[mark.len() + end + mark.len()..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` in lines of at most `width` columns (words are not broken, nor code
/// spans).
pub fn wrap(text: &str, width: usize) -> String {
    styled_lines(words_in_lines(text, width))
}

/// The words of `text` in lines of at most `width` characters (a longer word
/// alone on its line). A code span (`lab explain 5`) counts as one word.
pub fn words_in_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in words(text) {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The words of `text`, each code span one word with its spaces (a backtick
/// that nothing closes is a character of its word).
fn words(text: &str) -> Vec<String> {
    let odd = |w: &str| w.matches('`').count() % 2 == 1;
    let mut out: Vec<String> = Vec::new();
    let mut open: Option<String> = None;
    for word in text.split_whitespace() {
        match open.take() {
            Some(mut span) => {
                span.push(' ');
                span.push_str(word);
                if odd(word) {
                    out.push(span);
                } else {
                    open = Some(span);
                }
            }
            None if odd(word) => open = Some(word.to_string()),
            None => out.push(word.to_string()),
        }
    }
    if let Some(span) = open {
        out.extend(span.split(' ').map(String::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::classroom_explain;
    use super::super::{fill, find, LESSONS};
    use super::*;

    #[test]
    fn a_table_is_a_block_per_row_in_a_terminal() {
        colored::control::set_override(false);
        let shown = table(&[
            "| Layer | Docker · `docker run` | lab |",
            "|---|---|---|",
            "| 1 a root | yes: its own | yes: its own |",
        ]);
        assert_eq!(
            shown,
            "1 a root\n  Docker · `docker run`: yes: its own\n  lab: yes: its own\n\n"
        );
        assert!(!shown.contains('|'));
    }

    /// The marks of Markdown left in `text` as a terminal without colours shows
    /// it (its code blocks aside: `code` lists their lines): a code span's
    /// backticks stay there, in pairs on one line; anything else is a stray mark.
    fn stray_marks(text: &str, code: &[String]) -> Vec<String> {
        text.lines()
            .filter(|l| !code.iter().any(|c| l.strip_prefix("    ") == Some(c)))
            .filter(|l| {
                let spans_out: String = l.split('`').step_by(2).collect();
                l.matches('`').count() % 2 == 1 || spans_out.contains("**")
            })
            .map(String::from)
            .collect()
    }

    /// A code span that the Markdown source breaks across two lines (a line
    /// break in it is a space) is shown whole, on one line; bold across lines
    /// loses its marks on both.
    #[test]
    fn a_code_span_across_a_line_break_is_shown_whole() {
        colored::control::set_override(false);
        let machine = Machine::from_explain("");
        let text = "# T\n\n\
            - bwrap always runs its command in a mount namespace of its own; `--dev-bind /\n  \
            /` makes it a copy of the container's (with `--bind` it would be mounted\n  \
            `nodev`, and not even `/dev/null` could be opened).\n\n\
            A container is **a process with a restricted view of the machine and limited\n\
            resources**. Look for a `struct container`.\n";
        let shown = for_terminal(text, "t", false, &machine);
        assert_eq!(
            shown,
            "T\n=\n\n\
             - bwrap always runs its command in a mount namespace of its own;\n  \
             `--dev-bind / /` makes it a copy of the container's (with `--bind` it would be\n  \
             mounted `nodev`, and not even `/dev/null` could be opened).\n\n\
             A container is a process with a restricted view of the machine and limited\n\
             resources. Look for a `struct container`.\n"
        );
        assert!(stray_marks(&shown, &[]).is_empty(), "{shown}");
        // Wrapped text (a paragraph about this machine) keeps a span whole too.
        let wrapped = wrap("aaaa `lab explain 5` b", 10);
        assert_eq!(wrapped, "aaaa\n`lab explain 5`\nb\n");
        // A paragraph whose spans each end on their line is left as it is.
        let kept = for_terminal("a `b`\nc `d` e\n", "t", false, &machine);
        assert_eq!(kept, "a `b`\nc `d` e\n");
    }

    /// Every lesson, its answers shown, comes out in the terminal with no mark
    /// of Markdown left outside its code blocks: no backtick but a code span's,
    /// whole on its line, no `**`, no fence.
    #[test]
    fn every_lesson_in_the_terminal_has_no_stray_mark() {
        colored::control::set_override(false);
        let classroom = Machine::from_explain(&classroom_explain(9, None));
        let other = Machine {
            cgroup: "cgroup v1".into(),
            uplink: "none: no default route".into(),
            resolv: "/run/systemd/resolve/resolv.conf".into(),
        };
        for lesson in LESSONS {
            let text = fill(lesson.text, classroom_explain);
            let mut code = Vec::new();
            let mut inside = false;
            for line in text.lines() {
                if line.trim_start().starts_with("```") {
                    inside = !inside;
                } else if inside {
                    code.push(line.to_string());
                }
            }
            for machine in [&classroom, &other] {
                for answers in [false, true] {
                    let shown = for_terminal(&text, lesson.key, answers, machine);
                    let stray = stray_marks(&shown, &code);
                    assert!(stray.is_empty(), "lessons/{}: {stray:#?}", lesson.file);
                    assert!(!shown.contains("```"), "lessons/{}", lesson.file);
                }
            }
        }
    }

    /// In the terminal: no marker or fence, answers folded (or shown), and the
    /// sentences about the classroom VM's commands say this machine's.
    #[test]
    fn a_lesson_for_the_terminal_speaks_of_this_machine() {
        colored::control::set_override(false);
        let v1 = |n: u8, only: Option<u8>| {
            classroom_explain(n, only)
                .replace(
                    "cgroup v2 found here: /sys/fs/cgroup is a cgroup2 filesystem",
                    "cgroup v1 found here: memory, cpu and pids each have a cgroup filesystem",
                )
                .replace("-o eth0 -j", "-o up0 -j")
                .replace("/run/systemd/resolve/resolv.conf >", "/etc/resolv.conf >")
        };
        let machine = Machine::from_explain(&v1(9, None));
        assert_eq!(machine.cgroup, "cgroup v1");
        assert_eq!(machine.uplink, "up0");
        assert_eq!(machine.resolv, "/etc/resolv.conf");
        let six = for_terminal(&fill(find("6").unwrap().text, v1), "6", false, &machine);
        assert!(six.contains("for this machine's cgroup v1"), "{six}");
        assert!(!six.contains("as in the classroom VM"), "{six}");
        let five = for_terminal(&fill(find("5").unwrap().text, v1), "5", false, &machine);
        assert!(five.contains("uplink interface (up0"), "{five}");
        assert!(!five.contains("eth0` above"), "{five}");
        assert!(five.contains("[Diagram: The path of a packet:"), "{five}");
        for text in [&six, &five] {
            assert!(
                !text.contains("<!--") && !text.contains("```") && !text.contains("!["),
                "{text}"
            );
            assert!(!text.contains("<details>"), "{text}");
        }
        assert!(five
            .contains("(Answer folded: think first, then lab quiz 5, or lab lesson 5 --answers)"));
        let answered = for_terminal(&fill(find("5").unwrap().text, v1), "5", true, &machine);
        assert!(answered.contains("Answer:") && !answered.contains("Answer folded"));
        assert!(
            answered.contains("MASQUERADE rewrites the source"),
            "{answered}"
        );
    }
}
