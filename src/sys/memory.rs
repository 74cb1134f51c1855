//! Memory: a process that takes as much as it is told (layer 6's memory check
//! makes the kernel's out-of-memory killer act with it).

use anyhow::{bail, Result};
use nix::libc;

/// Map `len` bytes of private anonymous memory and write to each 4 KB page of
/// it, so that all of it is charged to this process's cgroup. The kernel may
/// back the mapping with 2 MB pages (MADV_HUGEPAGE): one fault each instead of
/// 512, which matters in a container whose CPU is limited too. The mapping is
/// never unmapped: this is for a child that exits right after.
pub fn fill_memory(len: usize) -> Result<()> {
    // SAFETY: a fresh private anonymous mapping of `len` bytes, written only
    // within it, and never unmapped while a pointer into it is used.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if map == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        libc::madvise(map, len, libc::MADV_HUGEPAGE);
        let bytes = map.cast::<u8>();
        for offset in (0..len).step_by(4096) {
            bytes.add(offset).write_volatile(1);
        }
    }
    Ok(())
}
