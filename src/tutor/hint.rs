//! `lab hint N`: help that escalates, for a check of step N that failed.
//!
//! A failed check prints its first hint at once (the usual cause). Each `lab
//! hint N` after that gives the next level, for the first check that failed in
//! the last run of step N's checks (`lab step`, `lab verify`, `lab check`):
//!
//! 1. the hint, as printed;
//! 2. the cause: what the check saw, and the commands that show it to you;
//! 3. the fix: the lines of the check's layer, as `lab explain N --only L` prints
//!    them, to type again in a new container.
//!
//! What failed and which level was shown live in `hints` in lab's home (LAB_HOME),
//! one line per failed check: `step N<TAB>LEVEL<TAB>LAYER<TAB>CHECK<TAB>WHAT IT SAW`.
//! A run of step N's checks replaces step N's lines; once they all pass, none is left.

use crate::engine::check::Report;
use anyhow::{Context, Result};
use colored::Colorize;

fn path() -> std::path::PathBuf {
    crate::dirs::home().join("hints")
}

/// One failed check on record.
struct Failed {
    step: u8,
    level: u8,
    layer: u8,
    name: String,
    saw: String,
}

fn read() -> Vec<Failed> {
    let text = std::fs::read_to_string(path()).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(5, '\t');
            Some(Failed {
                step: f.next()?.strip_prefix("step ")?.parse().ok()?,
                level: f.next()?.parse().ok()?,
                layer: f.next()?.parse().ok()?,
                name: f.next()?.to_string(),
                saw: f.next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

fn write(all: &[Failed]) -> Result<()> {
    let file = path();
    if all.is_empty() {
        let _ = std::fs::remove_file(&file);
        return Ok(());
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let text: String = all
        .iter()
        .map(|f| {
            format!(
                "step {}\t{}\t{}\t{}\t{}\n",
                f.step,
                f.level,
                f.layer,
                clean(&f.name),
                clean(&f.saw)
            )
        })
        .collect();
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
}

/// After step `step`'s checks ran: what failed, with its first hint shown.
/// Returns whether anything failed.
pub fn note(step: u8, reports: &[Report]) -> bool {
    let mut all: Vec<Failed> = read().into_iter().filter(|f| f.step != step).collect();
    let failed: Vec<&Report> = reports.iter().filter(|r| r.outcome.failed()).collect();
    all.extend(failed.iter().map(|r| Failed {
        step,
        level: 1,
        layer: r.layer,
        name: r.name.to_string(),
        saw: r.outcome.detail().to_string(),
    }));
    let _ = write(&all);
    !failed.is_empty()
}

/// `lab hint N`: the next level for the first failed check of step N.
/// `explain(N, L)`: what `lab explain N --only L` prints on this machine.
pub fn next(step: u8, explain: impl Fn(u8, u8) -> String) -> Result<String> {
    let mut all = read();
    let Some(f) = all.iter_mut().find(|f| f.step == step) else {
        return Ok(format!(
            "No failed check of step {step} is on record: nothing to hint at. Run the checks first (sudo lab verify {step}, or lab check {step} --pid PID for a container you built by hand).\n"
        ));
    };
    let Some(check) = crate::engine::check::checks_for(step)
        .into_iter()
        .find(|c| c.name == f.name)
    else {
        return Ok(format!(
            "The check {:?} of step {step} is not one of this lab's: run the checks of step {step} again.\n",
            f.name
        ));
    };
    f.level = (f.level + 1).min(3);
    let mut out = format!(
        "{} layer {}: {}\n\n",
        format!("Hint {} of 3 for", f.level).bold(),
        f.layer,
        f.name
    );
    match f.level {
        2 => {
            out.push_str("(Hint 1 of 3 was the one printed under the failed check.)\n\n");
            out.push_str(&format!(
                "{}\n  {}\n\n",
                "What the check saw:".bold(),
                f.saw
            ));
            let commands = to_look(check.hint, &explain(step, f.layer));
            let layer = crate::engine::curriculum::step(f.layer).and_then(|s| s.layer);
            out.push_str(&format!("{}\n", "See the cause yourself:".bold()));
            if commands.is_empty() {
                if let Some(l) = layer {
                    out.push_str(&format!("  {}\n", l.look));
                }
            }
            for c in commands {
                out.push_str(&format!("  {}\n", c.cyan()));
            }
            out.push_str(&format!(
                "\n(the hint said: {})\nlab hint {step} again shows the fix.\n",
                check.hint
            ));
        }
        _ => {
            // An escape that still works is closed by the lines of the layer
            // that closes it, not by those of the layer that lists it.
            let fix = match check.kind {
                crate::engine::check::Kind::Escape(e) if step >= e.closed_at => e.closed_at,
                _ => f.layer,
            };
            out.push_str(&format!(
                "{}\n",
                format!(
                    "The fix: the lines of layer {fix} that make this true, as lab explain {step} --only {fix} prints them. In a new container, type them again, in order, and check again:"
                )
                .bold()
            ));
            out.push_str(&explain(step, fix));
            out.push_str(&format!(
                "\nThat was the last hint. lab lesson {} tells the why of each line.\n",
                f.layer
            ));
        }
    }
    write(&all)?;
    Ok(out)
}

/// The commands a hint quotes: its backticked spans that hold a space or a path
/// (`ls -l /proc/self/ns/pid`), not single names (`--fork`).
fn quoted(hint: &str) -> Vec<String> {
    hint.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.contains(' ') || s.starts_with('/'))
        .map(String::from)
        .collect()
}

/// The commands of a hint that show the cause, not the ones that fix it: the
/// layer's own lines (`umount -l .`, in `fix`) wait for level 3, and a
/// command that would change something (`hostname NAME`: typed where the
/// container has no uts namespace, it renames the host) is never offered as a
/// way to look.
fn to_look(hint: &str, fix: &str) -> Vec<String> {
    quoted(hint)
        .into_iter()
        .filter(|c| {
            !console::strip_ansi_codes(fix)
                .lines()
                .any(|l| l.trim() == c)
        })
        .filter(|c| only_looks(c))
        .collect()
}

/// Whether a command only reads: a path to look at, or a program that prints
/// what it is asked (ip and iptables only when they list).
fn only_looks(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        [path] if path.starts_with('/') => true,
        ["cat" | "ls" | "grep" | "findmnt" | "ps" | "readlink" | "stat" | "capsh", ..] => true,
        ["hostname"] | ["id"] | ["mount"] => true,
        ["bridge", "link"] => true,
        ["ip", rest @ ..] => !rest
            .iter()
            .any(|w| ["add", "del", "delete", "set", "change", "replace", "flush"].contains(w)),
        ["iptables", rest @ ..] => rest.iter().any(|w| *w == "-S" || *w == "-L"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cause_shows_what_to_look_at_not_the_fix() {
        assert_eq!(
            super::to_look(
                "The host's root is still mounted: after `pivot_root . .`, `umount -l .` did not run. Look for a second mount on / with `cat /proc/mounts` inside.",
                // As on a terminal: in colour.
                "Layer 2\n  pivot_root . .\n  \x1b[36mumount -l .\x1b[0m\n"
            ),
            vec!["cat /proc/mounts".to_string()]
        );
    }

    #[test]
    fn a_command_that_changes_something_is_never_a_way_to_look() {
        assert_eq!(
            super::to_look(
                "Not named: `hostname NAME` did not run. Compare `cat /proc/sys/kernel/hostname`, `ip link set lo up`, `ip -br link` and `iptables -S FORWARD`; then `sudo lab clean`.",
                ""
            ),
            vec![
                "cat /proc/sys/kernel/hostname".to_string(),
                "ip -br link".into(),
                "iptables -S FORWARD".into()
            ]
        );
    }

    #[test]
    fn commands_are_taken_from_a_hint() {
        assert_eq!(
            super::quoted(
                "Use `--fork`. Compare `ls -l /proc/self/ns/pid` inside and `/proc/1/root`."
            ),
            vec!["ls -l /proc/self/ns/pid".to_string(), "/proc/1/root".into()]
        );
    }
}
