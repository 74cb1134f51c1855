//! The blocks of commands in the lessons and slides, filled in from what `lab
//! explain` prints (part of lesson/, after mod.rs).
//!
//! A block follows a marker line: `<!-- lab explain N -->` (all of it),
//! `<!-- lab explain N --only L -->`, and for the slides the bare command lines
//! of one layer: `<!-- lab explain N layer L -->`, or only those typed in one
//! terminal: `... layer L host -->` (the first terminal, before the container
//! exists), `... layer L second -->` (a second terminal on the host, once it
//! runs), `... layer L inside -->` (the container's shell); `<!-- lab explain N
//! run -->` (the line that runs the command), `<!-- lab explain N grade -->`.

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
            Block::Typed(n, l, t, (from, to)) => terminal_commands(&explain(n, None), l, t)
                .lines()
                .skip(from - 1)
                .take(to + 1 - from)
                .map(|l| format!("{l}\n"))
                .collect(),
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
}

fn marker(line: &str) -> Option<Block> {
    let inner = line.strip_prefix(MARKER)?.strip_suffix(" -->")?;
    if let Some(n) = inner.strip_suffix(" run") {
        return Some(Block::Run(n.parse().ok()?));
    }
    if let Some(n) = inner.strip_suffix(" grade") {
        return Some(Block::Grade(n.parse().ok()?));
    }
    if let Some((n, l)) = inner.split_once(" --only ") {
        return Some(Block::Only(n.parse().ok()?, l.parse().ok()?));
    }
    match inner.split_once(" layer ") {
        Some((n, l)) => match l.split_once(' ') {
            Some((l, t)) => {
                let (t, range) = t.split_once(' ').unwrap_or((t, "1-"));
                let (from, to) = range.split_once('-')?;
                let from: usize = from.parse().ok().filter(|f| *f >= 1)?;
                let to: usize = match to {
                    "" => usize::MAX - 1,
                    to => to.parse().ok().filter(|t| *t >= from)?,
                };
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
/// The note of the first terminal's shell comes first on the host when the
/// second terminal's lines read it.
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
    let second = match which {
        Terminal::Host => terminal_commands(explain, layer, Terminal::Second),
        _ => String::new(),
    };
    match second.contains("/shell)") {
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

/// The command line of the "Grade it" section of `lab explain`.
pub fn grade_line(explain: &str) -> String {
    let mut lines = explain.lines().skip_while(|l| *l != "Grade it").skip(1);
    lines
        .next()
        .map(|l| format!("{}\n", l.trim()))
        .unwrap_or_default()
}
