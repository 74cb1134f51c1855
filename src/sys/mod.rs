//! Every `unsafe` block of lab lives in this folder, each with the reason it is
//! sound (main.rs denies `unsafe` everywhere else). Each file is one concern:
//! making processes (`process.rs`), signals (`signals.rs`), files
//! (`files.rs`), memory (`memory.rs`), System V IPC (`ipc.rs`), what a process
//! may do (`privileges.rs`). Callers name them all as `sys::...`.
//!
//! lab is single-threaded, which is what makes `fork` and `clone` safe to call here:
//! no other thread can hold a lock (of the allocator, of stdout) at the moment the
//! process is copied.

mod files;
mod ipc;
mod memory;
mod privileges;
mod process;
mod signals;

pub use files::{mount_id, open_by_handle, proc_stat, read_small, set_opaque, set_xattr, xattrs};
pub use ipc::{msg_queue_exists, msg_queue_remove, msgget_private};
pub use memory::fill_memory;
pub use privileges::{
    capset, clear_ambient, drop_bounding, load_seccomp, raise_ambient, seccomp_filters_of,
    try_finit_module, try_harmless, Harmless,
};
pub use process::{
    clone_into, close_inherited, fork, fork_into, set_claim_lock, set_process_name, spawn_sleeper,
};
pub use signals::{
    catch_terminating_signals, default_signals, forward_to, ignore_keyboard_signals, take_signal,
    wake_on_child_exit,
};
