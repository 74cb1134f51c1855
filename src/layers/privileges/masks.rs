//! Layer 8, part 4: masked and read-only paths in /proc and /sys. Next: `checks.rs`.
//!
//! /proc and /sys are windows into the one kernel every container shares. A pid
//! namespace gives /proc its own process list, but much else in it is the
//! machine's: /proc/kcore (the kernel's memory), /proc/keys, /proc/sys (the
//! kernel's settings, most of them machine-wide), /proc/sysrq-trigger (one byte
//! reboots the host). runc does three things, and lab the same:
//! - masks files by mounting /dev/null over them, and directories by an empty
//!   read-only tmpfs: they read as empty;
//! - makes a few paths read-only by bind-mounting each onto itself, then
//!   remounting that bind read-only;
//! - mounts /sys itself read-only.
//!
//! Paths that this kernel does not have are skipped (`[ ! -e P ] || ...`): which
//! exist depends on how the kernel was built.

use crate::engine::plan::{Action, RunContext};
use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// What runc masks by default (its `maskedPaths`): files, then directories.
pub const MASKED_FILES: [&str; 6] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
];
pub const MASKED_DIRS: [&str; 5] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// What runc makes read-only (its `readonlyPaths`).
pub const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `mount -t sysfs -o ro,nosuid,nodev,noexec sysfs DIR` (DIR: /sys, or the new
/// root's before pivot_root)
pub struct MountSys(pub std::path::PathBuf);
/// `[ ! -e P ] || mount --bind /dev/null P`
pub struct MaskFile(pub &'static str);
/// `[ ! -e P ] || mount -t tmpfs -o ro tmpfs P`
pub struct MaskDir(pub &'static str);
/// `[ ! -e P ] || { mount --bind P P && mount -o remount,bind,ro P; }`
pub struct ReadOnly(pub &'static str);

impl Action for MountSys {
    fn shell(&self) -> String {
        format!(
            "mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {}",
            crate::engine::plan::quote_path(&self.0)
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let at = crate::layers::mount::mount_point(&self.0)?;
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("sysfs"), &at, Some("sysfs"), flags, None::<&str>)
            .with_context(|| format!("mount(\"sysfs\", \"{}\", MS_RDONLY)", self.0.display()))
    }
}

impl Action for MaskFile {
    fn shell(&self) -> String {
        format!("[ ! -e {0} ] || mount --bind /dev/null {0}", self.0)
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        if !Path::new(self.0).exists() {
            return Ok(());
        }
        mount(
            Some("/dev/null"),
            self.0,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "mount(/dev/null, {}, MS_BIND) (is there a /dev/null in the root filesystem?)",
                self.0
            )
        })
    }
}

impl Action for MaskDir {
    fn shell(&self) -> String {
        format!("[ ! -e {0} ] || mount -t tmpfs -o ro tmpfs {0}", self.0)
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        if !Path::new(self.0).exists() {
            return Ok(());
        }
        mount(
            Some("tmpfs"),
            self.0,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .with_context(|| format!("mount(tmpfs, {}, MS_RDONLY)", self.0))
    }
}

impl Action for ReadOnly {
    fn shell(&self) -> String {
        format!(
            "[ ! -e {0} ] || {{ mount --bind {0} {0} && mount -o remount,bind,ro {0}; }}",
            self.0
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        if !Path::new(self.0).exists() {
            return Ok(());
        }
        // A bind mount shares the flags of what it binds: only a remount of the
        // bind itself can make this one place read-only.
        mount(
            Some(self.0),
            self.0,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("mount({0}, {0}, MS_BIND)", self.0))?;
        let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        mount(None::<&str>, self.0, None::<&str>, ro, None::<&str>)
            .with_context(|| format!("mount({}, MS_REMOUNT|MS_BIND|MS_RDONLY)", self.0))
    }
}
