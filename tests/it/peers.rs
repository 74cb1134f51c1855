//! lab grades containers it did not make: real runtimes from Debian's packages
//! (test.sh installs them), started as their users start them, in the test's
//! own network namespace, their cgroups below the test's own. For each, what
//! `lab inspect` and `lab check` report equals what the kernel and the
//! runtime itself say (/proc/PID/status, `docker inspect`), and a runtime's
//! switch changes exactly the layers it should.

use crate::support::peers::{self, CgroupParent, Docker, Podman, Scratch};
use crate::support::*;
use serde_json::Value;
use std::process::Command;

/// `lab inspect PID --json`, from the test's network namespace.
fn inspect(pid: i32) -> Value {
    let out = lab_isolated()
        .args(["inspect", &pid.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "lab inspect {pid}: {}", err(&out));
    serde_json::from_str(&text(&out)).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Whether each layer is on ("yes", "part", "no"), 1 to 9.
fn on(v: &Value) -> Vec<String> {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["on"].as_str().unwrap().to_string())
        .collect()
}

/// The facts of layer `n`, as one line.
fn facts(v: &Value, n: usize) -> String {
    v["layers"][n - 1]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `lab check N --pid PID --json` and its rows, with its stderr.
fn check(n: u8, pid: i32) -> (Vec<Value>, String) {
    let out = lab_isolated()
        .args(["check", &n.to_string(), "--json", "--pid", &pid.to_string()])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_str(&text(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out), err(&out)));
    (rows.as_array().unwrap().clone(), err(&out))
}

fn row<'a>(rows: &'a [Value], name_starts: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["check"].as_str().unwrap().starts_with(name_starts))
        .unwrap_or_else(|| panic!("no check {name_starts:?} in {rows:#?}"))
}

/// The kernel's own word for a process: a line of /proc/PID/status.
fn status(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap()
}

/// lab's facts of layer 8 equal /proc/PID/status.
fn assert_privileges_as_the_kernel_says(v: &Value, pid: i32) {
    let f = facts(v, 8);
    let bnd = u64::from_str_radix(&status(pid, "CapBnd:"), 16).unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bnd = bnd & ((1u64 << (last + 1)) - 1);
    assert!(f.contains(&format!("{bnd:#x}")), "CapBnd {bnd:#x}: {f}");
    let nnp = status(pid, "NoNewPrivs:") == "1";
    assert!(
        f.contains(if nnp {
            "no_new_privs: set"
        } else {
            "no_new_privs: not set"
        }),
        "{f}"
    );
    let seccomp = status(pid, "Seccomp:");
    assert_eq!(
        f.contains("seccomp: filter"),
        seccomp == "2",
        "Seccomp {seccomp}: {f}"
    );
}

/// No hint of a check of another runtime's container speaks of lab's recipe.
fn assert_hints_are_the_runtimes(rows: &[Value]) {
    for r in rows {
        let hint = r["hint"].as_str().unwrap_or("");
        for recipe in [
            "the last line",
            "setpriv --",
            "bwrap --seccomp",
            "lab's init",
            "lab0",
        ] {
            assert!(!hint.contains(recipe), "a hint of lab's recipe: {r}");
        }
    }
}

/// Docker's default container, then one switch at a time: each changes the
/// layers it should, and lab's facts are Docker's own.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn docker_containers_are_graded_on_what_they_have() {
    let Some(_g) = privileged() else { return };
    if !peers::have("dockerd", "docker.io") {
        return;
    }
    let before = existing();
    let cgroup = CgroupParent::new();
    let docker = Docker::start(&cgroup, true);
    docker.import();

    let pid = docker.run("web", &[]);
    let v = inspect(pid);
    assert!(v["made_by"].as_str().unwrap().starts_with("Docker"), "{v}");
    assert_eq!(
        on(&v),
        ["yes", "yes", "yes", "yes", "yes", "no", "yes", "part", "no"],
        "{v:#}"
    );
    assert_privileges_as_the_kernel_says(&v, pid);
    assert!(facts(&v, 8).contains("Docker's default (14"), "{v:#}");
    let host = docker.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}",
        "web",
    ]);
    assert!(host.starts_with("0 "), "docker inspect: {host}");
    assert!(
        facts(&v, 6).contains("memory no limit, cpu no limit, pids no limit"),
        "{v:#}"
    );
    assert!(
        facts(&v, 3).contains("PID 1 is sleep") && facts(&v, 3).contains("orphans stay zombies"),
        "{v:#}"
    );
    assert!(
        facts(&v, 9).contains("root inside is the host's root"),
        "{v:#}"
    );
    let ip = docker.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    assert!(facts(&v, 5).contains(&ip), "docker's address {ip}: {v:#}");

    // What a student reads, reviewed like code: numbers, paths and names
    // that change from run to run redacted.
    let screen = text(
        &lab_isolated()
            .args(["inspect", &pid.to_string()])
            .output()
            .unwrap(),
    );
    let mut settings = snapshot_settings();
    settings.add_filter(
        &regex_escape(&docker.scratch.0.to_string_lossy()),
        "[DOCKER]",
    );
    settings.add_filter(&regex_escape(&run_dir().to_string_lossy()), "[LAB_RUN]");
    settings.add_filter(r"/[0-9a-f]{64}/", "/[ID]/");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[HOSTNAME]");
    settings.add_filter(r"\b40265\d{5}\b", "[INODE]");
    settings.add_filter(r"(PID|Process|pid) \d{2,}", "$1 [PID]");
    settings.add_filter(r"check-\d+", "check-[PID]");
    settings.add_filter(
        r"hostname \[HOSTNAME\] \(the host's: [^)]*\)",
        "hostname [HOSTNAME] (the host's: [HOST])",
    );
    settings.bind(|| insta::assert_snapshot!("inspect-docker", screen));

    // lab check: neutral facts, the runtime's hints, the root found.
    let (rows, said) = check(9, pid);
    assert!(said.contains("a container of Docker"), "{said}");
    assert!(
        row(&rows, "the root filesystem is")["passed"] == true,
        "{rows:#?}"
    );
    let memory = row(&rows, "allocating over the memory limit");
    assert!(
        memory["detail"]
            .as_str()
            .unwrap()
            .starts_with("no memory limit"),
        "{memory}"
    );
    let nnp = row(&rows, "no_new_privs is set");
    assert!(nnp["passed"] == false, "{nnp}");
    assert!(row(&rows, "a seccomp filter is installed")["passed"] == true);
    assert!(row(&rows, "the container's processes hold no capability")["passed"] == true);
    assert!(row(&rows, "on the host, the container's root")["passed"] == false);
    assert!(row(&rows, "inside, the container's processes are root")["passed"] == false);
    assert!(row(&rows, "the image's files are root's inside")["passed"] == false);
    assert_hints_are_the_runtimes(&rows);

    // One switch at a time: the layers that change, and only they.
    let base = on(&v);
    for (name, args, changed, says) in [
        (
            "unconfined",
            &[
                "--cap-add",
                "ALL",
                "--cap-drop",
                "SYS_RESOURCE",
                "--security-opt",
                "seccomp=unconfined",
            ][..],
            vec![(8, "part")],
            (8, "seccomp: none"),
        ),
        (
            "nocaps",
            &["--cap-drop", "ALL"][..],
            vec![],
            (8, "capabilities: 0x0, none"),
        ),
        (
            "nnp",
            &["--security-opt", "no-new-privileges"][..],
            vec![(8, "yes")],
            (8, "no_new_privs: set"),
        ),
        (
            "limited",
            &["--memory", "64m", "--pids-limit", "50"][..],
            vec![(6, "part")],
            (6, "memory 64.0 MB, cpu no limit, pids 50"),
        ),
        (
            "hostpid",
            &["--pid", "host"][..],
            vec![(3, "no")],
            (3, "the host's"),
        ),
        (
            "nonet",
            &["--network", "none"][..],
            vec![(5, "part")],
            (5, "no way out"),
        ),
        (
            "init",
            &["--init"][..],
            vec![],
            (3, "an init: it reaps orphans"),
        ),
    ] {
        let pid = docker.run(name, args);
        let v = inspect(pid);
        let mut want = base.clone();
        for (layer, state) in &changed {
            want[layer - 1] = state.to_string();
        }
        assert_eq!(on(&v), want, "docker run {args:?}: {v:#}");
        assert!(
            facts(&v, says.0).contains(says.1),
            "docker run {args:?}: layer {}: {v:#}",
            says.0
        );
        assert_privileges_as_the_kernel_says(&v, pid);
        // And lab check proves what the switch gave, by making the kernel act.
        match name {
            "init" => {
                let (rows, _) = check(3, pid);
                assert!(
                    row(&rows, "PID 1 reaps orphaned")["passed"] == true,
                    "{rows:#?}"
                );
            }
            // Negative controls where Docker can switch a layer off: no check
            // of it passes, but for what stays on (the masks and a read-only
            // /sys, which only --privileged takes away).
            "hostpid" | "unconfined" => {
                let (layer, still_on): (u64, &[&str]) = match name {
                    "hostpid" => (3, &[]),
                    _ => (
                        8,
                        &["/proc/kcore and the other masked", "/sys is read-only"],
                    ),
                };
                let (rows, _) = check(9, pid);
                for r in rows.iter().filter(|r| r["layer"] == layer) {
                    let name = r["check"].as_str().unwrap();
                    if name.starts_with("escape:") {
                        continue;
                    }
                    let on = still_on.iter().any(|s| name.starts_with(s));
                    assert_eq!(r["passed"] == true, on, "docker run {args:?}: {r}");
                }
            }
            "limited" => {
                let (rows, _) = check(6, pid);
                assert!(
                    row(&rows, "allocating over the memory limit")["passed"] == true,
                    "{rows:#?}"
                );
                assert!(
                    row(&rows, "a fork loop stops")["passed"] == true,
                    "{rows:#?}"
                );
            }
            _ => {}
        }
        docker.docker(&["rm", "-f", name]);
    }
    let (rows, _) = check(3, pid);
    assert!(
        row(&rows, "PID 1 reaps orphaned")["passed"] == false,
        "{rows:#?}"
    );
    drop(docker);
    assert_nothing_left(cgroup, &before);
}

/// Where the runtimes leave files outside their scratch directories.
const OUTSIDE: [&str; 7] = [
    "/run/libpod",
    "/run/runc",
    "/etc/docker/key.json",
    "/run/docker",
    "/run/containerd",
    "/var/lib/cni",
    "/etc/cni/net.d/cni.lock",
];

fn existing() -> Vec<&'static str> {
    OUTSIDE
        .into_iter()
        .filter(|p| std::path::Path::new(p).symlink_metadata().is_ok())
        .collect()
}

/// What a runtime made outside its scratch directory is gone with it: no
/// mount of it, no file that was not there before, no cgroup in its parent.
fn assert_nothing_left(cgroup: CgroupParent, before: &[&str]) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/peer-"), "mounts left:\n{mounts}");
    assert_eq!(existing(), before, "left outside");
    // (Podman leaves its conmon cgroup and a container's, empty: the parent
    // goes with all of them.)
    let path = cgroup.path.clone();
    drop(cgroup);
    assert_eq!(
        peers::cgroup_dirs(&path),
        Vec::<std::path::PathBuf>::new(),
        "cgroups left"
    );
}

/// Podman's default container (as root, its default network), and one in a
/// user namespace: lab's facts are Podman's own.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn podman_containers_are_graded_on_what_they_have() {
    let Some(_g) = privileged() else { return };
    if !peers::have("podman", "podman") || !peers::have("runc", "runc") {
        return;
    }
    let before = existing();
    let cgroup = CgroupParent::new();
    let podman = Podman::new(&cgroup);
    podman.import();

    let pid = podman.run("web", &[]);
    let v = inspect(pid);
    assert!(v["made_by"].as_str().unwrap().starts_with("Podman"), "{v}");
    assert_eq!(
        on(&v),
        ["yes", "yes", "yes", "yes", "yes", "part", "yes", "part", "no"],
        "{v:#}"
    );
    assert_privileges_as_the_kernel_says(&v, pid);
    assert!(facts(&v, 8).contains("Podman's default (11"), "{v:#}");
    let pids = podman.podman(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", "web"]);
    assert!(
        facts(&v, 6).contains(&format!("memory no limit, cpu no limit, pids {pids}")),
        "podman's pids limit {pids}: {v:#}"
    );
    let (rows, said) = check(9, pid);
    assert!(said.contains("a container of Podman"), "{said}");
    assert!(
        row(&rows, "the root filesystem is")["passed"] == true,
        "{rows:#?}"
    );
    assert!(row(&rows, "no_new_privs is set")["passed"] == false);
    assert!(row(&rows, "on the host, the container's root")["passed"] == false);
    assert_hints_are_the_runtimes(&rows);

    // In a user namespace: root inside is user 1000000 of the host (a range
    // of its own: lab takes 100000 or 200000).
    let pid = podman.run(
        "mapped",
        &["--uidmap", "0:1000000:65536", "--gidmap", "0:1000000:65536"],
    );
    let v = inspect(pid);
    assert_eq!(on(&v)[8], "yes", "{v:#}");
    assert!(
        facts(&v, 9).contains("root inside is user 1000000 of the host"),
        "{v:#}"
    );
    assert_eq!(
        status(pid, "Uid:").split_whitespace().next(),
        Some("1000000")
    );
    let (rows, _) = check(9, pid);
    for name in [
        "on the host, the container's root",
        "inside, the container's processes are root",
        "the image's files are root's inside",
    ] {
        assert!(row(&rows, name)["passed"] == true, "{rows:#?}");
    }
    drop(podman);
    assert_nothing_left(cgroup, &before);
}

/// runc on a `runc spec` bundle, `bwrap --unshare-all`, systemd-nspawn and a
/// plain `unshare`, as their users start them: what lab inspect finds.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn runc_bwrap_nspawn_and_unshare_are_graded_on_what_they_have() {
    let Some(_g) = privileged() else { return };
    for (program, package) in [
        ("runc", "runc"),
        ("bwrap", "bubblewrap"),
        ("systemd-nspawn", "systemd-container"),
    ] {
        if !peers::have(program, package) {
            return;
        }
    }
    let before = existing();
    let cgroup = CgroupParent::new();
    let scratch = Scratch::new("others");
    let rootfs = rootfs().display().to_string();
    let mut seen = Vec::new();

    // runc: the bundle's config.json, from `runc spec`, runs sleep.
    let bundle = scratch.0.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let state = scratch.0.join("runc").display().to_string();
    let mut spec = Command::new("runc");
    spec.args(["spec", "--bundle", &bundle.display().to_string()]);
    peers::run_ok(spec);
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    config["process"]["terminal"] = false.into();
    config["root"]["path"] = rootfs.clone().into();
    config["linux"]["cgroupsPath"] = format!("{}/runc-peer", cgroup.path).into();
    std::fs::write(&path, config.to_string()).unwrap();
    let pid_file = scratch.0.join("runc.pid");
    let mut run = Command::new("runc");
    run.args(["--root", &state, "run", "-d", "--bundle"])
        .arg(&bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("lab-peer")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _runc = RuncContainer(state.clone());
    assert!(run.status().unwrap().success(), "runc run");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let v = inspect(pid);
    assert_privileges_as_the_kernel_says(&v, pid);
    seen.push(("runc", on(&v), v));
    drop(_runc);

    // bwrap, every namespace it can make.
    let mut cmd = Command::new("bwrap");
    cmd.args([
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        &rootfs,
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "sleep",
        "1001",
    ]);
    let bwrap = Background::spawn(cmd);
    let pid = wait_for_process("sleep 1001");
    let _kill = KillOnDrop(pid);
    let v = inspect(pid);
    assert_privileges_as_the_kernel_says(&v, pid);
    seen.push(("bwrap", on(&v), v));
    drop(bwrap);

    // systemd-nspawn on a copy (it writes into the tree), outside systemd's
    // bookkeeping: this machine's PID 1 is not systemd.
    let tree = scratch.0.join("nspawn-root");
    let mut cp = Command::new("cp");
    cp.args(["-a", &rootfs]).arg(&tree);
    peers::run_ok(cp);
    let machine = format!("labpeer{}", std::process::id());
    let _propagate = RemoveOnDrop(format!("/run/systemd/nspawn/propagate/{machine}").into());
    let mut cmd = Command::new("systemd-nspawn");
    cmd.args(["-q", "--register=no", "--keep-unit", "-M", &machine, "-D"])
        .arg(&tree)
        .args(["sleep", "1002"]);
    let nspawn = Background::spawn(cmd);
    let pid = wait_for_process("sleep 1002");
    let _kill = KillOnDrop(pid);
    let v = inspect(pid);
    assert_privileges_as_the_kernel_says(&v, pid);
    seen.push(("systemd-nspawn", on(&v), v));
    drop(nspawn);

    // A plain unshare: namespaces, and nothing else.
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--fork",
        "--pid",
        "--mount-proc",
        "--mount",
        "--uts",
        "--ipc",
        "--net",
        "sleep",
        "1003",
    ]);
    let unshare = Background::spawn(cmd);
    let pid = wait_for_process("sleep 1003");
    let _kill = KillOnDrop(pid);
    let v = inspect(pid);
    assert_privileges_as_the_kernel_says(&v, pid);
    seen.push(("unshare", on(&v), v));
    drop(unshare);

    // What each has, as measured here (runc 1.1, bubblewrap 0.8, systemd
    // 252, util-linux 2.38), and a fact of each that says so.
    let expected: [Expected; 4] = [
        (
            "runc",
            ["yes", "yes", "yes", "yes", "part", "no", "no", "part", "no"],
            &[
                (5, "interfaces lo; no default route"),
                (8, "seccomp: none; no_new_privs: set"),
                (7, "not an overlay"),
            ],
        ),
        (
            "bwrap",
            ["yes", "yes", "yes", "yes", "part", "no", "no", "part", "no"],
            &[
                (3, "PID 1 is bwrap"),
                (9, "uid_map 0 0 1"),
                (8, "no_new_privs: set"),
            ],
        ),
        (
            "systemd-nspawn",
            ["yes", "yes", "yes", "yes", "no", "no", "no", "part", "no"],
            &[(5, "the host's"), (8, "seccomp: filter"), (6, "cgroup 4")],
        ),
        (
            "unshare",
            ["no", "part", "yes", "yes", "part", "no", "no", "no", "no"],
            &[
                (1, "its / is the host's /"),
                (2, "/dev is a devtmpfs: the host's devices"),
                (8, "as the host's root has"),
            ],
        ),
    ];
    for ((who, layers, v), (name, want, says)) in seen.iter().zip(expected) {
        assert_eq!(
            (*who, layers.iter().map(String::as_str).collect::<Vec<_>>()),
            (name, want.to_vec()),
            "{v:#}"
        );
        for (n, fact) in says {
            assert!(
                facts(v, *n).contains(fact),
                "{who}, layer {n}: {fact:?} in {v:#}"
            );
        }
    }
    // runc's capabilities are those its config.json lists.
    let listed: Vec<String> = config["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c.as_str()
                .unwrap()
                .trim_start_matches("CAP_")
                .to_lowercase()
        })
        .collect();
    let said = facts(&seen[0].2, 8);
    for c in &listed {
        assert!(said.contains(c.as_str()), "runc's {c} in {said}");
    }
    assert!(said.contains(&format!("({}: ", listed.len())), "{said}");
    drop(scratch);
    assert_nothing_left(cgroup, &before);
}

/// A runtime, whether each layer is on, and facts of some layers.
type Expected<'a> = (&'a str, [&'a str; 9], &'a [(usize, &'a str)]);

/// A container's first process, killed when dropped: systemd-nspawn's is in
/// a session of its own, out of reach of Background's kill of the group.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A container of runc's, killed and deleted when dropped.
struct RuncContainer(String);

impl Drop for RuncContainer {
    fn drop(&mut self) {
        for args in [
            &["kill", "lab-peer", "KILL"][..],
            &["delete", "-f", "lab-peer"][..],
        ] {
            let _ = Command::new("runc")
                .args(["--root", &self.0])
                .args(args)
                .output();
        }
    }
}

/// The tables of lessons 08 and 10, of what Docker's and Podman's default
/// containers have beside lab's: made here from `lab inspect` of real ones,
/// and equal to the lessons' (a new Docker or Podman that changes a default
/// fails this test, and `LAB_UPDATE_LESSONS=1 sudo cargo test --test it
/// peers::the_lessons` writes the new tables into the lessons).
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_lessons_tables_of_docker_and_podman_are_measured() {
    let Some(_g) = privileged() else { return };
    if !peers::have("dockerd", "docker.io") || !peers::have("podman", "podman") {
        return;
    }
    let before = existing();
    let cgroup = CgroupParent::new();
    let docker = Docker::start(&cgroup, true);
    docker.import();
    let podman = Podman::new(&cgroup);
    podman.import();
    let mut lab = lab_isolated();
    lab.args(["step", "9", "--", "sleep", "1005"]);
    lab.stdout(std::process::Stdio::null());
    let running = Background::spawn(lab);
    let lab_pid = wait_for_process("sleep 1005");
    let seen = [
        (
            format!(
                "Docker {}",
                docker.docker(&["version", "-f", "{{.Server.Version}}"])
            ),
            inspect(docker.run("web", &[])),
        ),
        (
            format!(
                "Podman {}, as root",
                podman.podman(&["version", "-f", "{{.Client.Version}}"])
            ),
            inspect(podman.run("web", &[])),
        ),
        ("lab step 9".to_string(), inspect(lab_pid)),
    ];
    running.stop();
    kill_leftovers("sleep 1005");
    drop(podman);
    drop(docker);
    // What the calls get with neither a capability nor a filter: where a
    // runtime's row differs, its filter chose (a process of root's whose
    // bounding set is empty, in a pid namespace of its own).
    let mut bare = Command::new("unshare");
    bare.args([
        "--pid",
        "--fork",
        "--mount",
        "--mount-proc",
        "setpriv",
        "--bounding-set",
        "-all",
        "--inh-caps",
        "-all",
        "sleep",
        "1008",
    ]);
    let bare = Background::spawn(bare);
    let bare_pid = wait_for_process("sleep 1008");
    let _kill = KillOnDrop(bare_pid);
    let unfiltered = inspect(bare_pid);
    assert_eq!(status(bare_pid, "Seccomp:"), "0");
    assert_eq!(status(bare_pid, "CapEff:"), "0000000000000000");
    drop(bare);

    let header = |first: &str, more: &[&str]| {
        let mut names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        names.extend_from_slice(more);
        format!(
            "| {first} | {} |\n|---|{}\n",
            names.join(" | "),
            "---|".repeat(names.len())
        )
    };
    let mut layers = header("Layer", &[]);
    for n in 0..9 {
        let title = seen[0].1["layers"][n]["title"].as_str().unwrap();
        let cells: Vec<String> = seen
            .iter()
            .map(|(_, v)| {
                let l = &v["layers"][n];
                format!(
                    "{}: {}",
                    l["on"].as_str().unwrap(),
                    l["summary"].as_str().unwrap()
                )
            })
            .collect();
        layers += &format!("| {} {title} | {} |\n", n + 1, cells.join(" | "));
    }
    let mut calls = header(
        "System call (harmless arguments)",
        &["no capability, no filter"],
    );
    for (i, call) in seen[0].1["system_calls"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let cells: Vec<&str> = seen
            .iter()
            .map(|(_, v)| v)
            .chain([&unfiltered])
            .map(|v| {
                let a = v["system_calls"][i]["answer"].as_str().unwrap();
                a.split(' ').next().unwrap()
            })
            .collect();
        calls += &format!(
            "| `{}` | {} |\n",
            call["call"].as_str().unwrap(),
            cells.join(" | ")
        );
    }

    let update = std::env::var_os("LAB_UPDATE_LESSONS").is_some();
    for lesson in ["lessons/08-privileges.md", "lessons/10-what-comes-next.md"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(lesson);
        let old = std::fs::read_to_string(&path).unwrap();
        let new = fill_measured(
            &fill_measured(&old, "layers", &layers),
            "system calls",
            &calls,
        );
        assert!(
            new.contains("<!-- measured: layers -->"),
            "{lesson} has no measured table"
        );
        if update {
            std::fs::write(&path, &new).unwrap();
        } else {
            assert!(
                old == new,
                "{lesson}: its measured tables are not what Docker, Podman and lab have here; write them with LAB_UPDATE_LESSONS=1 sudo cargo test --test it peers::the_lessons -- --include-ignored, and read the difference:\n{layers}\n{calls}"
            );
        }
    }
    assert_nothing_left(cgroup, &before);
}

/// The text with the block after `<!-- measured: NAME -->`, up to
/// `<!-- /measured -->`, replaced by `table`.
fn fill_measured(text: &str, name: &str, table: &str) -> String {
    let open = format!("<!-- measured: {name} -->\n");
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        out.push_str(&rest[..i + open.len()]);
        rest = &rest[i + open.len()..];
        let end = rest
            .find("<!-- /measured -->")
            .expect("<!-- /measured --> closes the table");
        out.push_str(table);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// iptables-save without its counters and comment lines: the rules and the
/// chains' policies.
fn iptables_rules() -> String {
    let out = Command::new("iptables-save").output().unwrap();
    text(&out)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.starts_with(':') {
            // ":FORWARD DROP [12:345]": the counters go.
            true => l.rsplit_once(' ').map_or(l, |(chain, _)| chain),
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// lab beside Docker, as on a classroom VM where Docker is installed: dockerd
/// with its bridge and rules in this namespace (FORWARD policy DROP, its
/// DOCKER chains, its NAT) and a published port, an uplink to an "outside"
/// namespace. lab's steps 5, 7 and 8 pass, two lab containers reach each other
/// and the outside, Docker's container still reaches the outside and its port
/// still answers after lab, and the rules are as before.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn lab_beside_docker_keeps_both_working() {
    let Some(_g) = privileged() else { return };
    if !peers::have("dockerd", "docker.io") {
        return;
    }
    let before = existing();
    let outside = Outside::new();
    let cgroup = CgroupParent::new();
    let docker = Docker::start(&cgroup, true);
    docker.import();
    docker.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--ulimit",
        "nofile=1024:1024",
        "-p",
        "18090:80",
        "labroot",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    // From the outside, to the host's uplink address: Docker's DNAT.
    let fetch = || {
        outside.run(|| -> Result<String, String> {
            use std::io::{Read, Write};
            let addr = format!("{}:18090", Outside::HOST);
            let timeout = std::time::Duration::from_secs(3);
            let mut s = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), timeout)
                .map_err(|e| format!("{addr}: {e}"))?;
            s.set_read_timeout(Some(timeout)).unwrap();
            s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            Ok(got)
        })
    };
    let ping_out = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["ping", "-c1", "-W2", Outside::ROUTER]);
        docker.cli().args(&all).output().unwrap().status.success()
    };
    let mut answered = Err(String::new());
    for _ in 0..50 {
        answered = fetch();
        if answered.as_ref().is_ok_and(|a| a.starts_with("HTTP/1")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        answered.as_ref().is_ok_and(|a| a.starts_with("HTTP/1")),
        "Docker's published port, before lab: {answered:?}"
    );
    assert!(
        ping_out(&["web"]),
        "Docker's container reaches the outside, before lab"
    );
    let rules = iptables_rules();
    assert!(
        rules.contains(":FORWARD DROP") && rules.contains("-j DOCKER"),
        "Docker's rules are here:\n{rules}"
    );

    for n in ["5", "7", "8"] {
        let out = lab_isolated()
            .args(["verify", n, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab verify {n} beside Docker:\n{}{}",
            text(&out),
            err(&out)
        );
    }
    // Two lab containers: the second reaches the first and the outside.
    let mut first = lab_isolated();
    first.args(["step", "5", "--name", "k1", "--", "sleep", "1006"]);
    first.stdout(std::process::Stdio::null());
    let first = Background::spawn(first);
    wait_for_process("sleep 1006");
    let ps = text(&lab_isolated().arg("ps").output().unwrap());
    let address = ps
        .lines()
        .find(|l| l.starts_with("k1"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("10.")))
        .unwrap_or_else(|| panic!("no address of k1 in lab ps:\n{ps}"))
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let second = lab_isolated()
        .args(["step", "5", "--name", "k2", "--no-checks", "--", "sh", "-c"])
        .arg(format!(
            "ping -c1 -W2 {address} && ping -c1 -W2 {}",
            Outside::ROUTER
        ))
        .output()
        .unwrap();
    first.stop();
    kill_leftovers("sleep 1006");
    assert!(
        second.status.success(),
        "k2 reaches k1 ({address}) and the outside:\n{}{}",
        text(&second),
        err(&second)
    );

    // Docker's side, after lab.
    settled();
    assert!(
        ping_out(&["web"]),
        "Docker's container reaches the outside, after lab"
    );
    let answered = fetch();
    assert!(
        answered.as_ref().is_ok_and(|a| a.starts_with("HTTP/1")),
        "Docker's published port, after lab: {answered:?}"
    );
    assert_eq!(iptables_rules(), rules, "the rules after lab");
    drop(docker);
    assert_nothing_left(cgroup, &before);
}
