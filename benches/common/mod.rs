//! What the benchmarks share.

use std::path::{Path, PathBuf};
use std::process::Child;

#[path = "../../tests/it/support/own_cgroups.rs"]
pub mod own_cgroups;
use std::time::Duration;

/// Root, in a network namespace of its own (lab0, the rules and ip_forward of step
/// 5 never touch the machine's), or false after saying how to run `bench`.
pub fn root_in_own_network(bench: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench {bench}: needs root. Run: sudo cargo bench --bench {bench}");
        return false;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success(), "ip link set lo up");
    true
}

/// lab with its state in `home` and `run` (under target/), quiet, its cgroups below
/// the benchmark's own.
pub fn lab(home: &std::path::Path, run: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lab"));
    c.args(args)
        .env("LAB_HOME", home)
        .env("LAB_RUN", run)
        .env("NO_COLOR", "1")
        .env("LAB_CGROUP_PARENT", "lab-bench");
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// The benchmark's directories under target/ (`tmp`, lab's `home` and `run`
/// in it), on disks like a classroom machine's ([`classroom_disks`]), with the
/// default root filesystem built in `home`; and what the disks are, in a line.
pub fn dirs_with_rootfs(name: &str) -> (PathBuf, PathBuf, PathBuf, String) {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let (home, run) = (tmp.join("home"), tmp.join("run"));
    let disks = classroom_disks(&tmp, &run);
    std::fs::create_dir_all(&home).unwrap();
    assert!(lab(&home, &run, &["rootfs"]).status().unwrap().success());
    (tmp, home, run, disks)
}

/// Put `tmp` on an ext4 with a journal and `run` on a tmpfs, as a Debian or
/// Ubuntu machine has /var/lib and /run: this machine's own root filesystem is
/// an ext4 without a journal, where each new file costs more for every file
/// deleted in the last minute (the kernel skips their inodes one by one:
/// `recently_deleted` in fs/ext4/ialloc.c), and a container's start makes and
/// deletes about twenty. Both are made in a mount namespace of the benchmark's
/// own, the ext4 on a loop device whose file is deleted at once: the machine's
/// mount table never shows them, and they go with the benchmark, however it
/// ends. Without a loop device, the machine's own disk is used, and said so.
pub fn classroom_disks(tmp: &Path, run: &Path) -> String {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(tmp);
    std::fs::create_dir_all(tmp).unwrap();
    let image = tmp.with_extension("img");
    let ext4 = (|| -> std::io::Result<bool> {
        std::fs::File::create(&image)?.set_len(3 << 30)?;
        let quiet = |c: &mut std::process::Command| {
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        Ok(quiet(
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
                .arg(&image),
        ) && quiet(
            std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(tmp),
        ))
    })()
    .unwrap_or(false);
    // The loop device keeps the file open; it is freed when the device goes.
    let _ = std::fs::remove_file(&image);
    std::fs::create_dir_all(run).unwrap();
    mount(
        Some("tmpfs"),
        run,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,size=256m"),
    )
    .unwrap();
    let layers = match ext4 {
        true => "an ext4 with a journal (on a loop device), as /var/lib is there",
        false => "this machine's own disk (no loop device for an ext4 of the benchmark's own)",
    };
    format!("lab's state (and crun's and runc's) on a tmpfs, as /run is on Debian and Ubuntu; root filesystems, images and writable layers on {layers}")
}

/// A container started for a benchmark, stopped (SIGTERM: lab tears it down)
/// when dropped, also when the benchmark panics.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// Polls `ok` every 10 ms for up to 30 s.
pub fn wait_until(ok: impl Fn() -> bool) {
    for _ in 0..3000 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the containers did not start within 30 s");
}

/// How many `sleep 1000` run: the containers the benchmarks keep up (exactly
/// that command line: the benchmark's own `sleep 100000` is not one).
pub fn count_sleepers() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| c == b"sleep\x001000\x00")
                .unwrap_or(false)
        })
        .count()
}

/// A container that keeps lab0 and lab's rules up until dropped, as in a
/// classroom where several run: what is timed meanwhile is a container, not the
/// bridge's setup and removal.
pub fn hold_lab0(lab: &dyn Fn(&[&str]) -> std::process::Command) -> Running {
    let mut c = lab(&[
        "step",
        "5",
        "--no-checks",
        "--name",
        "holder",
        "--",
        "sleep",
        "1000",
    ]);
    let holder = Running(c.spawn().unwrap());
    wait_until(|| count_sleepers() >= 1);
    holder
}
