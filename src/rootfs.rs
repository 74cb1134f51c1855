//! The default root filesystem, built from what the host already has: no download.
//!
//! With busybox-static installed, one static binary plays every command (`ls`,
//! `sh`, `mount`, ...) through symlinks. Without it, lab copies host programs, and
//! then a program alone is not enough: a dynamically linked program needs its
//! shared libraries and the dynamic loader at the same paths inside the new root,
//! so lab copies every file `ldd` names. That is the lesson of step 1: a container's
//! root filesystem must hold everything its programs open.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// busybox if it is installed, else host programs
    Auto,
    /// the host's busybox (apt-get install busybox-static)
    Busybox,
    /// host programs and the libraries ldd names
    Host,
}

/// The programs copied from the host when there is no busybox: enough for a shell
/// session and for every command `lab script` runs inside.
const HOST_PROGRAMS: &[&str] = &[
    "bash", "ls", "cat", "echo", "mkdir", "rmdir", "rm", "cp", "mv", "ln", "touch", "sleep",
    "true", "false", "env", "id", "uname", "hostname", "mount", "umount", "ps", "ipcs", "grep",
    "head", "readlink", "stat",
];

pub fn default_path() -> PathBuf {
    crate::dirs::home().join("rootfs")
}

/// The default root filesystem, built on first use.
/// Empty on purpose: from step 5, each container mounts its own over them.
const MOUNT_POINTS: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

pub fn ensure_default() -> Result<PathBuf> {
    let path = default_path();
    if !path.join("bin").is_dir() {
        // On stderr: stdout may be JSON (lab verify --json).
        errln!(
            "Building the default root filesystem in {} (once).",
            path.display()
        );
        let how = build(&path, Source::Auto, false)?;
        errln!("{how}");
    }
    // Made by an older lab: add the mount points of step 5, the tools of step 8.
    for file in MOUNT_POINTS {
        let f = path.join(file);
        if f.symlink_metadata().is_err() {
            std::fs::write(&f, "").with_context(|| format!("creating {}", f.display()))?;
        }
    }
    // (busybox's applets of the same names are links: not the tools.)
    let missing = STEP_8_TOOLS.iter().any(|t| {
        which(t).is_some()
            && !std::fs::symlink_metadata(path.join("usr/bin").join(t)).is_ok_and(|m| m.is_file())
    });
    if missing {
        add_step_8_tools(&path)?;
    }
    Ok(path)
}

/// What the last line of step 8 runs, typed by hand (lab itself needs neither):
/// util-linux's setpriv (busybox's cannot cut the bounding set) and bubblewrap's
/// bwrap (it loads a seccomp filter). After pivot_root only the container's files
/// exist, so they must be in its root filesystem, with their libraries.
pub const STEP_8_TOOLS: [&str; 2] = ["setpriv", "bwrap"];

/// Copy the tools of step 8 that the host has into `root`, over busybox's links
/// of the same name. Returns how many went in.
fn add_step_8_tools(root: &Path) -> Result<usize> {
    let mut added = 0;
    for tool in STEP_8_TOOLS {
        let Some(program) = which(tool) else { continue };
        // busybox's applet of the same name does less (no --bounding-set).
        let real = program.canonicalize().unwrap_or_else(|_| program.clone());
        if real.file_name().is_some_and(|n| n == "busybox") {
            continue;
        }
        let at = Path::new("/usr/bin").join(tool);
        let dest = root.join(at.strip_prefix("/")?);
        // busybox's applet link: copying onto it would overwrite busybox itself.
        if dest.symlink_metadata().is_ok() {
            std::fs::remove_file(&dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        install_with_libs(&program, root, &at)?;
        added += 1;
    }
    Ok(added)
}

/// Build a root filesystem at `dest`. Returns a one-line description of what
/// went in. `replace` (lab rootfs): what is there goes. Otherwise (its first use)
/// a tree that another lab started at the same moment has put there is kept:
/// containers of that lab may already run on it.
pub fn build(dest: &Path, source: Source, replace: bool) -> Result<String> {
    let source = match source {
        Source::Auto if which("busybox").is_some() => Source::Busybox,
        Source::Auto => Source::Host,
        s => s,
    };
    let parent = dest
        .parent()
        .context("the root filesystem needs a parent directory")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Build beside the target and rename at the end: a half-built tree is never used.
    let tmp = parent.join(format!(".rootfs-{}", std::process::id()));
    let built = fill(&tmp, source).and_then(|how| put_in_place(&tmp, dest, replace).map(|()| how));
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    built
}

/// Rename the tree built in `tmp` to `dest`.
fn put_in_place(tmp: &Path, dest: &Path, replace: bool) -> Result<()> {
    if dest.exists() && (replace || !dest.join("bin").is_dir()) {
        crate::dirs::remove_tree(dest)?;
        // Copies of the old one with shifted owners (step 9) would be stale.
        if let Some(name) = dest.file_name() {
            for copy in crate::dirs::shifted_copies(name) {
                crate::dirs::remove_tree(&copy)?;
            }
        }
    }
    match std::fs::rename(tmp, dest) {
        Ok(()) => Ok(()),
        // Another lab built it at the same moment: theirs is as good as ours.
        Err(_) if dest.join("bin").is_dir() => {
            let _ = std::fs::remove_dir_all(tmp);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("renaming into {}", dest.display())),
    }
}

fn fill(root: &Path, source: Source) -> Result<String> {
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "mnt", "home",
        "var", "run",
    ] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    for file in MOUNT_POINTS {
        std::fs::write(root.join(file), "")?;
    }
    make_devices(root)?;
    let how = match source {
        Source::Busybox => {
            let busybox =
                which("busybox").context("busybox not found: apt-get install busybox-static")?;
            let libs = install_with_libs(&busybox, root, Path::new("/bin/busybox"))?;
            let list = run(&busybox, &["--list-full"])?;
            let mut applets = 0;
            for applet in list
                .lines()
                .filter(|l| l.contains('/') && !l.starts_with('/'))
            {
                let link = root.join(applet);
                if link.symlink_metadata().is_err() {
                    if let Some(dir) = link.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    symlink("/bin/busybox", &link)?;
                    applets += 1;
                }
            }
            format!(
                "busybox from {} with {applets} commands{}",
                busybox.display(),
                if libs == 0 {
                    " (static: no libraries needed)".to_string()
                } else {
                    format!(", {libs} libraries")
                }
            )
        }
        Source::Host | Source::Auto => {
            let mut programs = 0;
            let mut libs = std::collections::BTreeSet::new();
            for name in HOST_PROGRAMS {
                let Some(path) = which(name) else { continue };
                let dest = Path::new("/bin").join(name);
                for lib in libraries(&path)? {
                    libs.insert(lib);
                }
                copy_file(&path, &root.join(dest.strip_prefix("/")?))?;
                programs += 1;
            }
            for lib in &libs {
                copy_file(lib, &root.join(lib.strip_prefix("/")?))?;
            }
            if !root.join("bin/bash").exists() {
                bail!("bash not found on the host: it is the shell of a root filesystem made from host programs");
            }
            symlink("bash", root.join("bin/sh"))?;
            format!(
                "{programs} host programs and the {} libraries ldd names for them",
                libs.len()
            )
        }
    };
    let how = match add_step_8_tools(root)? {
        0 => format!("{how} (no setpriv or bwrap on the host, for typing step 8 by hand: apt-get install util-linux bubblewrap)"),
        n => format!(
            "{how}, and {n} of the tools of step 8 by hand ({}) with their libraries",
            STEP_8_TOOLS.join(", ")
        ),
    };
    std::fs::write(
        root.join("etc/lab-rootfs"),
        format!("lab default root filesystem: {how}\n"),
    )?;
    Ok(how)
}

/// The device nodes a shell expects, in the root filesystem itself.
fn make_devices(root: &Path) -> Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    // For step 1: a chroot has no /dev but the root filesystem's (from step 2 the
    // container gets its own: layers/mount/dev.rs).
    for (name, major, minor, _) in crate::devices::DEVICES {
        let path = root.join("dev").join(name);
        if crate::dirs::rootless() {
            // A user may not make device nodes: empty files instead, over which
            // step 9 without root mounts the host's devices.
            std::fs::write(&path, "").with_context(|| format!("creating {}", path.display()))?;
            continue;
        }
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .with_context(|| format!("mknod {}", path.display()))?;
        // mknod obeys the umask; a device nobody may write to is useless.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    }
    Ok(())
}

/// Copy `program` to `at` inside `root`, with its libraries. Returns how many
/// libraries it needed.
fn install_with_libs(program: &Path, root: &Path, at: &Path) -> Result<usize> {
    let libs = libraries(program)?;
    copy_file(program, &root.join(at.strip_prefix("/")?))?;
    for lib in &libs {
        copy_file(lib, &root.join(lib.strip_prefix("/")?))?;
    }
    Ok(libs.len())
}

/// The shared libraries and loader a program needs, as `ldd` lists them
/// (`libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2`).
pub fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    if is_static(program) {
        return Ok(vec![]);
    }
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("ldd not found: apt-get install libc-bin")?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// A program that names no dynamic loader (no PT_INTERP program header in its
/// ELF file) is statically linked: it needs no library at all.
pub fn is_static(program: &Path) -> bool {
    let Ok(bytes) = std::fs::read(program) else {
        return false;
    };
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    };
    // 64-bit little-endian ELF only; anything else is left to ldd.
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    !(0..phnum).any(|i| u32_at(phoff + i * phentsize) == Some(PT_INTERP))
}

pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Follow symlinks: libc.so.6 is a link on many systems; the container needs the file.
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn run(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Find a program in PATH, and in the sbin directories that a non-root PATH lacks.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                    \tlibtinfo.so.6 => /lib/x86_64-linux-gnu/libtinfo.so.6 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libtinfo.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn static_and_dynamic_programs_are_told_apart() {
        // lab's own test binary is dynamically linked (it names ld-linux).
        assert!(!is_static(&std::env::current_exe().unwrap()));
        assert!(!is_static(Path::new("/nonexistent")));
        if let Some(busybox) = which("busybox") {
            let static_build = Command::new("ldd")
                .arg(&busybox)
                .output()
                .map(|o| !o.status.success());
            if let Ok(true) = static_build {
                assert!(
                    is_static(&busybox),
                    "{} is static, says ldd",
                    busybox.display()
                );
            }
        }
    }
}
