//! Files: small reads in one call, the mount a path is on, extended attributes
//! (overlayfs's opaque mark, layer 9's shifted copies), and a file opened by its
//! handle (an escape of the arc).

use anyhow::{bail, Result};

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

/// open_by_handle_at(2): open the file that a handle names (its type and its
/// bytes, as name_to_handle_at gives them or as someone makes them up) on the
/// filesystem that `mount_fd` is a file of. The kernel walks no path: this is
/// why it asks for CAP_DAC_READ_SEARCH.
pub fn open_by_handle(
    mount_fd: std::os::fd::BorrowedFd,
    handle_type: i32,
    handle: &[u8],
    flags: nix::fcntl::OFlag,
) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // struct file_handle: its size in bytes (u32), its type (int), the bytes;
    // in 32-bit words, for the struct's alignment.
    let mut words = vec![0u32; 2 + handle.len().div_ceil(4)];
    words[0] = handle.len() as u32;
    words[1] = handle_type as u32;
    for (i, chunk) in handle.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        words[2 + i] = u32::from_ne_bytes(w);
    }
    // SAFETY: `words` holds a struct file_handle whose handle_bytes bytes follow
    // its header, alive across the call; the kernel only reads it.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            words.as_ptr(),
            flags.bits(),
        )
    };
    if ret < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel just made this descriptor for this call; nothing else
    // owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(ret as i32) })
}

/// `/proc/PID/stat` (PID may be `self`), in one read.
pub fn proc_stat(pid: &str) -> Option<String> {
    read_small(std::path::Path::new(&format!("/proc/{pid}/stat")))
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

// Extended attributes (layer 9's shifted copies).

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
