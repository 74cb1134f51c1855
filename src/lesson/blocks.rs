//! The blocks of commands in the lessons and slides, filled in from what `lab
//! explain` prints (part of lesson/, after mod.rs).
//!
//! A block follows a marker line: `<!-- lab explain N -->` (all of it),
//! `<!-- lab explain N --only L -->`, and for the slides the bare command lines
//! of one layer: `<!-- lab explain N layer L -->`, or only those typed in one
//! terminal: `... layer L host -->` (the first terminal, before the container
//! exists), `... layer L second -->` (a second terminal on the host, once it
//! runs), `... layer L inside -->` (the container's shell); `<!-- lab explain N
//! run -->` (the line that runs the command), `<!-- lab explain N grade -->`;
//! `<!-- lab explain N after [A-B] -->` (the teardown: what is typed in the first
//! terminal after the container's shell exits, every layer's, or lines A to B).

pub(super) const MARKER: &str = "<!-- lab explain ";

/// The text with the block after each `<!-- lab explain N -->` line replaced by
/// `explain(N, None)`, after each `<!-- lab explain N --only L -->` by
/// `explain(N, Some(L))` (what `lab explain N --only L` prints), and after each
/// `<!-- lab explain N layer L -->` by the command lines of layer L in it.
pub fn fill(text: &str, explain: impl Fn(u8, Option<u8>) -> String) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        let Some(block) = marker(line) else {
            continue;
        };
        // The fence that opens the block, then everything up to the one that closes it.
        if let Some(open) = lines.next() {
            out.push_str(open);
            out.push('\n');
        }
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
        }
        let text = match block {
            Block::Full(n) => explain(n, None),
            Block::Only(n, l) => explain(n, Some(l)),
            Block::Layer(n, l) => layer_commands(&explain(n, None), l),
            Block::Typed(n, l, t, range) => {
                lines_in(&terminal_commands(&explain(n, None), l, t), range)
            }
            Block::After(n, range) => lines_in(&after_exit(&explain(n, None)), range),
            Block::Run(n) => run_line(&explain(n, None)),
            Block::Grade(n) => grade_line(&explain(n, None)),
        };
        out.push_str(text.trim_end());
        out.push_str("\n```\n");
    }
    out
}

/// What a marker line asks for.
#[derive(Debug, PartialEq)]
enum Block {
    /// `<!-- lab explain N -->`
    Full(u8),
    /// `<!-- lab explain N --only L -->`
    Only(u8, u8),
    /// `<!-- lab explain N layer L -->`: the bare command lines (slides).
    Layer(u8, u8),
    /// `<!-- lab explain N layer L host|second|inside [A-B] -->`: those typed in
    /// one terminal, or lines A to B of them (from 1; `A-` to the last), so that
    /// a slide holds what can be read from the back of a room.
    Typed(u8, u8, Terminal, (usize, usize)),
    /// `<!-- lab explain N run -->`: the bare line that runs the command (slides).
    Run(u8),
    /// `<!-- lab explain N grade -->`: the bare line that grades it (lessons).
    Grade(u8),
    /// `<!-- lab explain N after [A-B] -->`: the teardown, typed in the first
    /// terminal after the container's shell exits (slides), or lines A to B of it.
    After(u8, (usize, usize)),
}

/// Lines `from` to `to` of `text` (from 1).
fn lines_in(text: &str, (from, to): (usize, usize)) -> String {
    text.lines()
        .skip(from - 1)
        .take(to + 1 - from)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `A-B` (from 1), `A-` (to the last line).
fn range(text: &str) -> Option<(usize, usize)> {
    let (from, to) = text.split_once('-')?;
    let from: usize = from.parse().ok().filter(|f| *f >= 1)?;
    let to: usize = match to {
        "" => usize::MAX - 1,
        to => to.parse().ok().filter(|t| *t >= from)?,
    };
    Some((from, to))
}

fn marker(line: &str) -> Option<Block> {
    let inner = line.strip_prefix(MARKER)?.strip_suffix(" -->")?;
    if let Some(n) = inner.strip_suffix(" run") {
        return Some(Block::Run(n.parse().ok()?));
    }
    if let Some(n) = inner.strip_suffix(" grade") {
        return Some(Block::Grade(n.parse().ok()?));
    }
    if let Some((n, rest)) = inner.split_once(" after") {
        let lines = match rest.strip_prefix(' ') {
            Some(r) => range(r)?,
            None if rest.is_empty() => (1, usize::MAX - 1),
            None => return None,
        };
        return Some(Block::After(n.parse().ok()?, lines));
    }
    if let Some((n, l)) = inner.split_once(" --only ") {
        return Some(Block::Only(n.parse().ok()?, l.parse().ok()?));
    }
    match inner.split_once(" layer ") {
        Some((n, l)) => match l.split_once(' ') {
            Some((l, t)) => {
                let (t, lines) = t.split_once(' ').unwrap_or((t, "1-"));
                let (from, to) = range(lines)?;
                let t = match t {
                    "host" => Terminal::Host,
                    "second" => Terminal::Second,
                    "inside" => Terminal::Inside,
                    _ => return None,
                };
                Some(Block::Typed(
                    n.parse().ok()?,
                    l.parse().ok()?,
                    t,
                    (from, to),
                ))
            }
            None => Some(Block::Layer(n.parse().ok()?, l.parse().ok()?)),
        },
        None => Some(Block::Full(inner.parse().ok()?)),
    }
}

/// Where a line of `lab explain` is typed, by hand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Terminal {
    /// The first terminal, on the host, before the container exists (its last
    /// line, unshare, turns it into the container's shell).
    Host,
    /// A second terminal on the host, once the container runs: what needs its
    /// PID.
    Second,
    /// The container's shell: what follows unshare in the first terminal.
    Inside,
}

/// One command line of `lab explain`, before the line that runs the command.
struct Line<'a> {
    cmd: &'a str,
    /// In a section of the layer asked for (or the unshare line that makes one
    /// of its namespaces).
    ours: bool,
    /// In "This terminal": the note of the first terminal's shell.
    note: bool,
    /// Where it is typed.
    terminal: Terminal,
}

/// The command lines of `explain` up to "Run", without comments, each with its
/// section: `lab explain` names the sections typed in a second terminal; after
/// the unshare line, every other section is typed inside.
fn lines(explain: &str, layer: u8) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let (mut ours, mut note, mut unshared) = (false, false, false);
    let mut terminal = Terminal::Host;
    for line in explain.lines() {
        if line == "Run" {
            break;
        }
        if !line.starts_with(' ') && !line.is_empty() {
            let head = line.split(" · ").next().unwrap_or_default();
            ours = head
                .strip_prefix("Layers ")
                .or_else(|| head.strip_prefix("Layer "))
                .is_some_and(|list| list.split(", ").any(|n| n == layer.to_string()));
            note = line == "This terminal";
            terminal = match (unshared, line.ends_with(super::SECOND_TERMINAL)) {
                (_, true) => Terminal::Second,
                (true, false) => Terminal::Inside,
                (false, false) => Terminal::Host,
            };
            // The unshare line is typed on the host; what follows it, inside.
            unshared = unshared || line.ends_with(" · new namespaces");
            continue;
        }
        let Some(cmd) = line.strip_prefix("  ") else {
            continue;
        };
        if cmd.starts_with(' ') || cmd.starts_with('(') || cmd.starts_with("Note:") {
            continue;
        }
        out.push(Line {
            cmd,
            ours,
            note,
            terminal,
        });
    }
    out
}

/// `lines`, one per line of text.
fn joined<'a>(lines: impl Iterator<Item = &'a Line<'a>>) -> String {
    lines.map(|l| format!("{}\n", l.cmd)).collect()
}

/// The command lines of layer `layer` typed in terminal `which`, in the output
/// of `lab explain`, up to the line that runs the command, without comments.
/// On the host, the note of the first terminal's shell comes first: the line
/// that grades the container (`lab check N --pid ...`) and the second terminal
/// find it by that note, so whoever types a host block from its top starts the
/// container where they look for it.
pub fn terminal_commands(explain: &str, layer: u8, which: Terminal) -> String {
    let all = lines(explain, layer);
    let mut out = joined(
        all.iter()
            .filter(|l| l.ours && !l.note && l.terminal == which),
    );
    // Lines that use the container's PID, of a layer whose section does not
    // find it, take the line that does from the section that has it.
    if which == Terminal::Second && out.contains("$PID") && !out.contains("PID=$(") {
        if let Some(find) = all.iter().find(|l| l.cmd.starts_with("PID=$(")) {
            out = format!("{}\n{out}", find.cmd);
        }
    }
    match which == Terminal::Host && !out.is_empty() {
        true => {
            joined(
                all.iter()
                    .filter(|l| l.note && l.terminal == Terminal::Host),
            ) + &out
        }
        false => out,
    }
}

/// The command lines that build layer `layer`, in the output of `lab explain`:
/// those of its own sections ("Layer 3 · ...") and the unshare line when it makes
/// one of the layer's namespaces ("Layers 2, 3 · new namespaces"), up to the line
/// that runs the command (the teardown is left to the lesson), without comments.
/// When they use the note of the terminal's shell (the PID line), the line of
/// "This terminal" that writes it comes first.
pub fn layer_commands(explain: &str, layer: u8) -> String {
    let all = lines(explain, layer);
    let out = joined(all.iter().filter(|l| l.ours));
    match out.contains("/shell)") {
        true => joined(all.iter().filter(|l| l.note && !l.ours)) + &out,
        false => out,
    }
}

/// The command lines of the "Run" section of `lab explain`, without comments.
pub fn run_line(explain: &str) -> String {
    let mut out = String::new();
    let mut ours = false;
    for line in explain.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            ours = line == "Run";
            continue;
        }
        if let Some(cmd) = line.strip_prefix("  ").filter(|c| !c.starts_with(' ')) {
            if ours {
                out.push_str(cmd);
                out.push('\n');
            }
        }
    }
    out
}

/// The teardown of `lab explain`: the command lines of every section typed in
/// the first terminal after the container's shell exits ("Layer 5 · ... · this
/// terminal, after exit", then "This terminal, after exit"), in order, without
/// comments.
pub fn after_exit(explain: &str) -> String {
    let mut out = String::new();
    let mut ours = false;
    for line in explain.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            ours = line.ends_with("after exit");
            continue;
        }
        let Some(cmd) = line.strip_prefix("  ") else {
            continue;
        };
        if ours && !cmd.starts_with(' ') && !cmd.starts_with('(') && !cmd.starts_with("Note:") {
            out.push_str(cmd);
            out.push('\n');
        }
    }
    out
}

/// The command line of the "Grade it" section of `lab explain`.
pub fn grade_line(explain: &str) -> String {
    let mut lines = explain.lines().skip_while(|l| *l != "Grade it").skip(1);
    lines
        .next()
        .map(|l| format!("{}\n", l.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lesson::tests::classroom_explain;

    #[test]
    fn markers_say_which_block() {
        assert_eq!(
            marker("<!-- lab explain 5 after -->"),
            Some(Block::After(5, (1, usize::MAX - 1)))
        );
        assert_eq!(
            marker("<!-- lab explain 6 after 15- -->"),
            Some(Block::After(6, (15, usize::MAX - 1)))
        );
        assert_eq!(
            marker("<!-- lab explain 7 after 1-14 -->"),
            Some(Block::After(7, (1, 14)))
        );
        assert_eq!(marker("<!-- lab explain 7 after 0-3 -->"), None);
        assert_eq!(marker("<!-- lab explain 7 afterwards -->"), None);
        assert_eq!(
            marker("<!-- lab explain 2 layer 2 inside 12- -->"),
            Some(Block::Typed(2, 2, Terminal::Inside, (12, usize::MAX - 1)))
        );
        assert_eq!(marker("<!-- lab explain 4 run -->"), Some(Block::Run(4)));
    }

    /// The teardown: every "after exit" section of `lab explain`, in order, the
    /// note of the first terminal's shell last; nothing of what builds the
    /// container, nor the grading line.
    #[test]
    fn the_teardown_is_what_follows_exit() {
        assert_eq!(
            after_exit(&classroom_explain(1, None)),
            "rm -f /run/lab/hand/c1/shell && rmdir /run/lab/hand/c1\n"
        );
        let five = after_exit(&classroom_explain(5, None));
        let lines: Vec<&str> = five.lines().collect();
        assert!(
            lines[0].starts_with("for i in $(seq 100); do ip link show lab-veth2"),
            "{five}"
        );
        assert!(lines.contains(&"iptables -X LAB-FORWARD"), "{five}");
        assert!(
            lines.contains(&"iptables -t nat -X LAB-POSTROUTING"),
            "{five}"
        );
        assert!(lines.contains(&"ip link del lab0"), "{five}");
        assert_eq!(
            lines.last(),
            Some(&"rm -f /run/lab/hand/c1/shell && rmdir /run/lab/hand/c1")
        );
        assert!(
            !five.contains("iptables -N") && !five.contains("lab check"),
            "{five}"
        );
        // Each step's teardown is the one before's, with its own layer's lines
        // before the last: the network's first, then the cgroup's, the overlay's.
        let six = after_exit(&classroom_explain(6, None));
        let seven = after_exit(&classroom_explain(7, None));
        fn head(t: &str, n: usize) -> Vec<&str> {
            t.lines().take(n).collect()
        }
        let net = lines.len() - 1;
        assert_eq!(head(&six, net), head(&five, net));
        assert_eq!(
            head(&seven, six.lines().count() - 1),
            head(&six, six.lines().count() - 1)
        );
        assert!(
            six.contains("rmdir /sys/fs/cgroup/lab/c1\nrmdir /sys/fs/cgroup/lab\n"),
            "{six}"
        );
        assert!(
            seven.contains("umount /var/lib/lab/hand/c1/merged\nrm -rf /var/lib/lab/hand/c1\n"),
            "{seven}"
        );
    }

    #[test]
    fn an_after_block_is_filled_with_the_teardown() {
        let text = "a\n<!-- lab explain 6 after 15- -->\n```sh\nold\n```\nb\n";
        let filled = fill(text, classroom_explain);
        assert_eq!(
            filled,
            "a\n<!-- lab explain 6 after 15- -->\n```sh\nrmdir /sys/fs/cgroup/lab/c1\nrmdir /sys/fs/cgroup/lab\n\
             rm -f /run/lab/hand/c1/shell && rmdir /run/lab/hand/c1\n```\nb\n"
        );
    }

    /// Every host block starts with the note of the first terminal's shell,
    /// which `lab check N --pid "$(pgrep -n -P "$(cat .../shell)")"` reads: a
    /// container started from a slide's lines is found as typed.
    #[test]
    fn a_host_block_starts_with_the_shells_note() {
        let note = "mkdir -p /run/lab/hand/c1 && echo $$ > /run/lab/hand/c1/shell\n";
        for n in 1..=9 {
            let host = terminal_commands(&classroom_explain(n, None), n, Terminal::Host);
            assert!(host.starts_with(note), "step {n}:\n{host}");
            assert_eq!(host.matches(note).count(), 1, "step {n}:\n{host}");
        }
        // Nothing typed on the host for a layer: no block, and no note alone.
        let inside = classroom_explain(4, None);
        assert_eq!(terminal_commands(&inside, 1, Terminal::Host), "");
    }
}
