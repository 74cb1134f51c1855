//! The classroom VM's provisioning, for real: vm/provision.sh on a fresh Debian 12
//! root filesystem (made by mmdebstrap), in a mount and pid namespace of its own
//! with the machine's /dev and /sys, as a VM's first boot would be; afterwards
//! `lab verify 4` passes inside it. The Vagrantfile runs the same script on
//! Ubuntu 24.04. It downloads Debian packages and Rust crates from their
//! registries (the network namespace is the machine's: the sandbox changes no
//! interface, route or rule), and takes a few minutes.

use crate::support;
use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn provisioning_a_fresh_debian_makes_lab_verify_4_pass() {
    let Some(_g) = support::root_or_skip() else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("provision");
    let root = work.join("root");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let _cleanup = RemoveOnDrop(work.clone());

    // A fresh Debian 12, as the classroom VM starts (made once: support.rs).
    std::fs::create_dir_all(&root).unwrap();
    let unpacked = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-xpf"])
        .arg(support::debian_tarball())
        .status()
        .unwrap();
    assert!(unpacked.success(), "unpacking the Debian tarball");
    // The repository as the VM's shared folder holds it, without build output.
    let mut copy = Command::new("tar")
        .arg("-C")
        .arg(repo)
        .args(["--exclude=./target", "--exclude=./.git", "-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::create_dir_all(root.join("vagrant")).unwrap();
    let unpack = Command::new("tar")
        .arg("-C")
        .arg(root.join("vagrant"))
        .args(["-xf", "-"])
        .stdin(copy.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(unpack.success() && copy.wait().unwrap().success());
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).unwrap();
    // The machine's own trust anchors too (CI machines reach the registries through
    // a TLS-inspecting proxy), as a VM gets them from its network's administrators.
    let local_ca = Path::new("/usr/local/share/ca-certificates");
    for e in std::fs::read_dir(local_ca).into_iter().flatten().flatten() {
        let to = root.join("usr/local/share/ca-certificates");
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }

    // The fresh system as a VM sees it: its own root (pivot_root, so that lab can
    // pivot_root again inside), /proc of its own, the machine's /dev and /sys.
    let r = root.display();
    let sandbox = format!(
        "set -e
mount --make-rprivate /
mount --bind {r} {r}
mount -t proc proc {r}/proc
mount --rbind /sys {r}/sys
mount --rbind /dev {r}/dev
cd {r}
mkdir -p .old
pivot_root . .old
cd /
umount -l /.old
rmdir /.old
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
update-ca-certificates >/dev/null
/vagrant/vm/provision.sh /vagrant
# Tab completion, as an interactive bash loads it when lab is first typed.
bash -c '. /usr/share/bash-completion/bash_completion; _completion_loader lab; complete -p lab'
# A booted VM runs other processes, which the container must not see.
sleep 1000 & sleep 1000 &
lab verify 4"
    );
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "bash", "-c", &sandbox])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let said = format!("{}{}", support::text(&out), support::err(&out));
    assert!(out.status.success(), "provisioning failed:\n{said}");
    assert!(said.contains("The classroom VM is ready"), "{said}");
    assert!(said.contains(" -F _lab lab"), "{said}");
    // Every check of steps 1 to 4 ran and none failed. Three escapes may be
    // skipped, each saying why: a machine that guards its disks, a kernel
    // without modules (this one), files on no ext2/3/4 to forge a handle of.
    assert!(!said.contains("\n  fail "), "{said}");
    let verdict = said
        .lines()
        .find(|l| l.contains(" checks passed"))
        .unwrap_or_else(|| panic!("no verdict:\n{said}"));
    let numbers: Vec<usize> = verdict
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (passed, total) = (numbers[0], numbers[1]);
    assert_eq!(total, support::check_names(4).len(), "{verdict}");
    assert!(passed + 3 >= total, "{verdict}");
}

/// The work directory goes, also when the test fails (its mounts went with the
/// sandbox's namespace).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
