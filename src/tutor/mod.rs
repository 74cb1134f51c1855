//! The tutor: what guides a student who has nobody to ask, in the terminal.
//!
//! - `menu.rs`: `lab` with no arguments on a terminal, a menu of what to do next;
//! - `quiz.rs`: `lab quiz N`, the questions of lesson N as multiple choice;
//! - `hint.rs`: `lab hint N`, the next level of help for a failed check;
//! - `completions.rs`: `lab completions bash|zsh|fish`.
//!
//! The prompts are dialoguer's. In raw mode the terminal sends no SIGINT for
//! Ctrl-C: the `console` crate under dialoguer reads the ^C and raises SIGINT in
//! this process, and with lab's handler installed the prompt returns an error
//! instead of the process dying; [`select`] then shows the cursor again and
//! returns [`Stopped`].

pub mod completions;
pub mod hint;
pub mod menu;
pub mod quiz;

pub use crate::engine::prompt::{interactive, one_line, plain, select, Stopped};
