//! The device nodes a container may have: one table, below the layers, for
//! layer 2's own /dev (layers/mount/dev.rs), the default root filesystem's /dev
//! (step 1 has no other) and the image unpacker (which makes these and skips
//! every other node).

/// The character devices of every container: name, major, minor (Linux's
/// devices.txt), and what it is. None of them reaches a disk, memory or another
/// process.
pub const DEVICES: [(&str, u64, u64, &str); 6] = [
    (
        "null",
        1,
        3,
        "null: swallows what is written (2>/dev/null), reads as empty",
    ),
    ("zero", 1, 5, "zero: reads as zero bytes without end"),
    (
        "full",
        1,
        7,
        "full: every write fails with ENOSPC (no space left), to test programs",
    ),
    ("random", 1, 8, "random: the kernel's random bytes"),
    ("urandom", 1, 9, "urandom: the same, never blocking"),
    (
        "tty",
        5,
        0,
        "tty: whatever terminal the process has (its controlling terminal)",
    ),
];
