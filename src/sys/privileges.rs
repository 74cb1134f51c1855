//! What a process may do (layer 8): capability sets, no_new_privs, seccomp
//! filters, and a process's filters read back through ptrace.

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;

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

/// A system call made so that it can do nothing: arguments the kernel rejects
/// (a null pointer, a descriptor of -1, unknown flags) once it has let the call
/// through. What comes back tells who stopped it: EPERM (a missing capability,
/// or a seccomp filter's answer), ENOSYS (a filter's answer for "no such call",
/// or a kernel without it), or the kernel's complaint about the arguments
/// (EFAULT, EBADF, EINVAL, ...): allowed.
#[derive(Clone, Copy, Debug)]
pub enum Harmless {
    /// mount(NULL, "/", NULL, 0, NULL): EINVAL (no filesystem type) once allowed.
    Mount,
    /// unshare(CLONE_NEWUSER) in this throwaway process: 0 once allowed.
    UnshareUser,
    /// keyctl(KEYCTL_GET_KEYRING_ID, 0, 0): EINVAL once allowed.
    Keyctl,
    /// bpf(BPF_PROG_LOAD, NULL, 0): EINVAL or EFAULT once allowed; EPERM also
    /// from kernel.unprivileged_bpf_disabled without CAP_BPF or CAP_SYS_ADMIN.
    Bpf,
    /// perf_event_open(NULL, 0, -1, -1, 0): EFAULT once allowed.
    PerfEventOpen,
    /// io_uring_setup(0, NULL): EINVAL or EFAULT once allowed.
    IoUringSetup,
    /// userfaultfd(UFFD_USER_MODE_ONLY and unknown flags): EINVAL once allowed
    /// (user mode only is what vm.unprivileged_userfaultfd=0 still lets through
    /// without CAP_SYS_PTRACE, so the answer is the filter's, not the sysctl's).
    Userfaultfd,
    /// open_by_handle_at(-1, NULL, 0): EBADF or EFAULT once allowed.
    OpenByHandleAt,
    /// clone3(NULL, 0): EINVAL once allowed.
    Clone3,
    /// finit_module(-1, "", 0): EBADF once allowed.
    FinitModule,
}

/// Make the call `call` and say what the kernel answered (Errno::UnknownErrno
/// for success).
pub fn try_harmless(call: Harmless) -> nix::errno::Errno {
    use nix::libc::{self, syscall};
    let null = std::ptr::null::<libc::c_void>();
    // SAFETY: every call below passes a null pointer, a descriptor of -1, a
    // size of 0 or flags the kernel rejects, so it reads and writes no memory
    // of this process and acts on nothing; unshare(CLONE_NEWUSER) changes only
    // this process (a probe that exits right after).
    let ret = unsafe {
        match call {
            Harmless::Mount => syscall(libc::SYS_mount, null, b"/\0".as_ptr(), null, 0, null),
            Harmless::UnshareUser => syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
            Harmless::Keyctl => syscall(libc::SYS_keyctl, 0, 0, 0),
            Harmless::Bpf => syscall(libc::SYS_bpf, 5, null, 0),
            Harmless::PerfEventOpen => syscall(libc::SYS_perf_event_open, null, 0, -1, -1, 0),
            Harmless::IoUringSetup => syscall(libc::SYS_io_uring_setup, 0, null),
            Harmless::Userfaultfd => syscall(libc::SYS_userfaultfd, 0x7ffe_0001),
            Harmless::OpenByHandleAt => syscall(libc::SYS_open_by_handle_at, -1, null, 0),
            Harmless::Clone3 => syscall(libc::SYS_clone3, null, 0),
            Harmless::FinitModule => syscall(libc::SYS_finit_module, -1, b"\0".as_ptr(), 0),
        }
    };
    if ret >= 0 {
        nix::errno::Errno::UnknownErrno
    } else {
        nix::errno::Errno::last()
    }
}
