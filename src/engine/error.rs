//! An error that says what to do next. A student reads `lab: WHAT` and, on the
//! line below, `hint: WHAT TO DO`; the hint travels as data beside the error,
//! never as text appended to it and searched for again.

use std::fmt;

/// An error with the advice that goes with it. Shown by `main` as
/// `lab: {error}` and `  hint: {hint}`.
#[derive(Debug)]
pub struct Hinted {
    pub error: anyhow::Error,
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only this error's own message: its causes follow as its sources, so
        // that `{e:#}` prints the whole chain once.
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.chain().nth(1)
    }
}

/// The hint of an error, wherever in its chain of contexts it was given.
pub fn hint_of(e: &anyhow::Error) -> Option<&str> {
    e.chain()
        .find_map(|c| c.downcast_ref::<Hinted>())
        .map(|h| h.hint.as_str())
}

/// `error`, carrying `hint`.
pub fn hinted(error: anyhow::Error, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error,
        hint: hint.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_hint_survives_later_contexts_and_prints_no_twice() {
        let e = anyhow::anyhow!("pivot_root: EINVAL").context("changing the root");
        let e: anyhow::Result<()> = Err(hinted(e, "make / private first"));
        let e = e.context("step 2").unwrap_err();
        assert_eq!(hint_of(&e), Some("make / private first"));
        assert_eq!(
            format!("{e:#}"),
            "step 2: changing the root: pivot_root: EINVAL"
        );
        assert_eq!(hint_of(&anyhow::anyhow!("plain")), None);
    }
}
