//! Turning a plan into text: `lab explain`, `lab script`, the lines `lab step`
//! prints as it applies each command, and the check reports (text or JSON).
//!
//! All of them walk the same [`Plan::sequence`], so a command reads the same
//! wherever it is printed.

use crate::engine::check::{Outcome, Report};
use crate::engine::layer::Layer;
use crate::engine::plan::{join_quoted, shell_note, Command, FindPid, Phase, Plan, Unshare};
use colored::Colorize;
use std::fmt::Write;

pub use crate::output::{err, out};

/// One printable piece of a plan, in the order a person would type it.
pub enum Item<'a> {
    /// A remark of a layer.
    Note(&'static Layer, &'static str),
    /// The line that enters the new namespaces.
    Unshare(Unshare),
    Command(&'a Command),
}

impl Plan {
    /// Notes of layers without commands; host commands; `unshare`; the host
    /// commands that need its PID; the commands inside, each layer followed by its
    /// note; the last line, that runs the command; the teardown.
    pub fn sequence(&self) -> Vec<Item<'_>> {
        let step = self.spec.step;
        let mut items = Vec::new();
        for layer in &self.layers {
            if !self.commands.iter().any(|c| c.layer == layer.number) {
                if let Some(note) = (layer.note)(step) {
                    items.push(Item::Note(layer, note));
                }
            }
        }
        items.extend(self.commands_in(Phase::Host).map(Item::Command));
        if let Some(unshare) = self.unshare() {
            items.push(Item::Unshare(unshare));
        }
        // Typed at the start of the unshare line (Unshare::shell); listed here
        // for lab, which does them from the host once the process exists.
        items.extend(self.commands_in(Phase::Join).map(Item::Command));
        items.extend(self.commands_in(Phase::Connect).map(Item::Command));
        let inside: Vec<&Command> = self
            .commands
            .iter()
            .filter(|c| {
                matches!(
                    c.phase,
                    Phase::Wait
                        | Phase::Enter
                        | Phase::Root
                        | Phase::ChangeRoot
                        | Phase::FromOldRoot
                        | Phase::Inside
                )
            })
            .collect();
        for (i, c) in inside.iter().enumerate() {
            items.push(Item::Command(c));
            let last_of_layer = inside.get(i + 1).map_or(true, |n| n.layer != c.layer);
            if last_of_layer {
                let layer = self.layers.iter().find(|l| l.number == c.layer);
                if let Some((layer, note)) = layer.and_then(|l| Some((*l, (l.note)(step)?))) {
                    items.push(Item::Note(layer, note));
                }
            }
        }
        items.extend(self.commands_in(Phase::Run).map(Item::Command));
        items.extend(self.commands_in(Phase::Teardown).map(Item::Command));
        items
    }

    pub fn layer(&self, number: u8) -> Option<&'static Layer> {
        self.layers.iter().find(|l| l.number == number).copied()
    }
}

/// The section a command is printed in: its layer's, "Run" for the line that
/// runs the command, "This terminal" for the lines of no layer (the note of the
/// shell that starts the container).
fn section(plan: &Plan, c: &Command) -> String {
    match (plan.layer(c.layer), c.phase) {
        (_, Phase::Run) => "Run".into(),
        // Typed elsewhere: a section of its own, which says where.
        (Some(layer), Phase::Connect) => format!("{} · {SECOND_TERMINAL}", layer_title(layer)),
        // The teardown is typed where the container ran, once it has exited:
        // some lines read what that terminal noted (step 5's IP_FORWARD_WAS).
        (Some(layer), Phase::Teardown) => {
            format!("{} · this terminal, after exit", layer_title(layer))
        }
        (Some(layer), _) => layer_title(layer),
        (None, Phase::Teardown) => "This terminal, after exit".into(),
        (None, _) => "This terminal".into(),
    }
}

/// How a section typed in a second terminal says so (the lessons' blocks find
/// those sections by it).
pub use crate::lesson::SECOND_TERMINAL;

/// Prints section headers only when the section changes.
#[derive(Clone, Default)]
pub struct Printer {
    section: Option<String>,
}

impl Printer {
    pub fn item(&mut self, plan: &Plan, item: &Item) -> String {
        let mut out = String::new();
        match item {
            Item::Note(layer, note) => {
                self.header(&mut out, &layer_title(layer), Some(layer.idea));
                let _ = writeln!(out, "  {} {}", "Note:".italic(), note.italic());
            }
            Item::Unshare(u) => {
                self.header(&mut out, &u.title(), None);
                command_lines(&mut out, &u.shell(), &u.why());
            }
            // Printed within the unshare line.
            Item::Command(c) if c.phase == Phase::Join => {}
            Item::Command(c) => {
                let idea = plan.layer(c.layer).filter(|_| c.phase != Phase::Run);
                self.header(&mut out, &section(plan, c), idea.map(|l| l.idea));
                command_lines(&mut out, &c.action.shell(), &c.why);
            }
        }
        out
    }

    fn header(&mut self, out: &mut String, title: &str, idea: Option<&str>) {
        if self.section.as_deref() != Some(title) {
            let _ = writeln!(out, "\n{}", title.bold());
            if let Some(idea) = idea {
                let _ = writeln!(out, "  {}", format!("({idea})").italic());
            }
            self.section = Some(title.to_string());
        }
    }
}

pub(super) fn layer_title(layer: &Layer) -> String {
    format!("Layer {} · {}", layer.number, layer.title)
}

/// A title, then one command with what it does, as `lab step` prints them.
pub fn command_block(title: &str, shell: &str, why: &str) -> String {
    let mut out = format!("\n{}\n", title.bold());
    command_lines(&mut out, shell, why);
    out
}

fn command_lines(out: &mut String, shell: &str, why: &str) {
    let _ = writeln!(out, "  {}", shell.cyan());
    let _ = writeln!(out, "    {}", format!("# {why}").dimmed());
}

pub fn step_title(plan: &Plan) -> String {
    let title = crate::engine::curriculum::step(plan.spec.step).map_or("", |s| s.title);
    format!("Step {} · {}", plan.spec.step, title)
}

/// "Layers 5, 6 are not built yet: ..." when the step runs without some layers.
pub fn missing(plan: &Plan) -> Option<String> {
    let missing: Vec<String> = crate::engine::curriculum::missing_before(plan.spec.step)
        .iter()
        .map(u8::to_string)
        .collect();
    (!missing.is_empty()).then(|| {
        let s = if missing.len() == 1 { "" } else { "s" };
        format!(
            "Layer{s} {} not built yet: this step runs without them.",
            missing.join(", ")
        )
    })
}

/// Without root: one line per layer left out of the step, with why.
pub fn left_out(step: u8) -> Vec<String> {
    crate::engine::curriculum::left_out(step)
        .into_iter()
        .map(|(l, why)| {
            format!(
                "Without root, layer {} ({}) is left out: {why}.",
                l.number, l.title
            )
        })
        .collect()
}

/// `lab explain N`; with `only`, just the commands of that layer (and the line
/// that runs the command), for a lesson that has shown the layers before it.
pub fn explain(plan: &Plan, only: Option<u8>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", step_title(plan).bold());
    let step = plan.spec.step;
    let _ = match only {
        Some(l) => writeln!(
            out,
            "Layer {l} by hand: its commands, in the places they go among those of {} (lab explain {step} shows them all).",
            match step - 1 {
                1 => "layer 1".to_string(),
                before => format!("layers 1-{before}"),
            }
        ),
        None => writeln!(
            out,
            "{} by hand: type these commands as root, in this order.",
            match step {
                1 => "Layer 1".to_string(),
                n => format!("Layers 1-{n}"),
            }
        ),
    };
    if let Some(missing) = missing(plan) {
        let _ = writeln!(out, "{missing}");
    }
    for line in left_out(step) {
        let _ = writeln!(out, "{line}");
    }
    let mut printer = Printer::default();
    // With `--only L`, the line that finds the PID, when an earlier layer's
    // section has it, comes first in L's section in the second terminal.
    let mut find_pid = only.and_then(|l| find_pid_again(plan, l));
    for item in plan.sequence() {
        let shown = match (&item, only) {
            (_, None) => true,
            (Item::Note(layer, _), Some(l)) => layer.number == l,
            (Item::Unshare(u), Some(l)) => u.namespaces.iter().any(|(n, _)| *n == l),
            (Item::Command(c), Some(l)) => c.layer == l || c.layer == 0,
        };
        if let Item::Command(c) = &item {
            if shown && c.phase == Phase::Connect {
                if let Some(find) = find_pid.take() {
                    out.push_str(&printer.item(plan, &Item::Command(&find)));
                }
            }
        }
        if shown {
            out.push_str(&printer.item(plan, &item));
        }
    }
    let (command, why) = grade(plan);
    let _ = writeln!(out, "\n{}", "Grade it".bold());
    command_lines(&mut out, &command, &why);
    out
}

/// The line that finds the container's PID ([`FindPid`]), again, in the
/// section of `layer`: when that layer's lines in the second terminal use the
/// PID and the section of an earlier layer finds it (step 9's maps, after step
/// 5's veth pair), so that `--only` shows lines that work as typed.
fn find_pid_again(plan: &Plan, layer: u8) -> Option<Command> {
    let find = plan.commands.iter().find(|c| c.action.finds_pid())?;
    let uses = plan
        .commands_in(Phase::Connect)
        .any(|c| c.layer == layer && !c.action.finds_pid());
    (find.layer != layer && uses).then(|| {
        Command::at(
            Phase::Connect,
            layer,
            format!(
                "{} (layer {}'s line: in the terminal where you typed it, PID is set already)",
                find.why, find.layer
            ),
            FindPid(shell_note(&plan.spec)),
        )
    })
}

/// How a student grades the container they typed: `lab check` with the PID of
/// the newest child of the shell that [`crate::engine::plan::NoteShell`] noted (chroot's
/// shell at step 1, unshare from step 2; lab follows unshare down to the
/// container's process).
pub fn grade(plan: &Plan) -> (String, String) {
    let sudo = crate::dirs::sudo();
    let note = crate::engine::plan::quote_path(&shell_note(&plan.spec));
    (
        format!(
            "{sudo}lab check {} --pid \"$(pgrep -n -P \"$(cat {note})\")\"",
            plan.spec.step
        ),
        "in a second terminal, while the container runs: lab proves each layer from the kernel, as lab step does, and says what to do about each check that fails".into(),
    )
}

/// `lab script N`: the same commands as one bash script. What runs inside the new
/// namespaces goes in a function that `unshare` starts in a new bash.
pub fn script(plan: &Plan) -> String {
    let step = plan.spec.step;
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/bash");
    let _ = writeln!(
        out,
        "# {}: the commands of `lab explain {step}`, as one script.",
        step_title(plan)
    );
    let rootless = crate::dirs::rootless();
    let _ = writeln!(
        out,
        "{}",
        if rootless {
            "# Run it as yourself, without sudo: bash SCRIPT [COMMAND ...]"
        } else {
            "# Run it as root: sudo bash SCRIPT [COMMAND ...]"
        }
    );
    let _ = writeln!(
        out,
        "# Grade it in a second terminal while it runs: {}",
        grade(plan).0
    );
    let _ = writeln!(
        out,
        "# It runs COMMAND in the container ({} when none is given).",
        plan.spec.command_line()
    );
    let _ = writeln!(out, "set -euo pipefail");
    if rootless {
        // A user's PATH often lacks the sbin directories (pivot_root, ip).
        let _ = writeln!(out, "export PATH=\"$PATH:/usr/sbin:/sbin\"");
    } else {
        let _ = writeln!(
            out,
            "if [ \"$(id -u)\" != 0 ]; then echo \"run it as root: sudo bash $0\" >&2; exit 1; fi"
        );
    }
    let _ = writeln!(
        out,
        "if [ $# -eq 0 ]; then set -- {}; fi",
        plan.spec.command_line()
    );
    if let Some(missing) = missing(plan) {
        let _ = writeln!(out, "# {missing}");
    }
    for line in left_out(step) {
        let _ = writeln!(out, "# {line}");
    }
    let teardown: Vec<&Command> = plan.commands_in(Phase::Teardown).collect();
    if !teardown.is_empty() {
        let _ = writeln!(
            out,
            "\n# After exit, on the host (a trap: it runs however the script ends)"
        );
        let _ = writeln!(out, "teardown() {{");
        for c in &teardown {
            let _ = writeln!(out, "  # {}: {}", section(plan, c), c.why);
            let _ = writeln!(out, "  {}", c.action.script());
        }
        let _ = writeln!(out, "}}\ntrap teardown EXIT");
    }
    let unshare = plan.unshare();
    let mut in_function = false;
    let mut last_section = None;
    for item in plan.sequence() {
        let indent = if in_function { "  " } else { "" };
        match item {
            Item::Note(layer, note) => {
                let title = layer_title(layer);
                if last_section.as_ref() != Some(&title) {
                    let _ = writeln!(out, "\n{indent}# {title}");
                    last_section = Some(title);
                }
                let _ = writeln!(out, "{indent}# Note: {note}");
            }
            Item::Unshare(_) => {
                // Written at the end, once the function it starts is defined.
                let _ = writeln!(out, "\n# Everything in inside() runs in the new namespaces that unshare makes below.");
                let _ = writeln!(out, "inside() {{");
                let _ = writeln!(out, "  set -euo pipefail");
                in_function = true;
                last_section = None;
            }
            Item::Command(c)
                if matches!(c.phase, Phase::Teardown | Phase::Join | Phase::Connect) => {}
            Item::Command(c) => {
                let title = section(plan, c);
                if last_section.as_ref() != Some(&title) {
                    let _ = writeln!(out, "\n{indent}# {title}");
                    last_section = Some(title);
                }
                let _ = writeln!(out, "{indent}# {}", c.why);
                let _ = writeln!(out, "{indent}{}", c.action.script());
            }
        }
    }
    if let Some(u) = unshare {
        let _ = writeln!(out, "}}\nexport -f inside");
        let connect: Vec<&Command> = plan.commands_in(Phase::Connect).collect();
        if let Some(first) = connect.first() {
            let title = plan.layer(first.layer).map(layer_title).unwrap_or_default();
            let _ = writeln!(
                out,
                "\n# {title}: on the host, once unshare (below) has made the namespaces.\n# In the background (typed by hand: {SECOND_TERMINAL}): unshare runs in the foreground, with the terminal."
            );
            let _ = writeln!(out, "connect() {{\n  set -euo pipefail");
            for c in &connect {
                let _ = writeln!(out, "  # {}", c.why);
                let _ = writeln!(out, "  {}", c.action.script());
            }
            let _ = writeln!(out, "}}\nconnect &");
        }
        let _ = writeln!(out, "\n# {}", u.title());
        let _ = writeln!(out, "# {}", u.why());
        let _ = writeln!(out, "{}", u.script());
    }
    out
}

/// `lab steps`, with the steps completed so far marked.
pub fn steps(completed: &[u8], quizzes: &[(u8, usize, usize)]) -> String {
    let mut out = String::new();
    let quiz = |n: u8| {
        quizzes
            .iter()
            .find(|q| q.0 == n)
            .map(|(_, r, o)| {
                let score = format!(" · quiz {r}/{o}");
                if r == o {
                    score.green().to_string()
                } else {
                    score.yellow().to_string()
                }
            })
            .unwrap_or_default()
    };
    for s in crate::engine::curriculum::steps() {
        let status = match s.layer {
            None => " (not built yet)".dimmed().to_string(),
            Some(_) if completed.contains(&s.number) => " (completed)".green().to_string(),
            Some(_) => String::new(),
        };
        let _ = writeln!(out, "  {}  {}{status}{}", s.number, s.title, quiz(s.number));
    }
    let others: Vec<String> = [
        (0, "introduction"),
        (crate::engine::curriculum::last_step() + 1, "closing"),
    ]
    .iter()
    .filter(|(n, _)| !quiz(*n).is_empty())
    .map(|(n, name)| format!("{name}{}", quiz(*n)))
    .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "  lessons: {}", others.join(", "));
    }
    out.push_str("\nlab explain N      the commands of step N, to type by hand\n");
    out.push_str("lab script N       the same commands as one bash script\n");
    out.push_str("sudo lab step N    build step N, check it, and open a shell inside\n");
    out.push_str("sudo lab verify N  build step N, run its checks, and tear it down\n");
    out.push_str("sudo lab next      the first step not completed yet (all its checks passed)\n");
    out.push_str("lab lesson N       the lesson of step N, for self-study\n");
    out.push_str("lab quiz N         its questions, multiple choice (0: intro, 10: closing)\n");
    out.push_str("lab hint N         the next hint for a check of step N that failed\n");
    out
}

/// Check reports as lines for a person.
pub fn reports(title: &str, reports: &[Report]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\n{}", title.bold());
    // A hint given for the check above is not printed again (another
    // runtime's container gets one hint for all of a layer's checks).
    let mut last_hint = "";
    for r in reports {
        let mark = match r.outcome {
            Outcome::Pass(_) => "pass".green().bold(),
            Outcome::Fail(_) => "FAIL".red().bold(),
            Outcome::Skip(_) => "skip".yellow().bold(),
        };
        let _ = writeln!(out, "  {mark}  layer {}: {}", r.layer, r.name);
        let _ = writeln!(out, "        {}", r.outcome.detail().dimmed());
        if r.outcome.failed() {
            match r.hint == last_hint {
                true => {
                    let _ = writeln!(out, "        {} the same as above", "hint:".yellow());
                }
                false => {
                    let _ = writeln!(out, "        {} {}", "hint:".yellow(), r.hint);
                }
            }
            last_hint = r.hint;
        }
    }
    out
}

/// Check reports as a JSON array of {layer, check, passed, skipped, detail,
/// hint} (the hint is for a check that failed).
/// serde_json writes each value (and escapes the strings); the layout is ours:
/// one report a line, its keys in this order (a `Value` object would sort
/// them), so that `grep` and a reader find a check's row whole.
pub fn json(reports: &[Report]) -> String {
    use serde_json::json;
    let rows: Vec<String> = reports
        .iter()
        .map(|r| {
            let fields = [
                ("layer", json!(r.layer)),
                ("check", json!(r.name)),
                ("passed", json!(r.outcome.passed())),
                ("skipped", json!(matches!(r.outcome, Outcome::Skip(_)))),
                ("detail", json!(r.outcome.detail())),
                ("hint", json!(r.hint)),
            ];
            let fields: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{}: {value}", json!(key)))
                .collect();
            format!("  {{{}}}", fields.join(", "))
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}

/// The command a container runs, for messages.
pub fn command(words: &[String]) -> String {
    join_quoted(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reports_are_one_row_each_in_order_and_escaped() {
        let reports = [
            Report {
                layer: 2,
                name: "a \"quoted\" name",
                hint: "",
                outcome: Outcome::Skip("back\\slash\nnew line\u{1}".into()),
            },
            Report {
                layer: 3,
                name: "plain",
                hint: "",
                outcome: Outcome::Pass("ok".into()),
            },
        ];
        let expected = r#"[
  {"layer": 2, "check": "a \"quoted\" name", "passed": false, "skipped": true, "detail": "back\\slash\nnew line\u0001", "hint": ""},
  {"layer": 3, "check": "plain", "passed": true, "skipped": false, "detail": "ok", "hint": ""}
]
"#;
        assert_eq!(json(&reports), expected);
        let parsed: serde_json::Value = serde_json::from_str(&json(&reports)).unwrap();
        assert_eq!(parsed[0]["detail"], "back\\slash\nnew line\u{1}");
    }
}
