//! Real container runtimes beside lab, started as their users start them, for
//! the tests that grade their containers (tests/it/peers.rs): Docker (dockerd
//! with its own data root, socket and containerd), Podman, runc, bwrap,
//! systemd-nspawn, plain unshare. Each starts in the calling test thread's
//! network namespace (support::privileged gives every privileged test one of
//! its own), puts its cgroups below the test's own, keeps its state in a
//! scratch directory of the test, and is stopped and removed when dropped,
//! with every file it left elsewhere (Docker's key.json, /run/docker,
//! Podman's CNI files), even when the test fails.
#![allow(dead_code)]

use super::{err, own_cgroups::own_cgroups, Background};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A directory of the test's own for a runtime's state, unmounted and removed
/// when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("peer-{name}-{}", std::process::id()));
        unmount_below(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unmount everything mounted at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let prefix = dir.display().to_string();
    for _ in 0..3 {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = table
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Files and directories a runtime makes outside its scratch directory: those
/// that did not exist before are removed when this is dropped.
pub struct Leftovers(Vec<PathBuf>);

impl Leftovers {
    pub fn watch(paths: &[&str]) -> Leftovers {
        Leftovers(
            paths
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.symlink_metadata().is_err())
                .collect(),
        )
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            unmount_below(p);
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

/// A cgroup below the test's own in every hierarchy, for a runtime's
/// `--cgroup-parent` (one path for all of them: the deepest of the test's own
/// cgroups, which holds the others' paths on this machine's hybrid hierarchy,
/// where only the memory controller puts the test below the root). Removed,
/// with what the runtime left in it, when dropped.
pub struct CgroupParent {
    /// The path inside each hierarchy, from its root: "/a/b/lab-peers-PID".
    pub path: String,
}

impl CgroupParent {
    pub fn new() -> CgroupParent {
        let own: Vec<String> = own_cgroups()
            .iter()
            .map(|(h, own)| {
                let rel = own.strip_prefix(h).unwrap_or(Path::new(""));
                format!("/{}", rel.display()).replace("//", "/")
            })
            .collect();
        let deepest = own
            .iter()
            .max_by_key(|p| p.len())
            .cloned()
            .unwrap_or_else(|| "/".into());
        for p in &own {
            let under = p == "/" || deepest == *p || deepest.starts_with(&format!("{p}/"));
            assert!(
                under,
                "the test's cgroups are not on one path ({own:?}): a runtime's --cgroup-parent cannot be below all of them"
            );
        }
        let path = format!(
            "{}/lab-peers-{}",
            deepest.trim_end_matches('/'),
            std::process::id()
        );
        CgroupParent { path }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs(&self.path)
    }
}

/// The directories of the cgroup `path` in every hierarchy mounted here.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| Path::new(m).join(path.trim_start_matches('/')))
        .filter(|d| d.is_dir())
        .collect()
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for dir in self.dirs() {
            // Deepest first: a cgroup goes only when it has no children.
            let mut all = vec![];
            let mut todo = vec![dir];
            while let Some(d) = todo.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        todo.push(e.path());
                    }
                }
                all.push(d);
            }
            for d in all.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// lab's root filesystem as a tar file, for `docker import` and `podman import`
/// (no registry is reachable here).
pub fn rootfs_tar(scratch: &Path) -> PathBuf {
    let tar = scratch.join("rootfs.tar");
    let mut cmd = Command::new("tar");
    cmd.args([
        "-C",
        &super::rootfs().display().to_string(),
        "-cf",
        &tar.display().to_string(),
        ".",
    ]);
    run_ok(cmd);
    tar
}

pub fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", err(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Is `program` installed? In CI a missing one fails: test.sh installs them.
pub fn have(program: &str, package: &str) -> bool {
    super::installed_or_skip(
        program,
        &format!("apt-get install {package}"),
        "this runtime's tests",
    )
}

// ── Docker ─────────────────────────────────────────────────────────────────────

/// dockerd 20.10 with its own data root, exec root, socket and containerd
/// namespace, in the test's network namespace. With its bridge (docker0, its
/// iptables chains, FORWARD DROP and NAT) in that namespace, as on a VM.
pub struct Docker {
    daemon: Option<Background>,
    pub sock: String,
    pub scratch: Scratch,
    _leftovers: Leftovers,
}

impl Docker {
    pub fn start(cgroup: &CgroupParent, bridge: bool) -> Docker {
        let leftovers = Leftovers::watch(&[
            "/etc/docker/key.json",
            "/run/docker",
            "/run/containerd",
            "/var/lib/docker",
            "/run/docker.sock",
        ]);
        let scratch = Scratch::new("docker");
        let d = &scratch.0;
        let sock = format!("unix://{}/docker.sock", d.display());
        let mut cmd = Command::new("dockerd");
        cmd.args([
            "--data-root",
            &d.join("data").display().to_string(),
            "--exec-root",
            &d.join("exec").display().to_string(),
            "--pidfile",
            &d.join("dockerd.pid").display().to_string(),
            "-H",
            &sock,
            "--containerd-namespace",
            "lab-peers",
            "--containerd-plugins-namespace",
            "lab-peers-plugins",
            "--cgroup-parent",
            &cgroup.path,
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
        ]);
        if !bridge {
            cmd.args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ]);
        }
        cmd.stdout(std::fs::File::create(d.join("dockerd.log")).unwrap());
        cmd.stderr(Stdio::from(
            std::fs::File::create(d.join("dockerd.err")).unwrap(),
        ));
        let mut docker = Docker {
            daemon: Some(Background::spawn(cmd)),
            sock,
            scratch,
            _leftovers: leftovers,
        };
        for _ in 0..300 {
            if docker
                .cli()
                .arg("info")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return docker;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(docker.scratch.0.join("dockerd.err")).unwrap_or_default();
        docker.stop();
        panic!("dockerd did not answer in 30 s:\n{log}");
    }

    pub fn cli(&self) -> Command {
        let mut c = Command::new("docker");
        c.args(["-H", &self.sock]);
        c
    }

    pub fn docker(&self, args: &[&str]) -> String {
        let mut c = self.cli();
        c.args(args);
        run_ok(c)
    }

    /// `docker import` of lab's root filesystem as `labroot`.
    pub fn import(&self) {
        let tar = rootfs_tar(&self.scratch.0);
        self.docker(&["import", &tar.display().to_string(), "labroot"]);
    }

    /// `docker run -d ARGS labroot sleep 1000`: its first process, as the host
    /// numbers it.
    pub fn run(&self, name: &str, args: &[&str]) -> i32 {
        let mut all = vec!["run", "-d", "--name", name, "--ulimit", "nofile=1024:1024"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["labroot", "sleep", "1000"]);
        self.docker(&all);
        self.docker(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .unwrap()
    }

    fn stop(&mut self) {
        let _ = self
            .cli()
            .args(["rm", "-f", "-v"])
            .args(
                self.cli()
                    .args(["ps", "-aq"])
                    .output()
                    .map(|o| super::text(&o))
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .output();
        if let Some(daemon) = self.daemon.take() {
            daemon.signal(nix::sys::signal::Signal::SIGTERM);
            for _ in 0..200 {
                if nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(daemon.pid()),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                )
                .is_ok_and(|s| s != nix::sys::wait::WaitStatus::StillAlive)
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            drop(daemon);
        }
        // containerd and its shims, should any outlive the daemon.
        kill_mentioning(&self.scratch.0);
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kill every process whose command line names `dir`.
pub fn kill_mentioning(dir: &Path) {
    let needle = dir.display().to_string();
    for p in super::pids_of("") {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) && p != std::process::id() as i32 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

// ── Podman ─────────────────────────────────────────────────────────────────────

/// Podman 4.3, as root, with its storage in a scratch directory (crun refuses
/// this machine's hybrid cgroups: runc), its default CNI network.
pub struct Podman {
    pub scratch: Scratch,
    cgroup: String,
    _leftovers: Leftovers,
}

impl Podman {
    pub fn new(cgroup: &CgroupParent) -> Podman {
        let leftovers = Leftovers::watch(&[
            "/var/lib/cni",
            "/etc/cni/net.d/cni.lock",
            "/run/containers",
            "/run/libpod",
            "/run/runc",
        ]);
        Podman {
            scratch: Scratch::new("podman"),
            cgroup: cgroup.path.clone(),
            _leftovers: leftovers,
        }
    }

    pub fn cli(&self) -> Command {
        let d = &self.scratch.0;
        let mut c = Command::new("podman");
        c.args([
            "--root",
            &d.join("root").display().to_string(),
            "--runroot",
            &d.join("run").display().to_string(),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            "runc",
            // Its lock files and runc's state, kept here too (they would
            // go to /run/libpod and /run/runc).
            "--tmpdir",
            &d.join("tmp").display().to_string(),
            "--runtime-flag",
            &format!("root={}", d.join("runc").display()),
        ]);
        c
    }

    pub fn podman(&self, args: &[&str]) -> String {
        let mut c = self.cli();
        c.args(args);
        run_ok(c)
    }

    pub fn import(&self) {
        let tar = rootfs_tar(&self.scratch.0);
        self.podman(&["import", &tar.display().to_string(), "labroot"]);
    }

    pub fn run(&self, name: &str, args: &[&str]) -> i32 {
        let mut all = vec![
            "run",
            "-d",
            "--name",
            name,
            "--cgroup-parent",
            &self.cgroup,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ];
        all.extend_from_slice(args);
        all.extend_from_slice(&["labroot", "sleep", "1000"]);
        self.podman(&all);
        self.podman(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cli().args(["rm", "-a", "-f", "-t", "0"]).output();
        kill_mentioning(&self.scratch.0);
    }
}
