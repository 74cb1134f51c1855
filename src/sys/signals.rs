//! Signals: lab catches the ones that end a program, to tear its container
//! down itself, and passes SIGTERM and SIGHUP on to the container.

use anyhow::{Context, Result};
use nix::sys::signal::{self, SigHandler, Signal};
use std::sync::atomic::{AtomicI32, Ordering};

/// The last terminating signal lab received (0: none). Set by the handler below,
/// read by the loops that wait for children.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// The process that SIGTERM and SIGHUP are passed on to (0: none): lab's
/// container, or init's command. The handler passes them on itself: a signal
/// that came while the waiting loop was between two calls, not yet blocked in
/// waitpid, would otherwise be noted and never acted on.
static FORWARD: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(sig: nix::libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
    let to = FORWARD.load(Ordering::SeqCst);
    if to > 0 && (sig == nix::libc::SIGTERM || sig == nix::libc::SIGHUP) {
        // kill(2) is async-signal-safe; nix's wrapper allocates nothing.
        if let Ok(sig) = Signal::try_from(sig) {
            let _ = signal::kill(nix::unistd::Pid::from_raw(to), sig);
        }
    }
}

/// From now on, pass SIGTERM and SIGHUP on to `pid` the moment they come (None:
/// stop).
pub fn forward_to(pid: Option<nix::unistd::Pid>) {
    FORWARD.store(pid.map_or(0, |p| p.as_raw()), Ordering::SeqCst);
}

/// The signals that end a program by default, and that lab handles itself.
const TERMINATING: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Catch the terminating signals: remember them, and let blocking calls return
/// EINTR (no SA_RESTART) so lab can tear the container down itself.
pub fn catch_terminating_signals() -> Result<()> {
    // SAFETY (of the handler): it only stores into an atomic, which is async-signal-safe.
    set_handler(
        &TERMINATING,
        SigHandler::Handler(remember),
        signal::SaFlags::empty(),
    )
}

/// Put the default action back for the signals lab catches, before a command is
/// exec'd (a caught signal is reset by exec anyway; an ignored one would not be).
pub fn default_signals() {
    let _ = set_handler(&TERMINATING, SigHandler::SigDfl, signal::SaFlags::empty());
}

/// Ignore Ctrl-C and Ctrl-\\ while a program in the foreground gets them from the
/// terminal (as a shell does while it waits for a command).
pub fn ignore_keyboard_signals() -> Result<()> {
    set_handler(
        &[Signal::SIGINT, Signal::SIGQUIT],
        SigHandler::SigIgn,
        signal::SaFlags::empty(),
    )
}

/// Install `handler` for `signals`. Every handler passed here must be
/// async-signal-safe: `remember` and `nothing` in this file, SIG_DFL or SIG_IGN.
fn set_handler(signals: &[Signal], handler: SigHandler, flags: signal::SaFlags) -> Result<()> {
    let action = signal::SigAction::new(handler, flags, signal::SigSet::empty());
    for &sig in signals {
        // SAFETY: the handlers given to this private function are async-signal-safe
        // (see its comment), so running them at any point of the program is sound.
        unsafe { signal::sigaction(sig, &action) }.with_context(|| format!("sigaction({sig})"))?;
    }
    Ok(())
}

extern "C" fn nothing(_: nix::libc::c_int) {}

/// Make SIGCHLD interrupt blocking calls (poll, read) with EINTR, so that lab's
/// init reaps a child the moment it exits instead of at its next wake-up.
pub fn wake_on_child_exit() -> Result<()> {
    // The handler does nothing at all, which is async-signal-safe.
    set_handler(
        &[Signal::SIGCHLD],
        SigHandler::Handler(nothing),
        signal::SaFlags::SA_NOCLDSTOP,
    )
}

/// Take the pending signal, if any.
pub fn take_signal() -> Option<Signal> {
    match PENDING.swap(0, Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}
