//! System V message queues: the IPC object lab uses to show the ipc namespace.

use anyhow::{bail, Result};

/// A System V message queue, the IPC object lab uses to show the ipc namespace.
pub fn msgget_private() -> Result<i32> {
    // SAFETY: msgget takes plain integers and returns an id or -1.
    let id = unsafe { nix::libc::msgget(nix::libc::IPC_PRIVATE, nix::libc::IPC_CREAT | 0o600) };
    if id < 0 {
        bail!("msgget: {}", std::io::Error::last_os_error());
    }
    Ok(id)
}

/// Whether message queue `id` exists in this process's ipc namespace.
pub fn msg_queue_exists(id: i32) -> bool {
    // SAFETY: msqid_ds is plain old data, so all zeroes is a valid value, and msgctl
    // writes at most one msqid_ds into it.
    unsafe {
        let mut ds: nix::libc::msqid_ds = std::mem::zeroed();
        nix::libc::msgctl(id, nix::libc::IPC_STAT, &mut ds) == 0
    }
}

/// Remove message queue `id`.
pub fn msg_queue_remove(id: i32) {
    // SAFETY: IPC_RMID ignores the buffer argument, so NULL is allowed.
    unsafe {
        nix::libc::msgctl(id, nix::libc::IPC_RMID, std::ptr::null_mut());
    }
}
