//! Pure cgroup v2, as on the classroom VMs (Ubuntu 24.04, Debian 12), which this
//! hybrid machine cannot show: boot Debian's kernel under qemu with an initramfs
//! holding lab (scripts/cgroup2-vm.sh), run `lab verify` of steps 6 to 9
//! there, and read the results from the serial console. About a minute.

use crate::support::*;
use std::process::Command;

#[test]
fn steps_6_to_9_pass_on_pure_cgroup_v2_in_a_vm() {
    let work = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm");
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let kernel = std::fs::read_dir(work.join("kernel/boot")).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("vmlinuz")))
    });
    let missing: Vec<&str> = [
        (!have("qemu-system-x86_64")).then_some("qemu-system-x86"),
        (!have("busybox")).then_some("busybox-static"),
        (!have("cpio")).then_some("cpio"),
        (!kernel).then_some("the kernel (scripts/cgroup2-vm.sh --fetch)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        let why = format!("needs {}; sudo ./test.sh installs them", missing.join(", "));
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the cgroup v2 VM test cannot run: {why}");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED the cgroup v2 VM test: {why}");
        return;
    }
    // Alone: the VM keeps a core busy for a minute (support::serial).
    let _alone = serial();
    let out = Command::new("scripts/cgroup2-vm.sh")
        .arg(LAB)
        .arg(&work)
        .output()
        .expect("run scripts/cgroup2-vm.sh");
    let log = text(&out);
    let result = |step: &str| {
        log.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("LAB-RESULT step={step} rc="))
            })
            .map(str::to_string)
    };
    assert!(
        log.contains("LAB-CGROUP2 ")
            && log
                .lines()
                .any(|l| l.contains("LAB-CGROUP2") && l.contains("memory") && l.contains("pids")),
        "not a cgroup v2 guest:\n{log}{}",
        err(&out)
    );
    // lab doctor finds cgroup v2 (on this machine it finds v1) and nothing missing.
    assert!(
        log.contains("LAB-DOCTOR rc=0"),
        "lab doctor in the VM:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("LAB-DOCTOR")
            && l.contains("ok      cgroups            cgroup v2 at /sys/fs/cgroup")),
        "{log}"
    );
    assert_eq!(
        result("6").as_deref(),
        Some("0"),
        "lab verify 6 in the VM:\n{log}"
    );
    assert_eq!(
        result("7").as_deref(),
        Some("0"),
        "lab verify 7 in the VM:\n{log}"
    );
    assert_eq!(
        result("8").as_deref(),
        Some("0"),
        "lab verify 8 in the VM:\n{log}"
    );
    assert_eq!(
        result("9").as_deref(),
        Some("0"),
        "lab verify 9 in the VM:\n{log}"
    );
    // Every check of steps 6 to 9 answered (snapshots/checks-N.snap); none failed.
    // Skipped: alone, "other containers answer" has nothing to check; the VM's
    // root is a tmpfs, so the device-node escape has no disk to read, and the
    // forged file handle no ext4 to open (support::MACHINE_SKIPS).
    let rows: Vec<&str> = log.lines().filter(|l| l.contains("\"passed\": ")).collect();
    let checks: usize = (6..=9).map(|n| check_names(n).len()).sum();
    assert_eq!(rows.len(), checks, "{log}");
    assert!(
        !log.contains("\"passed\": false, \"skipped\": false"),
        "{log}"
    );
    for row in rows.iter().filter(|r| r.contains("\"skipped\": true")) {
        assert!(
            row.contains("other containers on lab0") || unshowable(row) == 1,
            "an unexpected skip in the VM: {row}"
        );
    }
    // On cgroup v2 mounted with nsdelegate (as systemd does, and the VM), root
    // inside mounts cgroup2, but the kernel refuses its write to its own
    // memory.max: the cgroup namespace of step 6 is its root. (Opening the file
    // alone succeeds: the check writes the value back.)
    assert!(
        log.contains(
            "closed already here, before step 8 closes it everywhere: mount -t cgroup2 none"
        ) && log.contains("worked, but writing its own /memory.max: Operation not permitted"),
        "{log}"
    );
    // On Debian's kernel, modules load: the escape works until step 8 closes it.
    assert!(
        log.contains("it works at step 7, as expected (step 8 closes it): finit_module(-1) got past the permission check"),
        "{log}"
    );
    assert!(
        log.contains("a published port reaches a server in the container\", \"passed\": true"),
        "{log}"
    );
    // The v2 files, not v1's: the CPU quota's stop is counted in cpu.stat, the
    // OOM kill in memory.events.
    // (From the count before the loops start: when the emulated machine is slow,
    // the checks before this one may have used up a period's quota already.)
    let throttled: Vec<(u64, u64)> = log
        .split("then none until the next (cpu.stat nr_throttled ")
        .skip(1)
        .filter_map(|rest| {
            let (from, rest) = rest.split_once(" -> ")?;
            let to = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            Some((from.parse().ok()?, to.parse().ok()?))
        })
        .collect();
    assert!(
        throttled.len() == 4 && throttled.iter().all(|(from, to)| to > from),
        "{throttled:?}\n{log}"
    );
    assert!(log.contains("memory.events oom_kill 0 -> 1"), "{log}");
    // Debian 12's kernel (6.1) names the option as it was mounted: `volatile`
    // (lesson 7 says so; newer kernels write `fsync=volatile`).
    let root = log
        .lines()
        .find_map(|l| l.strip_prefix("LAB-ROOTMOUNT "))
        .unwrap_or_default();
    assert!(
        root.contains(" - overlay ") && super_options(root).contains(&"volatile"),
        "the container's overlay in the VM is not `volatile`: {root}\n{log}"
    );
    // The container's first process is born in its cgroup: lab's own join
    // (through cgroup.procs, about 10 ms of a machine-wide lock) is not needed.
    // Inside, its cgroup namespace (made at birth too) shows that cgroup as /.
    for step in ["6", "9"] {
        let born = format!(
            "LAB-BORN step={step} rc=0 in=0::/ done by clone3: born in the cgroup, CLONE_INTO_CGROUP"
        );
        assert!(log.lines().any(|l| l.trim() == born), "{born}:\n{log}");
    }
    // So are the checks' probe (each verify, steps 6 to 9) and lab exec's program.
    let probes = log
        .lines()
        .filter(|l| l.contains("lab timing: the probe is born in the container's cgroup: clone3 with CLONE_INTO_CGROUP"))
        .count();
    assert_eq!(probes, 4, "{log}");
    assert!(log.lines().any(|l| l.trim() == "LAB-EXEC 0::/"), "{log}");
    // Under a cgroup that holds processes (as a systemd session does), lab
    // explains the no-internal-process rule and leaves nothing behind.
    assert_eq!(result("busy").as_deref(), Some("1"), "{log}");
    assert!(log.contains("the no-internal-process rule"), "{log}");
    assert!(log.contains("LAB-LEFT []"), "{log}");
}
