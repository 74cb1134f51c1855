//! `lab rootfs [--from SOURCE]`: build the default root filesystem.

use super::need_root;
use crate::rootfs;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(from: rootfs::Source) -> Result<ExitCode> {
    need_root("rootfs")?;
    let path = rootfs::default_path();
    let how = rootfs::build(&path, from, true)?;
    outln!("Root filesystem ready in {}: {how}", path.display());
    Ok(ExitCode::SUCCESS)
}
