//! Printing that a closed pipe or terminal does not stop (the outln! and
//! errln! macros of main.rs): below everything else, so that every part may print.

/// Write to stdout, ignoring errors: a reader that went away (`lab step 7 | head`)
/// must not stop lab halfway through building or tearing down a container.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Write to stderr, ignoring errors, for the same reason.
pub fn err(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
