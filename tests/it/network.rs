//! Step 5 for real: bridge, veth pairs, NAT and published ports. Every test runs
//! in a network namespace of its own that plays the host (support::privileged),
//! with an "outside" namespace behind its default route where a test needs one:
//! the machine's own interfaces, routes, iptables and ip_forward are never touched,
//! and no packet goes anywhere but into namespaces the test made.

use crate::support::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::process::Command;

/// The host's network as a student would compare it: links, routes, iptables
/// rules (without counters) and ip_forward.
fn host_network() -> String {
    settled();
    let run = |cmd: &[&str]| {
        let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let links: Vec<String> = run(&["ip", "-o", "link"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    let rules: Vec<String> = run(&["iptables-save"])
        .lines()
        .filter(|l| l.starts_with("-A") || (l.starts_with(':') && !l.contains(" ACCEPT ")))
        .map(String::from)
        .collect();
    format!(
        "links: {links:?}\nroutes:\n{}rules:\n{}\nip_forward: {}",
        run(&["ip", "route"]),
        rules.join("\n"),
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    )
}

fn lab_rules() -> usize {
    settled();
    let out = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&out.stdout).matches("LAB-").count()
}

fn has_link(name: &str) -> bool {
    settled();
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .unwrap()
        .status
        .success()
}

fn start(args: &[&str]) -> Background {
    let mut cmd = lab_isolated();
    cmd.args(["step", "5"]).args(args);
    cmd.stdout(std::process::Stdio::null());
    Background::spawn(cmd)
}

/// A container that takes the address of one that has just left is reachable at
/// once: its MAC is made of its address, so what the host learned of the first
/// (its ARP entry, reachable for half a minute) is true of the second too.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_later_container_with_the_same_address_is_reachable_at_once() {
    let _g = privileged!();
    let _outside = Outside::new();
    let before = host_network();
    let holder = start(&["--no-checks", "--name", "holder", "--", "sleep", "4321"]);
    wait_for_process("sleep 4321");
    // (The check after exit waits until the first one's veth is gone: the
    // second takes the same address.)
    for round in 1..=2 {
        let out = lab_isolated().args(["verify", "5"]).output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            text(&out),
            err(&out)
        );
    }
    holder.stop();
    assert_eq!(host_network(), before);
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn two_containers_share_lab0_reach_each_other_and_the_host_is_restored() {
    let _g = privileged!();
    let _outside = Outside::new();
    let before = host_network();
    let a = start(&["--name", "web", "--", "sleep", "5501"]);
    wait_for_process("sleep 5501");
    // lab0's MAC address is fixed: a bridge left alone takes the lowest MAC of its
    // ports, and would change it under the containers as they come and go.
    let mac = || {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "lab0"])
            .output()
            .unwrap();
        text(&out)
            .split("link/ether ")
            .nth(1)
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(mac(), "02:00:0a:c8:00:01");
    // The second container's checks ping the first one.
    let out = lab_isolated()
        .args(["verify", "5", "--json", "--name", "db"])
        .output()
        .unwrap();
    let json = text(&out);
    assert!(out.status.success(), "{json}{}", err(&out));
    let row = json
        .lines()
        .find(|l| l.contains("other containers on lab0 answer ping"))
        .unwrap();
    assert!(
        row.contains("\"passed\": true") && row.contains("web 10.200.0.2 answered"),
        "{row}"
    );
    assert!(json.contains("eth0 up, 10.200.0.3/24"), "{json}");
    // While web runs, lab0 and the rules stay: db was not the last one.
    assert!(has_link("lab0") && lab_rules() > 0);
    assert_eq!(
        mac(),
        "02:00:0a:c8:00:01",
        "lab0's MAC changed with its ports"
    );
    assert!(a.stop().code() == Some(143));
    assert_eq!(
        host_network(),
        before,
        "the host's network is not as it was"
    );
    let left = leftover_containers();
    assert!(
        !left.contains(&"web".into()) && !left.contains(&"db".into()),
        "{left:?}"
    );
}

/// The last container's veth goes with lab0, even while something keeps the
/// container's network namespace (here: this test holds it open, as `ip netns
/// attach` or a process that joined it would): lab's removal deletes it rather
/// than wait for the kernel to remove it with the namespace.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_last_containers_veth_goes_while_its_namespace_is_held() {
    let _g = privileged!();
    let before = host_network();
    let c = start(&["--no-checks", "--", "sleep", "6543"]);
    let pid = wait_for_process("sleep 6543");
    let held = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    assert!(has_link("lab0"));
    assert_eq!(c.stop().code(), Some(143));
    // (host_network waits for the note of lab0's removal.)
    assert_eq!(
        host_network(),
        before,
        "the host's network is not as it was while the container's namespace is held"
    );
    drop(held);
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn nat_and_published_ports_work_from_outside_even_with_forward_drop() {
    let _g = privileged!();
    let outside = Outside::new();
    // What Docker does to a host: the FORWARD policy is DROP.
    assert!(Command::new("iptables")
        .args(["-P", "FORWARD", "DROP"])
        .status()
        .unwrap()
        .success());
    let before = host_network();
    // A server outside, that says whom it saw.
    let server = outside.run(|| std::net::TcpListener::bind((Outside::ROUTER, 5599)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, from) = server.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        (from.ip().to_string(), got)
    });
    let web = start(&[
        "--publish",
        "8080:80",
        "--",
        "sh",
        "-c",
        &format!(
            "echo from-container | nc {} 5599; echo served-by-$(hostname) | nc -l -p 80",
            Outside::ROUTER
        ),
    ]);
    let (seen_as, got) = server.join().unwrap();
    // MASQUERADE: the outside sees the host's address, not the container's.
    assert_eq!(got.trim(), "from-container");
    assert_eq!(seen_as, Outside::HOST);
    // DNAT: a client outside reaches the container's server through the host's port.
    let reply = outside.run(|| {
        for _ in 0..100 {
            if let Ok(mut c) = std::net::TcpStream::connect((Outside::HOST, 8080)) {
                let mut s = String::new();
                let _ = c.write_all(b"hi\n");
                c.read_to_string(&mut s).unwrap();
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nothing answered on {}:8080", Outside::HOST);
    });
    assert_eq!(reply.trim(), "served-by-c1");
    let status = web.wait();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        host_network(),
        before,
        "the host's network is not as it was"
    );
}

/// lab's rules as iptables-save prints them, without counters.
fn lab_rule_lines() -> Vec<String> {
    settled();
    let out = Command::new("iptables-save").output().unwrap();
    text(&out)
        .lines()
        .filter(|l| l.starts_with("-A") && l.contains("LAB-"))
        .map(String::from)
        .collect()
}

/// A container's published ports are added and removed together (one
/// iptables-restore each way): when it leaves while another container stays,
/// its rules go and the other's stay, even if one of its rules was removed by
/// hand meanwhile (then the removal looks at what is there first).
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_leaving_containers_published_ports_go_and_the_others_stay() {
    let _g = privileged!();
    let _outside = Outside::new();
    let before = host_network();
    let holder = start(&["--no-checks", "-p", "8090:80", "--", "sleep", "4391"]);
    wait_for_process("sleep 4391");
    let held = lab_rule_lines();
    for by_hand in [false, true] {
        let web = start(&[
            "--no-checks",
            "-p",
            "8091:80",
            "-p",
            "8092:81",
            "--",
            "sleep",
            "4392",
        ]);
        wait_for_process("sleep 4392");
        let with_web = lab_rule_lines();
        let added: Vec<&String> = with_web.iter().filter(|l| !held.contains(l)).collect();
        // DNAT and FORWARD for each port.
        assert_eq!(added.len(), 4, "{added:#?}");
        for port in ["8091", "8092"] {
            assert!(added
                .iter()
                .any(|l| l.contains(&format!("--dport {port} "))));
        }
        if by_hand {
            let dnat = added
                .iter()
                .find(|l| l.contains("--dport 8092 "))
                .unwrap()
                .replacen("-A", "-D", 1);
            let args: Vec<&str> = dnat.split_whitespace().collect();
            let ok = Command::new("iptables")
                .args(["-t", "nat"])
                .args(&args)
                .status()
                .unwrap();
            assert!(ok.success(), "{dnat}");
        }
        assert_eq!(web.stop().code(), Some(143));
        assert_eq!(lab_rule_lines(), held, "by hand: {by_hand}");
    }
    holder.stop();
    assert_eq!(host_network(), before);
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn network_errors_are_clear_and_leave_nothing() {
    let _g = privileged!();
    let _outside = Outside::new();
    let before = host_network();
    let fails_with = |args: &[&str], says: &str| {
        let containers = leftover_containers();
        let out = lab_isolated()
            .args(["step", "5"])
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", err(&out));
        assert!(err(&out).contains(says), "{args:?}: {}", err(&out));
        assert_eq!(leftover_containers(), containers, "{args:?}");
    };
    // A subnet the host already routes.
    fails_with(
        &["--subnet", "198.18.0.0/24"],
        "subnet 198.18.0.0/24 is taken",
    );
    assert_eq!(host_network(), before);
    // A port another container publishes.
    let web = start(&["-p", "8081:80", "--", "sleep", "5502"]);
    wait_for_process("sleep 5502");
    fails_with(
        &["-p", "8081:80"],
        "port 8081 is already published by container c1",
    );
    // A port a program of the host listens on.
    let taken = std::net::TcpListener::bind(("0.0.0.0", 8082)).unwrap();
    fails_with(&["-p", "8082:80"], "port 8082 is in use on the host");
    drop(taken);
    web.stop();
    assert_eq!(host_network(), before);
    // lab0 taken by an interface that is not lab's bridge.
    let ok = Command::new("ip")
        .args([
            "link",
            "add",
            "lab0",
            "type",
            "veth",
            "peer",
            "name",
            "lab0-peer",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let with_foreign = host_network();
    fails_with(&[], "an interface named lab0 exists and is not a bridge");
    assert_eq!(host_network(), with_foreign);
    Command::new("ip")
        .args(["link", "del", "lab0"])
        .status()
        .unwrap();
    // iptables missing: hidden in a mount namespace of this command only.
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "for f in /usr/sbin/iptables /sbin/iptables; do [ -e $f ] && mount --bind /dev/null $f; done; exec {} step 5 -- true",
            LAB
        ))
        .env("LAB_HOME", home())
        .env("LAB_RUN", run_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(
        err(&out).contains("iptables not found") && err(&out).contains("apt-get install iptables"),
        "{}",
        err(&out)
    );
    assert_eq!(host_network(), before);
    assert!(leftover_containers().is_empty());
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn after_kill_9_at_step_5_the_next_run_or_lab_clean_removes_lab0_and_the_rules() {
    let _g = privileged!();
    let before = host_network();
    for clean in [false, true] {
        let lab = start(&["-p", "8090:80", "--", "sleep", "5503"]);
        wait_for_process("sleep 5503");
        lab.signal(Signal::SIGKILL);
        lab.wait();
        // The container died with lab (its veth with it); lab0 and the rules stay.
        assert!(has_link("lab0") && lab_rules() > 0);
        let out = if clean {
            // A scratch LAB_HOME, so that the test run's root filesystem stays.
            let scratch = run_dir().join("clean-home-5");
            std::fs::create_dir_all(&scratch).unwrap();
            let out = lab_isolated()
                .env("LAB_HOME", &scratch)
                .arg("clean")
                .output()
                .unwrap();
            assert!(text(&out).contains("bridge lab0"), "{}", text(&out));
            out
        } else {
            lab_isolated()
                .args(["step", "5", "--", "true"])
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{}", err(&out));
        assert_eq!(host_network(), before, "clean={clean}");
        assert!(!has_link("lab0"));
    }
}

/// The process removing lab0 after the last container was killed before it
/// finished (its note names a process that is gone): the next start finishes
/// that removal and starts, and never waits on its own lock (it did: it held
/// lab's network lock while finishing the removal, which takes that lock).
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_start_finishes_a_removal_of_lab0_whose_process_was_killed() {
    let _g = privileged!();
    let before = host_network();
    let note = run_dir().join("lab0-removal");
    let _note = RemoveOnDrop(note.clone());
    for lab0_left in [false, true] {
        if lab0_left {
            // The remover killed before it deleted anything: lab0 and the rules
            // stay. (Made so: lab killed at step 5 leaves them, and its
            // container's state, removed here, is what the remover removes first.)
            let lab = start(&["--no-checks", "--name", "gone", "--", "sleep", "5507"]);
            wait_for_process("sleep 5507");
            lab.signal(Signal::SIGKILL);
            lab.wait();
            std::fs::remove_dir_all(run_dir().join("containers/gone")).unwrap();
            assert!(has_link("lab0") && lab_rules() > 0);
        }
        // A process that has ended: the note's owner is gone.
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        std::fs::write(&note, format!("{pid} 1\n")).unwrap();
        let mut run = lab_isolated();
        run.args(["step", "5", "--no-checks", "--", "true"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut lab = Background::spawn(run);
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = lab.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "lab step 5 hangs after a removal of lab0 whose process was killed (lab0 left: {lab0_left})"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stderr = lab.stderr_text();
        assert!(status.success(), "lab0 left: {lab0_left}: {stderr}");
        assert_eq!(host_network(), before, "lab0 left: {lab0_left}");
        assert!(!note.exists());
    }
}

/// `lab script 5` printed while a container runs takes the next free address, and
/// works right after another container left (whose veth the kernel may still be
/// removing): the script waits for it instead of failing on the name.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_script_beside_a_running_container_takes_the_next_address() {
    let _g = privileged!();
    let before = host_network();
    let holder = start(&["--name", "holder", "--", "sleep", "5521"]);
    wait_for_process("sleep 5521");
    let out = lab_isolated()
        .args(["script", "5", "--rootfs"])
        .arg(rootfs())
        .output()
        .unwrap();
    let script = text(&out);
    assert!(
        script.contains("ip addr add 10.200.0.3/24 dev eth0"),
        "the holder has 10.200.0.2:\n{script}"
    );
    let path = run_dir().join("script-beside.sh");
    std::fs::create_dir_all(run_dir()).unwrap();
    std::fs::write(&path, &script).unwrap();
    for _ in 0..3 {
        // A container of lab that takes .3 and leaves just before the script runs.
        let quick = lab_isolated()
            .args(["step", "5", "--no-checks", "--", "true"])
            .output()
            .unwrap();
        assert!(quick.status.success(), "{}", err(&quick));
        let ran = Command::new("bash")
            .arg(&path)
            .args([
                "sh",
                "-c",
                "ip -o -4 addr show eth0; ping -c 1 -W 2 10.200.0.2",
            ])
            .env("LAB_RUN", run_dir())
            .output()
            .unwrap();
        assert!(
            ran.status.success() && text(&ran).contains("10.200.0.3/24"),
            "the script failed:\n{}{}",
            text(&ran),
            err(&ran)
        );
    }
    std::fs::remove_file(&path).unwrap();
    holder.stop();
    assert_eq!(host_network(), before, "the host's network changed");
    assert!(!has_link("lab0"));
}
