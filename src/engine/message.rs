//! What lab, its init and the probe say to each other over their pipes: one type
//! for each kind of message, each encoded and decoded here and nowhere else.
//! Whatever else arrives is an error that says what it was.
//!
//! ```text
//! lab ── Word::Connected ──▶ init             one byte
//! lab ◀──────  Setup  ─────── init             one line: ok, interrupted, error
//! lab ── Word::Go / Stop ──▶ init ── Word::Go ──▶ the command it holds
//! lab ◀──────  Answer ─────── probe            one line per inside check
//!            probe ◀─ Outcome ─ a confined check   until the pipe closes
//! lab ◀──────  Joined ─────── start_inside's joiner   until the pipe closes
//! ```
//!
//! The words are single bytes because init reads them one byte at a time (it
//! polls its pipe while it reaps children); the rest is text, its fields split
//! by tabs (a field of free text writes its backslashes, newlines and tabs as
//! `\\`, `\n` and `\t`, so that an error arrives whole, its hint beside it).

use crate::engine::check::Outcome;
use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use std::time::Duration;

/// lab's word to its init (and init's to the command it holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// The host's part that needs the child's PID is done: set up inside.
    Connected,
    /// Run the command.
    Go,
    /// Stop without running it (`lab verify`).
    Stop,
}

impl Word {
    pub fn encode(self) -> [u8; 1] {
        [match self {
            Word::Connected => b'c',
            Word::Go => b'g',
            Word::Stop => b's',
        }]
    }

    pub fn decode(byte: u8) -> Result<Word> {
        Ok(match byte {
            b'c' => Word::Connected,
            b'g' => Word::Go,
            b's' => Word::Stop,
            _ => bail!("lab's word was {:?}, none of c, g, s", char::from(byte)),
        })
    }

    /// `byte` is this word, or an error that says what came instead.
    pub fn expect(self, byte: u8) -> Result<()> {
        match Word::decode(byte)? {
            w if w == self => Ok(()),
            w => bail!("lab's word was {w:?} where {self:?} was due"),
        }
    }
}

/// How the setup inside the container went: init's one line to lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setup {
    /// The inside commands are applied and the command is held: "ok".
    Ready,
    /// Ctrl-C or Esc at a --walk prompt (lab tears down, as on Ctrl-C).
    Interrupted,
    /// "stop" chosen at a --walk prompt (lab tears down the same way).
    Stopped,
    /// A command failed: what lab shows the student, and the hint if there is one.
    Failed { error: String, hint: Option<String> },
}

impl Setup {
    /// An error inside, with its hint (crate::engine::error::Hinted) kept apart.
    pub fn failed(e: &anyhow::Error) -> Setup {
        Setup::Failed {
            error: format!("{e:#}"),
            hint: crate::engine::error::hint_of(e).map(String::from),
        }
    }

    /// The line, with its newline.
    pub fn encode(&self) -> String {
        match self {
            Setup::Ready => "ok\n".into(),
            Setup::Interrupted => "interrupted\n".into(),
            Setup::Stopped => "stopped\n".into(),
            Setup::Failed { error, hint: None } => format!("error\t{}\n", escape(error)),
            Setup::Failed {
                error,
                hint: Some(hint),
            } => format!("error\t{}\t{}\n", escape(error), escape(hint)),
        }
    }

    /// Write the line to lab.
    pub fn send(&self, to: &mut impl std::io::Write) -> std::io::Result<()> {
        to.write_all(self.encode().as_bytes())
    }

    /// A line, without its newline.
    pub fn decode(line: &str) -> Result<Setup> {
        let mut fields = line.split('\t');
        let setup = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some("ok"), None, ..) => Setup::Ready,
            (Some("interrupted"), None, ..) => Setup::Interrupted,
            (Some("stopped"), None, ..) => Setup::Stopped,
            (Some("error"), Some(error), hint, None) => Setup::Failed {
                error: unescape(error)?,
                hint: hint.map(unescape).transpose()?,
            },
            _ => bail!(
                "the container's first process said {line:?}: neither ok, interrupted nor error<TAB>TEXT[<TAB>HINT]"
            ),
        };
        Ok(setup)
    }
}

/// The probe's answer for one inside check.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Which check, as an index into the step's checks.
    pub index: usize,
    pub outcome: Outcome,
    /// How long it took (LAB_TIMINGS=1 prints it).
    pub took: Duration,
}

impl Answer {
    /// `INDEX<TAB>pass|fail|skip<TAB>MICROSECONDS<TAB>DETAIL` and a newline. A
    /// report shows the detail on one line: its newlines and tabs become spaces.
    pub fn encode(&self) -> String {
        let detail = self.outcome.detail().replace(['\n', '\t'], " ");
        format!(
            "{}\t{}\t{}\t{detail}\n",
            self.index,
            status(&self.outcome),
            self.took.as_micros()
        )
    }

    /// A line, without its newline.
    pub fn decode(line: &str) -> Result<Answer> {
        let mut fields = line.splitn(4, '\t');
        let (Some(index), Some(status), Some(micros), Some(detail)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("the probe answered {line:?}: not INDEX<TAB>STATUS<TAB>MICROSECONDS<TAB>DETAIL");
        };
        let number = |n: &str| {
            n.parse::<u64>()
                .with_context(|| format!("the probe answered {line:?}: {n:?} is not a number"))
        };
        Ok(Answer {
            index: number(index)? as usize,
            outcome: outcome(status, detail)
                .with_context(|| format!("the probe answered {line:?}"))?,
            took: Duration::from_micros(number(micros)?),
        })
    }
}

/// A confined check's outcome is all its process says to the probe:
/// `pass|fail|skip<TAB>DETAIL`, the detail as it is (read until the pipe closes).
impl Outcome {
    pub fn encode(&self) -> String {
        format!("{}\t{}", status(self), self.detail())
    }

    pub fn decode(text: &str) -> Result<Outcome> {
        let Some((status, detail)) = text.split_once('\t') else {
            bail!("the confined check said {text:?}: not STATUS<TAB>DETAIL");
        };
        outcome(status, detail).with_context(|| format!("the confined check said {text:?}"))
    }
}

/// What the process that starts others in the container (check::start_inside)
/// tells lab: their PIDs, as the host numbers them, or why it could not join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Joined {
    /// `started<TAB>PID PID ...`
    Started(Vec<Pid>),
    /// `error<TAB>TEXT`
    Failed(String),
}

impl Joined {
    pub fn encode(&self) -> String {
        match self {
            Joined::Started(pids) => {
                let pids: Vec<String> = pids.iter().map(Pid::to_string).collect();
                format!("started\t{}", pids.join(" "))
            }
            Joined::Failed(error) => format!("error\t{}", escape(error)),
        }
    }

    pub fn decode(text: &str) -> Result<Joined> {
        let what = || format!("the process that joins the container said {text:?}");
        Ok(match text.split_once('\t') {
            Some(("started", pids)) => Joined::Started(
                pids.split_whitespace()
                    .map(|p| p.parse().map(Pid::from_raw))
                    .collect::<Result<_, _>>()
                    .with_context(what)?,
            ),
            Some(("error", error)) => Joined::Failed(unescape(error)?),
            _ => bail!("{}: neither started<TAB>PIDS nor error<TAB>TEXT", what()),
        })
    }
}

fn status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass(_) => "pass",
        Outcome::Fail(_) => "fail",
        Outcome::Skip(_) => "skip",
    }
}

fn outcome(status: &str, detail: &str) -> Result<Outcome> {
    let detail = detail.to_string();
    Ok(match status {
        "pass" => Outcome::Pass(detail),
        "fail" => Outcome::Fail(detail),
        "skip" => Outcome::Skip(detail),
        _ => bail!("{status:?} is none of pass, fail, skip"),
    })
}

/// A text field of a line: its backslashes, newlines and tabs written as `\\`,
/// `\n` and `\t`, so that it arrives whole.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(field: &str) -> Result<String> {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            other => bail!(
                "{field:?} holds \\{}, which is no escape",
                other.unwrap_or(' ')
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_others_are_refused() {
        for w in [Word::Connected, Word::Go, Word::Stop] {
            assert_eq!(Word::decode(w.encode()[0]).unwrap(), w);
        }
        let e = Word::decode(b'x').unwrap_err().to_string();
        assert!(e.contains("'x'"), "{e}");
    }

    #[test]
    fn setups_round_trip_with_their_hint_as_a_field() {
        for s in [
            Setup::Ready,
            Setup::Interrupted,
            Setup::Stopped,
            Setup::Failed {
                error: "`mount` failed:\tEINVAL\\n".into(),
                hint: None,
            },
            Setup::Failed {
                error: "two\nlines".into(),
                hint: Some("do\tthis".into()),
            },
        ] {
            let line = s.encode();
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            let line = line.strip_suffix('\n').unwrap();
            assert_eq!(Setup::decode(line).unwrap(), s);
        }
    }

    #[test]
    fn a_setup_error_keeps_its_hint() {
        let e = crate::engine::error::hinted(anyhow::anyhow!("EINVAL"), "bind it first")
            .context("`pivot_root . .` failed");
        assert_eq!(
            Setup::failed(&e),
            Setup::Failed {
                error: "`pivot_root . .` failed: EINVAL".into(),
                hint: Some("bind it first".into()),
            }
        );
    }

    #[test]
    fn unknown_setups_say_what_arrived() {
        for line in [
            "",
            "okay",
            "ok\textra",
            "error",
            "error\ta\tb\tc",
            "error\tbad \\x",
        ] {
            let e = format!("{:#}", Setup::decode(line).unwrap_err());
            assert!(e.contains(&format!("{line:?}")) || e.contains("\\x"), "{e}");
        }
    }

    #[test]
    fn answers_round_trip_on_one_line() {
        for outcome in [
            Outcome::Pass("it works".into()),
            Outcome::Fail(String::new()),
            Outcome::Skip("no port published".into()),
        ] {
            let a = Answer {
                index: 12,
                outcome,
                took: Duration::from_micros(345),
            };
            let line = a.encode();
            assert_eq!(Answer::decode(line.strip_suffix('\n').unwrap()).unwrap(), a);
        }
        let a = Answer {
            index: 0,
            outcome: Outcome::Fail("two\nlines\tand a tab".into()),
            took: Duration::ZERO,
        };
        let decoded = Answer::decode(a.encode().trim_end_matches('\n')).unwrap();
        assert_eq!(decoded.outcome, Outcome::Fail("two lines and a tab".into()));
    }

    #[test]
    fn unknown_answers_are_errors_not_failures() {
        for line in [
            "0\tmaybe\t1\tdetail",
            "x\tpass\t1\td",
            "0\tpass\t1",
            "garbage",
        ] {
            let e = format!("{:#}", Answer::decode(line).unwrap_err());
            assert!(e.contains(&format!("{line:?}")), "{e}");
        }
    }

    #[test]
    fn confined_outcomes_round_trip_whole() {
        for o in [
            Outcome::Pass("a\nb\tc".into()),
            Outcome::Fail("EPERM".into()),
            Outcome::Skip(String::new()),
        ] {
            assert_eq!(Outcome::decode(&o.encode()).unwrap(), o);
        }
        assert!(Outcome::decode("p").is_err());
        assert!(Outcome::decode("passed\tx").is_err());
    }

    #[test]
    fn joined_round_trips() {
        for j in [
            Joined::Started(vec![Pid::from_raw(7), Pid::from_raw(8)]),
            Joined::Started(vec![]),
            Joined::Failed("setns:\tEPERM\nsecond line".into()),
        ] {
            assert_eq!(Joined::decode(&j.encode()).unwrap(), j);
        }
        assert!(Joined::decode("started\t7 x").is_err());
        assert!(Joined::decode("7\n8\n").is_err());
    }
}
