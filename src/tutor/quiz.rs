//! `lab quiz N`: the questions of lesson N as multiple choice, in the terminal.
//!
//! One source: the questions live in the lesson's Markdown, under `## Questions`,
//! in a form mdBook renders for readers (the answer folded away) and this file
//! reads:
//!
//! ```text
//! 1. The question, on one line
//!    or more.
//!
//!    - a) A choice
//!    - b) Another, on one line
//!      or more
//!
//!    <details><summary>Answer</summary>
//!
//!    **b)** Why b is right: shown after a wrong answer, too.
//!    </details>
//! ```
//!
//! The score goes into the progress file (progress.rs); `lab steps` shows it.

use crate::lesson::{self, Lesson};
use anyhow::{bail, Result};

/// One question of a lesson.
#[derive(Debug, PartialEq)]
pub struct Question {
    pub text: String,
    /// (letter, text), in order.
    pub choices: Vec<(char, String)>,
    pub answer: char,
    /// Why the answer is right (the text of the folded answer).
    pub why: String,
}

/// The questions of a lesson; an error names the first one that does not parse.
pub fn questions(lesson: &Lesson) -> Result<Vec<Question>> {
    let Some(start) = lesson.text.find("\n## Questions") else {
        bail!("lesson {} has no questions", lesson.file);
    };
    let section = &lesson.text[start + 1..];
    let mut out: Vec<Question> = Vec::new();
    // What the next continuation line belongs to.
    enum In {
        Nothing,
        Text,
        Choice,
        Answer,
    }
    let mut at = In::Nothing;
    for line in section.lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        let trimmed = line.trim();
        let number = line
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if let Some((_, text)) = number {
            out.push(Question {
                text: text.to_string(),
                choices: vec![],
                answer: ' ',
                why: String::new(),
            });
            at = In::Text;
            continue;
        }
        let Some(q) = out.last_mut() else { continue };
        let choice = trimmed
            .strip_prefix("- ")
            .and_then(|c| Some((c.chars().next()?, c.get(1..)?.strip_prefix(") ")?)))
            .filter(|(letter, _)| letter.is_ascii_lowercase());
        if let (Some((letter, text)), In::Text | In::Choice) = (choice, &at) {
            q.choices.push((letter, text.to_string()));
            at = In::Choice;
            continue;
        }
        if trimmed == "<details><summary>Answer</summary>" {
            at = In::Answer;
            continue;
        }
        if trimmed == "</details>" {
            at = In::Nothing;
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        match at {
            In::Text => join(&mut q.text, trimmed),
            In::Choice => {
                if let Some((_, c)) = q.choices.last_mut() {
                    join(c, trimmed);
                }
            }
            In::Answer if q.answer == ' ' => {
                let marked = trimmed
                    .strip_prefix("**")
                    .and_then(|r| Some((r.chars().next()?, r.get(1..)?.strip_prefix(")**")?)));
                match marked {
                    Some((letter, rest)) => {
                        q.answer = letter;
                        q.why = rest.trim().to_string();
                    }
                    None => bail!(
                        "{}: question {} has an answer that does not start with **a)** (the right choice's letter)",
                        lesson.file,
                        out.len()
                    ),
                }
            }
            In::Answer => join(&mut q.why, trimmed),
            In::Nothing => {}
        }
    }
    for (i, q) in out.iter().enumerate() {
        let letters: Vec<char> = q.choices.iter().map(|(l, _)| *l).collect();
        if q.choices.len() < 3 || !letters.contains(&q.answer) {
            bail!(
                "{}: question {} needs three choices or more, and an answer among them (has {:?}, answer {:?})",
                lesson.file,
                i + 1,
                letters,
                q.answer
            );
        }
    }
    Ok(out)
}

/// `text` after `first`, in lines of at most 80 columns, the next ones indented
/// as far as `first` is long.
/// `text` after `first`, in lines of 80 characters, the lines after the first
/// indented under it.
fn hang(first: &str, text: &str) -> String {
    let indent = " ".repeat(first.chars().count());
    let lines = crate::lesson::words_in_lines(text, 80usize.saturating_sub(indent.len()));
    format!("{first}{}", lines.join(&format!("\n{indent}")))
}

fn join(text: &mut String, more: &str) {
    text.push(' ');
    text.push_str(more);
}

/// How a quiz went.
pub struct Score {
    pub right: usize,
    pub of: usize,
}

/// Ask the questions of `lesson` and say after each whether it was right and
/// why. `given`: the answers as letters (`--answers bab`), for a script or
/// without a terminal; otherwise each is asked with a menu.
pub fn run(lesson: &Lesson, given: Option<&str>) -> Result<Score> {
    use colored::Colorize;
    let questions = questions(lesson)?;
    let given: Option<Vec<char>> = given.map(|g| {
        g.chars()
            .filter(|c| c.is_ascii_alphabetic())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    });
    if let Some(g) = &given {
        if g.len() != questions.len() {
            bail!(
                "lesson {} has {} questions: give one letter for each (--answers {})",
                lesson::number(lesson),
                questions.len(),
                "a".repeat(questions.len())
            );
        }
    } else if !super::interactive() {
        bail!(
            "lab quiz asks on a terminal; without one, give your answers as letters: lab quiz {} --answers {}",
            lesson::number(lesson),
            "a".repeat(questions.len())
        );
    }
    outln!(
        "{} ({} questions)\n",
        format!(
            "Quiz of lesson {}: {}",
            lesson::number(lesson),
            lesson::title(lesson)
        )
        .bold(),
        questions.len()
    );
    let mut right = 0;
    for (i, q) in questions.iter().enumerate() {
        // In full, wrapped; the menu below holds one line per choice (a line the
        // terminal wraps would confuse its redrawing).
        outln!("{}", hang(&format!("{}. ", i + 1), &super::plain(&q.text)));
        for (letter, text) in &q.choices {
            outln!("{}", hang(&format!("   {letter}) "), &super::plain(text)));
        }
        let chosen = match &given {
            Some(g) => {
                outln!("   your answer: {}", g[i]);
                g[i]
            }
            None => {
                let width = console::Term::stdout().size().1 as usize;
                let items: Vec<String> = q
                    .choices
                    .iter()
                    .map(|(l, t)| {
                        super::one_line(
                            &format!("{l}) {}", super::plain(t)),
                            width.saturating_sub(6),
                        )
                    })
                    .collect();
                let n = super::select("   your answer", &items, 0)?;
                q.choices[n].0
            }
        };
        if chosen == q.answer {
            right += 1;
            outln!("{}", "   Right.".green().bold());
        } else {
            let answer = q
                .choices
                .iter()
                .find(|(l, _)| *l == q.answer)
                .map(|(_, t)| super::plain(t))
                .unwrap_or_default();
            outln!("{}", "   Not quite.".red().bold());
            outln!(
                "{}",
                hang("   ", &format!("The answer is {}) {answer}.", q.answer))
            );
        }
        outln!("{}\n", hang("   ", &super::plain(&q.why)));
    }
    let score = Score {
        right,
        of: questions.len(),
    };
    let n = lesson::number(lesson);
    let verdict = if score.right == score.of {
        ". Well done.".to_string()
    } else {
        format!(": read the lesson again where you went wrong (lab lesson {n} --answers shows every answer), then lab quiz {n} again.")
    };
    outln!(
        "{}",
        hang(
            "",
            &format!("{} of {} right{verdict}", score.right, score.of)
        )
    );
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lesson has three questions or more, each with three choices or more
    /// and one right answer among them, and lab reads them all.
    #[test]
    fn every_lesson_has_a_quiz_that_parses() {
        for l in lesson::LESSONS {
            let qs = questions(l).unwrap();
            assert!(qs.len() >= 3, "{}: {} questions", l.file, qs.len());
            for q in &qs {
                assert!(q.text.ends_with('?'), "{}: {:?}", l.file, q.text);
                assert!(!q.why.is_empty(), "{}: {:?}", l.file, q.text);
                assert!(
                    q.choices.iter().all(|(_, t)| !t.contains("  ")),
                    "{}: {:?}",
                    l.file,
                    q.choices
                );
            }
        }
    }

    /// The right answers are spread over the letters, so that a reader cannot
    /// score by picking one: no lesson has all its answers at one letter, and
    /// across the lessons every letter that questions offer is the right one
    /// for a fair share (a fifth at least) of the questions that offer it, and
    /// none is the right one for half of all questions. A question is moved
    /// to another letter by reordering its choices, its answer's **x)** with it.
    #[test]
    fn the_right_answers_are_spread_over_the_letters() {
        use std::collections::BTreeMap;
        let (mut offered, mut right) = (BTreeMap::new(), BTreeMap::new());
        let mut all = 0;
        for l in lesson::LESSONS {
            let qs = questions(l).unwrap();
            let answers: String = qs.iter().map(|q| q.answer).collect();
            assert!(
                answers.chars().any(|c| c != qs[0].answer),
                "{}: every answer is {}) ({answers})",
                l.file,
                qs[0].answer
            );
            for q in &qs {
                for (letter, _) in &q.choices {
                    *offered.entry(*letter).or_insert(0) += 1;
                }
                *right.entry(q.answer).or_insert(0) += 1;
                all += 1;
            }
        }
        for (letter, of) in &offered {
            let n = right.get(letter).copied().unwrap_or(0);
            assert!(
                n * 5 >= *of,
                "{letter}) is the right answer of {n} of the {of} questions that offer it: {right:?}"
            );
            assert!(
                n * 2 < all,
                "{letter}) is the right answer of {n} of {all} questions: {right:?}"
            );
        }
    }

    #[test]
    fn a_question_reads_across_lines() {
        let l = Lesson {
            key: "t",
            file: "t.md",
            text: "# T\n\n## Questions\n\n1. Why\n   this?\n\n   - a) One\n   - b) Two,\n     long\n   - c) Three\n\n   <details><summary>Answer</summary>\n\n   **b)** Because\n   so.\n   </details>\n",
        };
        let q = questions(&l).unwrap();
        assert_eq!(
            q,
            vec![Question {
                text: "Why this?".into(),
                choices: vec![
                    ('a', "One".into()),
                    ('b', "Two, long".into()),
                    ('c', "Three".into())
                ],
                answer: 'b',
                why: "Because so.".into(),
            }]
        );
        let broken = Lesson {
            text: "# T\n\n## Questions\n\n1. Why?\n\n   - a) One\n   - b) Two\n\n   <details><summary>Answer</summary>\n\n   b, because.\n   </details>\n",
            ..l
        };
        assert!(questions(&broken)
            .unwrap_err()
            .to_string()
            .contains("**a)**"));
    }
}
