//! What `lab step` and `lab verify` print besides the commands themselves: how
//! loud a run is (`Show`), the step's title, a line per layer instead of every
//! command (without `--verbose`), the checks' verdict before the command, and
//! the summary that ends every run, on a screen.

use crate::engine::check::{Outcome, Report};
use crate::engine::plan::Plan;
use crate::engine::render::{self, layer_title};
use colored::Colorize;
use std::fmt::Write;

/// Which command runs the container, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `lab step`: say what it builds, then run the command; `checks: false` skips
    /// the checks (`--no-checks`, to time the container itself); `walk` waits for
    /// Enter before each command (`--walk`); `verbose` prints every command as
    /// it is applied and each check with its detail (so does `walk`), where the
    /// default is a line per layer and the checks' verdict.
    Step {
        checks: bool,
        walk: bool,
        verbose: bool,
    },
    /// `lab verify`: run the checks, then stop; print nothing (the command prints
    /// the checks).
    Verify,
}

/// How loud a run is, and what it does besides building the container.
#[derive(Clone, Copy)]
pub struct Show {
    /// Print while it runs, and run the command (`lab step`); `lab verify`
    /// prints nothing and stops the container instead.
    pub loud: bool,
    /// Print every command as it is applied, and each check with its detail
    /// (`--verbose`, `--walk`); else a line per layer and the checks' verdict.
    pub full: bool,
    /// Wait for Enter before each command (`--walk`).
    pub walk: bool,
    /// Run the checks (all but `--no-checks`).
    pub checks: bool,
}

impl Show {
    pub(super) fn of(mode: Mode) -> Show {
        match mode {
            Mode::Step {
                checks,
                walk,
                verbose,
            } => Show {
                loud: true,
                full: verbose || walk,
                walk,
                checks,
            },
            Mode::Verify => Show {
                loud: false,
                full: false,
                walk: false,
                checks: true,
            },
        }
    }
    /// Printed by `lab step`.
    pub(super) fn say(&self, text: &str) {
        if self.loud {
            render::out(text);
        }
    }
    /// Printed by `lab step --verbose` (or `--walk`) only.
    pub(super) fn detail(&self, text: &str) {
        if self.loud && self.full {
            render::out(text);
        }
    }
}

/// The step's title, the container's name and what its root is made of.
pub(super) fn announce(plan: &Plan, show: Show) {
    let root = if plan.spec.new_root() == plan.spec.rootfs {
        format!("root filesystem {}", plan.spec.rootfs.display())
    } else {
        let layers: Vec<String> = plan
            .spec
            .image
            .iter()
            .map(|l| l.display().to_string())
            .collect();
        format!("image layers (bottom first) {}", layers.join(", "))
    };
    show.say(&format!(
        "{}\ncontainer {} · {root}\n",
        render::step_title(plan).bold(),
        plan.spec.name,
    ));
    for line in render::left_out(plan.spec.step) {
        show.say(&format!("{line}\n"));
    }
}

/// `lab step` without --verbose, before it builds: a line per layer, with how
/// many commands lab runs for it, and where to see them.
pub fn outline(plan: &Plan) -> String {
    let step = plan.spec.step;
    let mut out = String::from("\n");
    for layer in &plan.layers {
        let n = plan
            .commands
            .iter()
            .filter(|c| c.layer == layer.number)
            .count();
        let what = match (n, (layer.note)(step)) {
            (0, Some(note)) => format!("no command at this step. {note}"),
            (0, None) => "no command at this step".into(),
            (1, _) => "1 command".into(),
            (n, _) => format!("{n} commands"),
        };
        let line = format!("{}: {what}", layer_title(layer));
        let _ = match own_layer(step) == Some(layer.number) {
            true => writeln!(out, "  {}", line.bold()),
            false => writeln!(out, "  {line}"),
        };
    }
    let _ = writeln!(
        out,
        "  {}",
        format!("(--verbose prints each command as lab runs it, --walk stops before each; lab explain {step} prints them to type by hand)").dimmed()
    );
    out
}

/// The layer that step `step` adds.
fn own_layer(step: u8) -> Option<u8> {
    crate::engine::curriculum::step(step)
        .and_then(|s| s.layer)
        .map(|l| l.number)
}

/// How many checks passed, failed, were skipped.
fn counts<'a>(reports: impl IntoIterator<Item = &'a Report>) -> (usize, usize, usize) {
    reports
        .into_iter()
        .fold((0, 0, 0), |(p, f, s), r| match r.outcome {
            Outcome::Pass(_) => (p + 1, f, s),
            Outcome::Fail(_) => (p, f + 1, s),
            Outcome::Skip(_) => (p, f, s + 1),
        })
}

/// A check on one line: its mark, its name, and when it did not pass, its hint
/// (failed) or why (skipped).
fn check_line(r: &Report, with_layer: bool) -> String {
    let name = match with_layer {
        true => format!("layer {}: {}", r.layer, r.name),
        false => r.name.to_string(),
    };
    match &r.outcome {
        Outcome::Pass(_) => format!("{}  {name}", "pass".green().bold()),
        Outcome::Fail(_) => format!(
            "{}  {name} · {} {}",
            "FAIL".red().bold(),
            "hint:".yellow(),
            r.hint
        ),
        Outcome::Skip(why) => format!("{}  {name} · {why}", "skip".yellow().bold()),
    }
}

/// `lab step` without --verbose, before the command runs: how many checks
/// passed, and each one that did not, on a line of its own.
pub fn verdict_before(reports: &[Report]) -> String {
    let (passed, failed, skipped) = counts(reports);
    let mut verdict = format!("{passed} of {} passed", reports.len());
    if failed > 0 {
        verdict.push_str(&format!(", {failed} failed"));
    }
    if skipped > 0 {
        verdict.push_str(&format!(", {skipped} skipped"));
    }
    let mut out = format!("\n{} {verdict}\n", "Checks:".bold());
    for r in reports.iter().filter(|r| !r.outcome.passed()) {
        let _ = writeln!(out, "  {}", check_line(r, true));
    }
    out
}

/// How a run ended, for its summary.
pub struct Ending<'a> {
    pub step: u8,
    /// The container's name.
    pub name: &'a str,
    /// Every check (none with --no-checks).
    pub reports: &'a [Report],
    /// What the layers left on purpose (a layer kept with --keep).
    pub kept: &'a [String],
    /// Where the rest is (`--verbose`), when it was not printed.
    pub more: Option<&'a str>,
}

/// The summary that ends `lab step` and `lab verify`, on a screen: a line per
/// layer with its checks counted, under it each check that failed (with its
/// hint) or was skipped (with why), and every check of the step's own layer by
/// name; what was kept, and where; the verdict.
pub fn summary(e: &Ending) -> String {
    let mut out = format!(
        "\n{}\n",
        format!("Summary · step {}, container {} (removed)", e.step, e.name).bold()
    );
    let mut layers: Vec<u8> = e.reports.iter().map(|r| r.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let all = crate::engine::curriculum::all();
    for l in layers {
        let of: Vec<&Report> = e.reports.iter().filter(|r| r.layer == l).collect();
        let (passed, failed, skipped) = counts(of.iter().copied());
        let mut said = vec![format!("{passed} passed")];
        if failed > 0 {
            said.push(format!("{failed} FAILED"));
        }
        if skipped > 0 {
            said.push(format!("{skipped} skipped"));
        }
        let title = all.iter().find(|x| x.number == l).map_or("", |x| x.title);
        let line = format!("layer {l} · {title}: {}", said.join(", "));
        let own = own_layer(e.step) == Some(l);
        let _ = match own {
            true => writeln!(out, "  {}", line.bold()),
            false => writeln!(out, "  {line}"),
        };
        for r in of.iter().filter(|r| own || !r.outcome.passed()) {
            let _ = writeln!(out, "    {}", check_line(r, false));
        }
    }
    if e.reports.is_empty() {
        let _ = writeln!(out, "  no checks ran (--no-checks)");
    }
    for k in e.kept {
        let _ = writeln!(out, "  {}  {k}", "kept".cyan().bold());
    }
    if !e.reports.is_empty() {
        let (passed, failed, skipped) = counts(e.reports);
        let failed = match failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        let skipped = match skipped {
            0 => String::new(),
            n => format!(" ({n} skipped: each says why)"),
        };
        let _ = writeln!(
            out,
            "{passed} of {} checks passed{failed}{skipped}.",
            e.reports.len()
        );
    }
    if let Some(more) = e.more {
        let _ = writeln!(out, "{}", more.dimmed());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `lab step N` for the classroom VM (as lab explain prints
    /// it), with every layer of the curriculum.
    pub(super) fn plan(n: u8, more: &[&str]) -> Plan {
        use clap::Parser;
        let step = n.to_string();
        let mut args = vec!["lab", "explain", step.as_str()];
        for (from, option) in [
            (5, ["--subnet", "10.200.0.0/24"]),
            (6, ["--cgroup", "v2"]),
            (9, ["--id-range", "200000:65536"]),
        ] {
            if n >= from {
                args.extend(option);
            }
        }
        args.extend(more);
        let Some(crate::Cmd::Explain { target, .. }) = crate::Cli::parse_from(args).command else {
            unreachable!()
        };
        Plan::new(crate::options::spec(&target, vec![], false).unwrap()).unwrap()
    }

    /// Every check of step `n`, passed, but those named in `not`.
    fn reports_of(n: u8, not: &[(&str, Outcome)]) -> Vec<Report> {
        crate::engine::check::checks_for(n)
            .into_iter()
            .map(|c| Report {
                layer: c.layer,
                name: c.name,
                hint: c.hint,
                outcome: not
                    .iter()
                    .find(|(name, _)| c.name.contains(name))
                    .map_or(Outcome::Pass("a detail".into()), |(_, o)| o.clone()),
            })
            .collect()
    }

    /// What a screen holds, lines of at most 100 characters counted as one.
    fn screen_lines(text: &str) -> usize {
        text.lines().map(|l| 1 + l.chars().count() / 100).sum()
    }

    #[test]
    fn the_default_lab_step_says_a_line_per_layer_where_explain_prints_hundreds() {
        colored::control::set_override(false);
        let seven = outline(&plan(7, &[]));
        assert!(
            seven.contains("\n  Layer 7 · overlay filesystem: "),
            "{seven}"
        );
        assert!(
            seven.contains("\n  Layer 1 · chroot: no command at this step. From step 2 on, "),
            "{seven}"
        );
        for n in 1..=9 {
            let plan = plan(n, &[]);
            let lines = outline(&plan);
            // A line per layer, and where the commands are.
            assert_eq!(
                lines.trim().lines().count(),
                plan.layers.len() + 1,
                "{lines}"
            );
            let counted: usize = lines
                .lines()
                .filter_map(|l| {
                    l.rsplit(": ")
                        .next()?
                        .split(' ')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .sum();
            // (Layer 0's lines are lab's own: the note of the shell's PID.)
            let of_layers = plan.commands.iter().filter(|c| c.layer > 0).count();
            assert_eq!(counted, of_layers, "{lines}");
        }
    }

    #[test]
    fn the_summary_fits_on_a_screen_with_every_failure_and_its_hint() {
        colored::control::set_override(false);
        for n in 1..=9 {
            let reports = reports_of(
                n,
                &[
                    (
                        "escape: a device node",
                        Outcome::Skip("no disk to read here".into()),
                    ),
                    ("the hostname inside", Outcome::Fail("inside: host".into())),
                ],
            );
            let kept = ["/var/lib/lab/containers/c1/upper: what container c1 changed (--keep). It holds the name c1 until you remove it: sudo rm -rf /var/lib/lab/containers/c1".to_string()];
            let text = summary(&Ending {
                step: n,
                name: "c1",
                reports: &reports,
                kept: if n >= 7 { &kept } else { &[] },
                more: Some("--verbose prints every command as lab runs it, and each check with its detail."),
            });
            assert!(
                screen_lines(&text) <= 30,
                "step {n}: {} lines\n{text}",
                screen_lines(&text)
            );
            // Every check of the step's own layer, by name.
            for r in reports.iter().filter(|r| r.layer == n) {
                assert!(text.contains(&format!("  {}", r.name)), "{text}");
            }
            if n >= 4 {
                assert!(
                    text.contains("    FAIL  the hostname inside is the container's · hint: "),
                    "{text}"
                );
            }
            if n >= 2 {
                assert!(text.contains("    skip  escape: a device node it makes reads the host's disk (works until step 8) · no disk to read here\n"), "{text}");
            }
            let verdict = text.lines().rev().nth(1).unwrap();
            assert!(verdict.contains(" checks passed"), "{text}");
        }
    }
}
