//! Every `unsafe` block of lab lives in this file, each with the reason it is sound.
//!
//! lab is single-threaded, which is what makes `fork` and `clone` safe to call here:
//! no other thread can hold a lock (of the allocator, of stdout) at the moment the
//! process is copied.

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// `clone(2)` used like `fork(2)`, but the child starts in the new namespaces named by
/// `flags`. With `CLONE_NEWPID` the child is PID 1 of the new pid namespace, which is
/// why lab does not need the extra process that `unshare --fork` makes.
///
/// With `cgroup`, a cgroup v2 directory, the child is born in that cgroup:
/// `clone3(2)` with `CLONE_INTO_CGROUP` (Linux 5.7). Moving a process there
/// afterwards through `cgroup.procs` takes a machine-wide lock whose writer waits
/// for an RCU grace period (about 10 ms here, each time); a process born there
/// is counted in at fork, under the lock's cheap reader side. Should clone3
/// refuse (an older kernel), the child is born where lab is, and joins as a
/// shell would: [`born_in_cgroup`] says which happened.
pub fn clone_into(flags: CloneFlags, cgroup: Option<&Path>) -> Result<ForkResult> {
    flush_stdio();
    if let Some(dir) = cgroup {
        if let Ok(forked) = clone3_into_cgroup(flags, dir) {
            BORN_IN_CGROUP.store(true, Ordering::SeqCst);
            return Ok(forked);
        }
    }
    // SAFETY: a NULL stack makes clone behave like fork: the child continues on a
    // copy-on-write copy of the caller's stack. lab is single-threaded (see the module
    // comment), so the child inherits no lock held by another thread. SIGCHLD makes
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
            Ok(ForkResult::Child)
        }
        pid => Ok(ForkResult::Parent {
            child: Pid::from_raw(pid as i32),
        }),
    }
}

/// Whether this run's container's first process was born in its cgroup by
/// [`clone_into`] (known to lab and to that process), so that joining it is done.
pub fn born_in_cgroup() -> bool {
    BORN_IN_CGROUP.load(Ordering::SeqCst)
}

static BORN_IN_CGROUP: AtomicBool = AtomicBool::new(false);

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
    // SAFETY: lab is single-threaded (see the module comment); the child only calls
    // async-signal-safe code or our own code that holds no inherited lock.
    let forked = unsafe { nix::unistd::fork() }.context("fork")?;
    if let ForkResult::Child = forked {
        drop_claim_lock();
    }
    Ok(forked)
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

/// A small file (at most 4 KB) in one read: `/proc/PID/stat`, which the kernel
/// makes whole at once, and lab's state files. lab reads them for every running
/// container at each start, where `read_to_string` would take a statx and two
/// reads, or six reads of a growing buffer for a file of /proc.
pub fn read_small(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    String::from_utf8(buf[..n].to_vec()).ok()
}

/// The ID of the mount that `path` is on (statx with STATX_MNT_ID, Linux 5.8),
/// without following a symlink at its end: two paths on the same mount have the
/// same ID, and a directory something is mounted on has the ID of what is mounted.
pub fn mount_id(path: &std::path::Path) -> Option<u64> {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `c` is a NUL-terminated path alive for the call, and `buf` a statx
    // buffer of the right size for the kernel to fill.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            buf.as_mut_ptr(),
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: zeroed, then filled by the kernel: every field is a plain integer.
    let s = unsafe { buf.assume_init() };
    (s.stx_mask & libc::STATX_MNT_ID != 0).then_some(s.stx_mnt_id)
}

/// `/proc/PID/stat` (PID may be `self`), in one read.
pub fn proc_stat(pid: &str) -> Option<String> {
    read_small(std::path::Path::new(&format!("/proc/{pid}/stat")))
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

/// Mark directory `dir` opaque for overlayfs (`trusted.overlay.opaque=y`): nothing
/// of the same directory in the layers below shows through it.
pub fn set_opaque(dir: std::os::fd::BorrowedFd) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the name is a NUL-terminated literal, the value points to one valid
    // byte whose length is passed, and fsetxattr only reads them.
    let ret = unsafe {
        nix::libc::fsetxattr(
            dir.as_raw_fd(),
            b"trusted.overlay.opaque\0".as_ptr().cast(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if ret != 0 {
        bail!("fsetxattr: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

// ── Capabilities, no_new_privs, seccomp (layer 8) ───────────────────────────────

/// capset(2)'s header and its two data words (capabilities 0-31 and 32-63):
/// linux/capability.h, version 3.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: nix::libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Set this process's effective, permitted and inheritable capability sets
/// (bit N is capability N). A set can only shrink, unless CAP_SETPCAP says more.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let word = |set: u64, i: usize| (set >> (32 * i)) as u32;
    let data: [CapData; 2] = std::array::from_fn(|i| CapData {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    // SAFETY: the header and the two data words are laid out as capset(2) reads
    // them (repr(C), version 3 takes exactly two), and both live across the call.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if ret != 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Remove capability `cap` from this process's bounding set: no exec can give it
/// back (needs CAP_SETPCAP).
pub fn drop_bounding(cap: u32) -> Result<()> {
    // SAFETY: prctl with PR_CAPBSET_DROP reads only its integer arguments.
    let ret = unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAPBSET_DROP,
            cap as nix::libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret != 0 {
        bail!(
            "prctl(PR_CAPBSET_DROP, {cap}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Empty this process's ambient capability set.
pub fn clear_ambient() -> Result<()> {
    // SAFETY: prctl with PR_CAP_AMBIENT reads only its integer arguments.
    let ret = unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAP_AMBIENT,
            nix::libc::PR_CAP_AMBIENT_CLEAR_ALL as nix::libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret != 0 {
        bail!(
            "prctl(PR_CAP_AMBIENT_CLEAR_ALL): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Raise capability `cap` in this process's ambient set (it must be permitted
/// and inheritable).
pub fn raise_ambient(cap: u32) -> Result<()> {
    // SAFETY: prctl with PR_CAP_AMBIENT reads only its integer arguments.
    let ret = unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAP_AMBIENT,
            nix::libc::PR_CAP_AMBIENT_RAISE as nix::libc::c_ulong,
            cap as nix::libc::c_ulong,
            0,
            0,
        )
    };
    if ret != 0 {
        bail!(
            "prctl(PR_CAP_AMBIENT_RAISE, {cap}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Install a seccomp filter (classic BPF) on this process: from now on the kernel
/// runs it on every system call. Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load_seccomp(program: &[nix::libc::sock_filter]) -> Result<()> {
    let prog = nix::libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut nix::libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, which outlives the call, with its
    // length; seccomp(2) only reads it (and copies the program into the kernel).
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_seccomp,
            nix::libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const nix::libc::sock_fprog,
        )
    };
    if ret != 0 {
        bail!(
            "seccomp(SECCOMP_SET_MODE_FILTER): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// ptrace's request for a process's seccomp filters (linux/ptrace.h).
const PTRACE_SECCOMP_GET_FILTER: nix::libc::c_uint = 0x420c;

/// The seccomp filters of process `pid`, oldest first, as the kernel holds them:
/// ptrace stops the process for a moment (PTRACE_SEIZE, PTRACE_INTERRUPT), asks
/// for each filter (PTRACE_SECCOMP_GET_FILTER, which checkpointing tools like
/// CRIU use), and lets it go on. Needs CAP_SYS_ADMIN.
pub fn seccomp_filters_of(pid: Pid) -> Result<Vec<Vec<nix::libc::sock_filter>>> {
    use nix::sys::ptrace;
    ptrace::seize(pid, ptrace::Options::empty())
        .with_context(|| format!("ptrace(PTRACE_SEIZE, {pid})"))?;
    let result = (|| -> Result<Vec<Vec<nix::libc::sock_filter>>> {
        ptrace::interrupt(pid).context("ptrace(PTRACE_INTERRUPT)")?;
        nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL))
            .context("waiting for the traced process to stop")?;
        let mut filters = Vec::new();
        for index in 0.. {
            // SAFETY: with a NULL buffer, PTRACE_SECCOMP_GET_FILTER only returns
            // the filter's length in instructions; it writes nothing.
            let len = unsafe {
                nix::libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid.as_raw(),
                    index as nix::libc::c_long,
                    std::ptr::null_mut::<nix::libc::c_void>(),
                )
            };
            if len < 0 {
                match nix::errno::Errno::last() {
                    // Past the oldest filter (or no filter at all).
                    nix::errno::Errno::ENOENT => break,
                    // No seccomp at all.
                    nix::errno::Errno::EINVAL if index == 0 => break,
                    e => bail!("ptrace(PTRACE_SECCOMP_GET_FILTER, {pid}, {index}): {e}"),
                }
            }
            let mut program = vec![
                nix::libc::sock_filter {
                    code: 0,
                    jt: 0,
                    jf: 0,
                    k: 0
                };
                len as usize
            ];
            // SAFETY: the buffer holds `len` instructions, the filter's length the
            // kernel just gave; the process is stopped, so its filters cannot change.
            let got = unsafe {
                nix::libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    pid.as_raw(),
                    index as nix::libc::c_long,
                    program.as_mut_ptr().cast::<nix::libc::c_void>(),
                )
            };
            if got != len {
                bail!(
                    "ptrace(PTRACE_SECCOMP_GET_FILTER, {pid}, {index}): {}",
                    std::io::Error::last_os_error()
                );
            }
            filters.push(program);
        }
        // Index 0 is the newest: install them oldest first, as they were.
        filters.reverse();
        Ok(filters)
    })();
    let _ = ptrace::detach(pid, None);
    result
}

/// finit_module(2) with no module (file descriptor -1): the kernel checks the
/// right to load kernel code (CAP_SYS_MODULE, and any seccomp filter) before it
/// looks at the file. EBADF: allowed; EPERM: not. Loads nothing either way.
pub fn try_finit_module() -> nix::errno::Errno {
    // SAFETY: finit_module with fd -1 fails with EPERM or EBADF before reading its
    // (empty, NUL-terminated) parameter string.
    let ret = unsafe { nix::libc::syscall(nix::libc::SYS_finit_module, -1, b"\0".as_ptr(), 0) };
    if ret == 0 {
        nix::errno::Errno::UnknownErrno
    } else {
        nix::errno::Errno::last()
    }
}

// ── Extended attributes (layer 9's shifted copies) ──────────────────────────────

/// The extended attributes of `path` (not following a symlink), by name.
pub fn xattrs(path: &std::path::Path) -> Result<Vec<(std::ffi::CString, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated and `names` is a writable buffer of the length
    // passed; llistxattr writes at most that many bytes.
    let len = unsafe { nix::libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(nix::libc::ENOTSUP) {
            return Ok(vec![]);
        }
        bail!("llistxattr {}: {e}", path.display());
    }
    let mut out = Vec::new();
    for name in names[..len as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let name = std::ffi::CString::new(name)?;
        let mut value = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated, `value` is writable for the
        // length passed, and lgetxattr writes at most that many bytes.
        let got = unsafe {
            nix::libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if got < 0 {
            bail!(
                "lgetxattr {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        value.truncate(got as usize);
        out.push((name, value));
    }
    Ok(out)
}

/// Set an extended attribute of `path` (not following a symlink).
pub fn set_xattr(path: &std::path::Path, name: &std::ffi::CStr, value: &[u8]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: both strings are NUL-terminated; lsetxattr reads `value.len()` bytes
    // of `value`, which is that long.
    let ret = unsafe {
        nix::libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret != 0 {
        bail!(
            "lsetxattr {} {:?}: {}",
            path.display(),
            name,
            std::io::Error::last_os_error()
        );
    }
    Ok(())
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
