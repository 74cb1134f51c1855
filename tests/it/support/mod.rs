//! What the integration tests share: running lab, keeping its state out of the
//! host's /var/lib/lab and /run/lab, deciding whether privileged tests can run,
//! and redacting what changes from run to run.
#![allow(dead_code)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

pub mod own_cgroups;
pub mod peers;

pub const LAB: &str = env!("CARGO_BIN_EXE_lab");

/// lab with no colour, as a pipe would get it.
pub fn lab() -> Command {
    let mut c = Command::new(LAB);
    c.env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("LAB_HOME")
        .env_remove("LAB_RUN")
        .env_remove("LAB_CGROUP_PARENT");
    c
}

/// Where tests put cgroups: below the test's own cgroup in every hierarchy, so no
/// process is ever moved out of the cgroup subtree it was started in.
pub const CGROUP_PARENT: &str = "lab-test";

/// lab with its state in this test run's own directories (under target/), so tests
/// never touch a student's /var/lib/lab or /run/lab.
pub fn lab_isolated() -> Command {
    let mut c = lab();
    c.env("LAB_HOME", home())
        .env("LAB_RUN", run_dir())
        .env("LAB_CGROUP_PARENT", CGROUP_PARENT);
    c
}

/// `lab step N -- CMD`, isolated, run to its end.
pub fn step(n: u8, cmd: &[&str]) -> Output {
    lab_isolated()
        .args(["step", &n.to_string(), "--"])
        .args(cmd)
        .output()
        .expect("run lab step")
}

pub fn home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-home")
}

pub fn run_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-run")
}

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The guard of a privileged test, or return from the test (having said why)
/// when it cannot run: see [`privileged`]. Every test that needs root is also
/// `#[ignore = "needs root: sudo ./test.sh"]`, so that a run without root counts
/// it as ignored, not passed; as root, `cargo test -- --include-ignored` runs it
/// (test.sh does).
macro_rules! privileged {
    () => {
        match $crate::support::privileged() {
            Some(guard) => guard,
            None => return,
        }
    };
}

/// Settings for the snapshots in snapshots/ at the top of the project, named by
/// the name the test gives (no module prefix), without the asserted expression.
pub fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Privileged tests change the kernel's state (mounts, namespaces, host objects
/// for the checks), and some compare the host's mount table before and after, so
/// they run one at a time. Returns None, having said why, when they cannot run;
/// in CI that is a failure, never a silent skip.
pub fn privileged() -> Option<MutexGuard<'static, ()>> {
    let guard = root_or_skip()?;
    own_network_namespace();
    ensure_rootfs();
    Some(guard)
}

/// Root, one test at a time, in the machine's own namespaces: for the tests that
/// need the package registries. Returns None, having said why, without root; in
/// CI that is a failure, never a silent skip.
pub fn root_or_skip() -> Option<MutexGuard<'static, ()>> {
    // libtest runs each test in a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a privileged test");
    if !is_root() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: privileged tests need root, and CI=true forbids skipping them. Run the suite as root (sudo).");
        }
        // Straight to the terminal: the test harness captures println!.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: needs root. Run every test with: sudo ./test.sh"
        );
        return None;
    }
    Some(serial())
}

/// One test at a time among those that take this: the privileged ones (they
/// change the kernel's state, and some compare the host's mount table before and
/// after, or time busy loops against a CPU quota), and the heavy ones that would
/// load the machine's cores under them (the qemu VM, Chromium, mmdebstrap). The
/// light tests without root (cli, most of the tutor's) run beside them.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Put the calling test thread (and every process it starts) in a network
/// namespace of its own, that plays the host: from step 5, lab makes a bridge,
/// iptables rules and turns ip_forward on, and none of that may touch the
/// machine's own network. It goes away with the thread and its children.
pub fn own_network_namespace() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare(CLONE_NEWNET) for the test");
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up failed");
}

/// A network outside the test's host namespace, as the Internet would be: a
/// process in a network namespace of its own, cabled to the test's namespace by
/// a veth pair (uplink0 here, 198.18.0.2/24; 198.18.0.1 there, the default
/// route). 198.18.0.0/15 is reserved for benchmarks (RFC 2544): it is no one's.
pub struct Outside {
    holder: Background,
}

impl Outside {
    pub const HOST: &'static str = "198.18.0.2";
    pub const ROUTER: &'static str = "198.18.0.1";

    pub fn new() -> Outside {
        let mut c = Command::new("unshare");
        c.args(["--net", "sleep", "600"]);
        let holder = Background::spawn(c);
        let pid = holder.pid().to_string();
        // Wait until unshare has made its namespace. Compared with this thread's
        // (/proc/thread-self): the test thread has a network namespace of its own
        // (own_network_namespace), and /proc/self is the process's main thread,
        // whose namespace unshare's child never had: that wait would end at once.
        let ours = std::fs::read_link("/proc/thread-self/ns/net").ok();
        for _ in 0..200 {
            if std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() != ours {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let sh = |script: &str| {
            let out = Command::new("sh").args(["-ec", script]).output().unwrap();
            assert!(out.status.success(), "{script}: {}", err(&out));
        };
        sh(&format!(
            "ip link add uplink0 type veth peer name outside0
             ip link set outside0 netns {pid}
             ip addr add {}/24 dev uplink0
             ip link set uplink0 up
             ip route add default via {}
             nsenter -t {pid} -n sh -ec 'ip link set lo up; ip addr add {}/24 dev outside0; ip link set outside0 up'",
            Self::HOST,
            Self::ROUTER,
            Self::ROUTER
        ));
        Outside { holder }
    }

    /// Run `f` in the outside namespace, on a thread of its own.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.holder.pid())).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }
}

/// The test run's root filesystem, built once (again when an older lab built it
/// without the tools of step 8 by hand).
fn ensure_rootfs() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let r = home().join("rootfs");
        if !r.join("bin").is_dir() || !r.join("usr/bin/bwrap").is_file() {
            let out = lab_isolated()
                .arg("rootfs")
                .output()
                .expect("run lab rootfs");
            assert!(out.status.success(), "lab rootfs failed: {}", err(&out));
        }
    });
}

pub fn rootfs() -> PathBuf {
    home().join("rootfs")
}

pub fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// The filesystem's own options of a /proc/PID/mountinfo line (its last field,
/// after the source): an overlay's `lowerdir=...`, `volatile`, ...
pub fn super_options(line: &str) -> Vec<&str> {
    line.rsplit(' ').next().unwrap_or("").split(',').collect()
}

/// Containers lab left in the test run's state directory.
pub fn leftover_containers() -> Vec<String> {
    std::fs::read_dir(run_dir().join("containers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The host PIDs of the processes whose command line starts with `prefix`.
pub fn pids_of(prefix: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with(prefix) {
            pids.push(pid);
        }
    }
    pids
}

/// Kill what is left of a test's command: without a pid namespace (steps 1 and
/// 2), a command's children outlive it, as they do for anyone who runs them so.
pub fn kill_leftovers(prefix: &str) {
    for pid in pids_of(prefix) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Wait up to 5 s for a process whose command line starts with `prefix`.
pub fn wait_for_process(prefix: &str) -> i32 {
    for _ in 0..500 {
        if let Some(pid) = pids_of(prefix).first() {
            return *pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no process `{prefix}` appeared within 5 s");
}

/// A child process killed (with its process group) when the test ends, however it ends.
pub struct Background(pub std::process::Child);

impl Background {
    pub fn spawn(mut cmd: Command) -> Background {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Background(cmd.spawn().expect("spawn"))
    }
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), sig);
    }
    /// Stop lab the way a user would (SIGTERM: lab passes it on, then tears down)
    /// and wait for it.
    pub fn stop(self) -> std::process::ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait()
    }

    /// All it wrote to its stderr, when spawned with `Stdio::piped()` there.
    pub fn stderr_text(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        let status = self.0.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // The negative PID names the whole process group.
        let _ = kill(Pid::from_raw(-self.pid()), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// The checks of step `n`, one line each ("layer L: NAME"), in the order lab runs
/// and prints them: the reviewed snapshot snapshots/checks-N.snap, which
/// [`assert_check_names`] compares with what lab ran. Tests count checks with it,
/// never with a number of their own.
pub fn check_names(n: u8) -> Vec<String> {
    let path = format!("{}/snapshots/checks-{n}.snap", env!("CARGO_MANIFEST_DIR"));
    let snap = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // insta's header (between two `---` lines), then the contents.
    snap.splitn(3, "---\n")
        .nth(2)
        .unwrap_or_else(|| panic!("{path}: no insta header"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// What an escape says when this machine cannot show it, and skips it: its
/// kernel loads no modules at all; something around it guards its disks; no
/// file of the host that the container holds, nor the container's /, is on a
/// filesystem whose handles can be made up (tmpfs, overlay).
pub const MACHINE_SKIPS: [&str; 3] = [
    "cannot load modules at all",
    "no disk to read here",
    "no file handle to forge here",
];

/// How many escapes `text` (lab's printed checks, or its JSON) says this machine
/// cannot show.
pub fn unshowable(text: &str) -> usize {
    MACHINE_SKIPS.iter().map(|s| text.matches(s).count()).sum()
}

/// The checks of lab's JSON (`lab verify N --json`, `lab check N --json`) as
/// lines "layer L: NAME", in order.
pub fn checks_in(json: &str) -> Vec<String> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not lab's JSON ({e}):\n{json}"));
    rows.iter()
        .map(|r| {
            format!(
                "layer {}: {}",
                r["layer"],
                r["check"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The checks lab ran for step `n` are the ones of the reviewed snapshot
/// snapshots/checks-N.snap: a check added, lost or renamed is a snapshot diff to
/// review (`cargo insta review`), not a count to change.
pub fn assert_check_names(n: u8, json: &str) {
    let names = checks_in(json).join("\n");
    snapshot_settings().bind(|| insta::assert_snapshot!(format!("checks-{n}"), names));
}

/// Every `"passed": true|false` of lab's JSON, in order.
pub fn json_passed(json: &str) -> Vec<bool> {
    json.match_indices("\"passed\": ")
        .map(|(i, m)| json[i + m.len()..].starts_with("true"))
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// Run `cmd`, read only its first line, close the pipe, and wait: what
/// `lab ... | head -1` does to lab.
pub fn with_reader_gone(mut cmd: Command) -> Output {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: lab's next writes fail with EPIPE.
    child.wait_with_output().unwrap()
}

/// Remove the empty CGROUP_PARENT directories in every hierarchy (the scripts of
/// steps 6 and 7, like a person, remove only the container's own cgroup).
pub fn remove_test_cgroup_parents() {
    for dir in test_cgroup_parents() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The CGROUP_PARENT directory below the test's own cgroup, in every hierarchy
/// (whether it exists or not).
pub fn test_cgroup_parents() -> Vec<PathBuf> {
    own_cgroups::own_cgroups()
        .into_iter()
        .map(|(_, own)| own.join(CGROUP_PARENT))
        .collect()
}

/// Is `program` installed? Without it the test `what` says so (and how to get it),
/// and with CI=true it fails: CI never skips silently.
pub fn installed_or_skip(program: &str, install: &str, what: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{program} is not installed and CI=true: {install} (test.sh does it)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {what}: {program} is not installed ({install}, or sudo ./test.sh)"
        );
    }
    found
}

/// A directory (or file) the test makes, or has lab make, removed when the test
/// ends, also when it fails.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_err() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Wait (at most 5 s) until the removal of lab0 that the last container left to
/// a process of its own is done: what the host looks like is compared after it.
pub fn settled() {
    let note = run_dir().join("lab0-removal");
    for _ in 0..5000 {
        if !note.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!(
        "lab0's removal ({}) did not finish within 5 s",
        note.display()
    );
}

/// A Debian 12 made by mmdebstrap (`--variant=apt`, with ca-certificates and
/// mount), as a tarball in the target directory, made once for every test that
/// wants a real distribution: the image tests import it, the provisioning test
/// unpacks it as a fresh machine. Call it in the machine's own network
/// namespace: it fetches packages from Debian's mirror.
pub fn debian_tarball() -> PathBuf {
    let tarball = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debian-bookworm.tar");
    if !tarball.is_file() {
        // mmdebstrap chooses the format by the name's extension: .tar for a tarball.
        let _ = std::fs::remove_dir_all(&tarball);
        let part = tarball.with_extension("part.tar");
        let out = Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=apt",
                "--include=ca-certificates,mount",
                "bookworm",
            ])
            .arg(&part)
            .arg("http://deb.debian.org/debian")
            .output()
            .expect("mmdebstrap (test.sh installs it: apt-get install mmdebstrap)");
        assert!(out.status.success(), "mmdebstrap: {}", err(&out));
        std::fs::rename(&part, &tarball).unwrap();
    }
    tarball
}

/// `s` as a regex that matches it literally (for snapshot filters).
pub fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}
