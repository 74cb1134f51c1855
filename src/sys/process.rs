//! Making processes: clone(2) into new namespaces (and clone3(2) into a
//! cgroup), fork(2), sleepers that share lab's memory, what a child closes of
//! lab's, and the name a process shows in `ps`.

use super::proc_stat;
use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// `clone(2)` used like `fork(2)`, but the child starts in the new namespaces named by
/// `flags`. With `CLONE_NEWPID` the child is PID 1 of the new pid namespace, which is
/// why lab does not need the extra process that `unshare --fork` makes.
///
/// With `cgroup`, a cgroup v2 directory, the child is born in that cgroup, and
/// in the namespaces `at_birth` names too (those it would otherwise make once
/// it is there, a cgroup namespace):
/// `clone3(2)` with `CLONE_INTO_CGROUP` (Linux 5.7). Moving a process there
/// afterwards through `cgroup.procs` takes a machine-wide lock whose writer waits
/// for an RCU grace period (about 10 ms here, each time); a process born there
/// is counted in at fork, under the lock's cheap reader side. Should clone3
/// refuse (an older kernel), the child is born where lab is, and joins as a
/// shell would. Says which happened (in both processes).
pub fn clone_into(
    flags: CloneFlags,
    cgroup: Option<(&Path, CloneFlags)>,
) -> Result<(ForkResult, bool)> {
    flush_stdio();
    if let Some((dir, at_birth)) = cgroup {
        if let Ok(forked) = clone3_into_cgroup(flags | at_birth, dir) {
            return Ok((forked, true));
        }
    }
    // SAFETY: a NULL stack makes clone behave like fork: the child continues on a
    // copy-on-write copy of the caller's stack. lab is single-threaded (see
    // sys/mod.rs), so the child inherits no lock held by another thread. SIGCHLD makes
    // the child reapable with waitpid like a forked one.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_clone,
            (flags.bits() | nix::libc::SIGCHLD) as nix::libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(std::io::Error::last_os_error()).context(format!("clone({flags:?})")),
        0 => {
            drop_claim_lock();
            Ok((ForkResult::Child, false))
        }
        pid => Ok((
            ForkResult::Parent {
                child: Pid::from_raw(pid as i32),
            },
            false,
        )),
    }
}

/// `struct clone_args` of linux/sched.h, up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone3_into_cgroup(flags: CloneFlags, dir: &Path) -> Result<ForkResult> {
    // The directory's descriptor names the cgroup; the kernel checks that the
    // caller may move a process there, as for a write to its cgroup.procs.
    let cgroup = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: nix::libc::SIGCHLD as u64,
        cgroup: std::os::fd::AsRawFd::as_raw_fd(&cgroup) as u64,
        ..CloneArgs::default()
    };
    // SAFETY: as for clone below: no stack given (stack and stack_size 0), so the
    // child goes on like a forked one on a copy of the caller's stack; lab is
    // single-threaded. `args` lives across the call and its size is passed.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(std::io::Error::last_os_error()).context("clone3(CLONE_INTO_CGROUP)"),
        0 => {
            drop_claim_lock();
            Ok(ForkResult::Child)
        }
        pid => Ok(ForkResult::Parent {
            child: Pid::from_raw(pid as i32),
        }),
    }
}

/// `fork(2)`; with `cgroup`, a cgroup v2 directory, the child is born in it, as
/// in [`clone_into`] (or, should clone3 refuse, born where lab is). Says which.
pub fn fork_into(cgroup: Option<&Path>) -> Result<(ForkResult, bool)> {
    if let Some(dir) = cgroup {
        flush_stdio();
        if let Ok(forked) = clone3_into_cgroup(CloneFlags::empty(), dir) {
            return Ok((forked, true));
        }
    }
    Ok((fork()?, false))
}

/// Plain `fork(2)`.
pub fn fork() -> Result<ForkResult> {
    flush_stdio();
    // SAFETY: lab is single-threaded (see sys/mod.rs); the child only calls
    // async-signal-safe code or our own code that holds no inherited lock.
    let forked = unsafe { nix::unistd::fork() }.context("fork")?;
    if let ForkResult::Child = forked {
        drop_claim_lock();
    }
    Ok(forked)
}

/// A process that shares this one's memory (clone with CLONE_VM, as vfork
/// does) and does nothing but wait (pause) until a signal kills it: the kernel
/// copies no page tables, so making many is quick even in a container whose CPU
/// is limited. Its stack (16 KB) is never freed, since it must outlast the
/// process: this is for a short-lived process that makes sleepers and exits.
pub fn spawn_sleeper() -> nix::Result<Pid> {
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; 16 * 1024]);
    let sleep = Box::new(|| loop {
        nix::unistd::pause();
    });
    // SAFETY: the new process runs only pause() on a stack of its own, which is
    // never freed, so it stays valid for as long as the process lives.
    unsafe { nix::sched::clone(sleep, stack, CloneFlags::CLONE_VM, Some(nix::libc::SIGCHLD)) }
}

/// The descriptor of the lock this lab holds on its container's owner file
/// (state::Claim), or -1.
static CLAIM_LOCK: AtomicI32 = AtomicI32::new(-1);

/// Note the descriptor of the claim's lock, for children to close.
pub fn set_claim_lock(fd: std::os::fd::RawFd) {
    CLAIM_LOCK.store(fd, Ordering::SeqCst);
}

/// In a child lab forked or cloned: close the copy of the claim's lock. A flock
/// lasts while any copy of its descriptor is open: without this, a lab killed
/// with kill -9 would look alive for as long as its container's init lives.
/// (Children never run the claim's destructor: they exec or `exit`.)
fn drop_claim_lock() {
    let fd = CLAIM_LOCK.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: the descriptor is this child's copy of the claim's, which
        // nothing in the child uses.
        unsafe {
            nix::libc::close(fd);
        }
    }
}

/// Close every descriptor above stderr (in a child that goes on alone: the
/// locks lab holds are flocks on open files, which a child's copy would keep).
pub fn close_inherited() {
    // SAFETY: close_range only closes descriptors of this process; the child that
    // calls it uses none of them afterwards (it opens what it needs anew).
    unsafe {
        nix::libc::close_range(3, u32::MAX, 0);
    }
}

fn flush_stdio() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// Call this process `name` in `ps`: its command name (PR_SET_NAME: what `ps -o
/// comm`, `top` and /proc/PID/comm show) and its command line (what `ps` shows by
/// default, from /proc/PID/cmdline), written over the memory that holds the
/// process's arguments, as setproctitle(3) does. Both stay until the next exec.
pub fn set_process_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
    // Fields 48 and 49 of /proc/self/stat: where the arguments start and end.
    let Some(stat) = proc_stat("self") else {
        return;
    };
    let Some((_, after)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return;
    };
    if end <= start {
        return;
    }
    let bytes = name.as_bytes();
    let n = bytes.len().min(end - start - 1);
    // SAFETY: [start, end) is this process's argument area as the kernel reports
    // it: mapped, writable (it lies in the initial stack) and ours alone (lab is
    // single-threaded). What is written keeps it a list of NUL-terminated
    // strings: the name, then NUL bytes, so anything that still points into it
    // (std's copy of argv) reads valid, shorter, C strings.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area[..n].copy_from_slice(&bytes[..n]);
        area[n..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    /// clone3 reads as many bytes as it is told: 88 is CLONE_ARGS_SIZE_VER2, the
    /// first size with `cgroup`.
    #[test]
    fn clone_args_are_the_kernels_size_with_cgroup() {
        assert_eq!(std::mem::size_of::<super::CloneArgs>(), 88);
        assert_eq!(std::mem::offset_of!(super::CloneArgs, cgroup), 80);
    }
}
