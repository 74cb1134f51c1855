//! The user namespace layer's option on lab's command line (`--id-range`),
//! flattened into every subcommand that builds a step (cli.rs), and checked
//! here against the step. The same struct is what the layer keeps in the Spec.

use super::range::Range;
use super::LAYER;
use anyhow::{bail, Result};

/// What the student asked of the user namespace.
#[derive(clap::Args, Clone, Debug, Default)]
#[group(id = "userns")]
pub struct Options {
    /// Step 9, lab explain and lab script: print the commands for this range of
    /// host IDs, BASE:COUNT, as another machine would take it [default: the one
    /// lab takes here: the lab line of /etc/subuid and /etc/subgid, else the first
    /// free one of 100000, 200000, ...]
    #[arg(long, value_name = "BASE:COUNT", value_parser = Range::parse)]
    pub id_range: Option<Range>,
}

impl Options {
    /// Before this layer's step nothing is mapped; `for_real` (lab step, lab
    /// verify), the range is this machine's: its /etc/subuid and /etc/subgid say
    /// which, where useradd sees it too.
    pub fn check(&self, step: u8, for_real: bool) -> Result<()> {
        let userns = LAYER.number;
        if self.id_range.is_none() {
            return Ok(());
        }
        if step < userns {
            bail!("--id-range belongs to step {userns} (user namespace)");
        }
        if for_real {
            bail!("--id-range chooses what lab explain and lab script print: lab step takes the lab line of /etc/subuid and /etc/subgid (add one, lab:BASE:COUNT in both, to choose), else a free range");
        }
        if crate::dirs::rootless() {
            bail!("--id-range is for lab with sudo: without root lab maps your own user, the one ID a user may map by itself");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_range_only_prints_step_9() {
        let asked = Options {
            id_range: Some(Range::parse("200000:65536").unwrap()),
        };
        assert!(Options::default().check(9, true).is_ok());
        let e = asked.check(8, false).unwrap_err().to_string();
        assert!(e.contains("belongs to step 9"), "{e}");
        let e = asked.check(9, true).unwrap_err().to_string();
        assert!(e.contains("lab step takes the lab line"), "{e}");
        // Without root lab maps the user's own ID: no range to print.
        assert_eq!(asked.check(9, false).is_ok(), !crate::dirs::rootless());
    }
}
