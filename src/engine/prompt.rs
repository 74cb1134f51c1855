//! A choice asked on the terminal, for the engine's `--walk` (walk.rs) and the
//! tutor's menu and quiz (tutor/).
//!
//! The prompts are dialoguer's. In raw mode the terminal sends no SIGINT for
//! Ctrl-C: the `console` crate under dialoguer reads the ^C and raises SIGINT in
//! this process, and with lab's handler installed the prompt returns an error
//! instead of the process dying; [`select`] then shows the cursor again and
//! returns [`Stopped`].

use anyhow::Result;
use std::io::IsTerminal;

/// Ctrl-C or Esc at a prompt.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "stopped at a prompt (Ctrl-C or Esc)")
    }
}

impl std::error::Error for Stopped {}

/// A person at a terminal: both standard input and output are one.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Markdown's marks (backticks, bold, emphasis) off a line, for a prompt that
/// cannot style.
pub fn plain(text: &str) -> String {
    text.replace(['*', '`'], "")
}

/// `text` cut to `width` columns, with an ellipsis where it was cut.
pub fn one_line(text: &str, width: usize) -> String {
    match text.char_indices().nth(width.max(8) - 1) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// One choice of `items`, asked with a menu on the terminal (arrow keys and
/// Enter; Esc, q or Ctrl-C stop). Returns its index.
pub fn select(prompt: &str, items: &[String], default: usize) -> Result<usize> {
    crate::sys::catch_terminating_signals()?;
    let theme = dialoguer::theme::ColorfulTheme::default();
    let chosen = dialoguer::Select::with_theme(&theme)
        .with_prompt(prompt)
        .items(items)
        .default(default)
        .interact_opt();
    match chosen {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(Stopped.into()),
        Err(_) => {
            // The cursor stays hidden when a prompt is interrupted.
            let _ = console::Term::stdout().show_cursor();
            let _ = console::Term::stderr().show_cursor();
            let _ = crate::sys::take_signal();
            Err(Stopped.into())
        }
    }
}
