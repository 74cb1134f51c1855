//! Which steps a student has completed, for `lab steps` and `lab next`.
//!
//! A plain text file, `progress` in lab's home (LAB_HOME, by default
//! /var/lib/lab/progress), one line per completed step:
//!
//! ```text
//! step 3 completed 2026-11-23 10:41:07 UTC
//! ```
//!
//! A step is completed when `lab step N`, `lab verify N` or `lab check N` (a
//! container typed by hand) ran the checks of step N and none failed. Each `lab
//! quiz N` adds its score, the last one counting:
//!
//! ```text
//! quiz 3 scored 2/3 2026-11-29 18:02:11 UTC
//! ```
//!
//! Delete the file, or a line of it, to start over.

use anyhow::{Context, Result};
use std::path::PathBuf;

pub fn path() -> PathBuf {
    crate::dirs::home().join("progress")
}

/// The completed steps, in order.
pub fn completed() -> Vec<u8> {
    let text = std::fs::read_to_string(path()).unwrap_or_default();
    let mut steps: Vec<u8> = text
        .lines()
        .filter_map(|l| l.strip_prefix("step ")?.split(' ').next()?.parse().ok())
        .collect();
    steps.sort();
    steps.dedup();
    steps
}

/// Note step `n` as completed (once).
pub fn record(n: u8) -> Result<()> {
    if completed().contains(&n) {
        return Ok(());
    }
    append(&format!("step {n} completed {}\n", now()))
}

/// The last score of each lesson's quiz: (lesson, right, questions).
pub fn quizzes() -> Vec<(u8, usize, usize)> {
    let text = std::fs::read_to_string(path()).unwrap_or_default();
    let mut last: std::collections::BTreeMap<u8, (usize, usize)> = Default::default();
    for line in text.lines() {
        let mut w = line.split(' ');
        if w.next() != Some("quiz") {
            continue;
        }
        let lesson = w.next().and_then(|n| n.parse().ok());
        let score = w
            .nth(1)
            .and_then(|s| s.split_once('/'))
            .and_then(|(r, o)| Some((r.parse().ok()?, o.parse().ok()?)));
        if let (Some(l), Some(s)) = (lesson, score) {
            last.insert(l, s);
        }
    }
    last.into_iter().map(|(l, (r, o))| (l, r, o)).collect()
}

/// Note a quiz's score.
pub fn record_quiz(lesson: u8, right: usize, of: usize) -> Result<()> {
    append(&format!("quiz {lesson} scored {right}/{of} {}\n", now()))
}

fn append(line: &str) -> Result<()> {
    let file = path();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    std::io::Write::write_all(&mut f, line.as_bytes())
        .with_context(|| format!("writing {}", file.display()))
}

/// The time now, as `YYYY-MM-DD HH:MM:SS UTC`.
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 as a date of the Gregorian calendar (Howard Hinnant's
/// algorithm: eras of 400 years, years starting in March).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(super::civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
