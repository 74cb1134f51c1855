//! lab's AppArmor profile (scripts/apparmor/lab) and how lab.sh installs it,
//! in a fresh Debian 13 ("trixie") root filesystem made by mmdebstrap with its
//! `apparmor` package (AppArmor 4), entered with chroot. Nothing is loaded into
//! a kernel (this machine's has no AppArmor): the parser compiles the profile
//! for the kernel features that package ships, which include the mediation of
//! user namespaces, and every warning is an error; a copy with a mistake in it
//! must fail the same way, or the check proves nothing. lab.sh's step
//! (scripts/common.sh, apparmor_profile) runs against the files it reads, made
//! in that tree: the switch of Ubuntu's kernel, the kernel's list of profiles.

use crate::support;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What the parser is asked: everything but loading into the kernel, no cache,
/// the kernel features of the package, every warning an error.
const PARSE: &[&str] = &[
    "apparmor_parser",
    "--skip-kernel-load",
    "--skip-cache",
    "--kernel-features",
    "/usr/share/apparmor-features/features",
    "--Werror=all",
];

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn apparmor_4_parses_labs_profile_and_rejects_a_broken_one() {
    // Root and one at a time, in the machine's network namespace: mmdebstrap
    // needs Debian's mirror the first time (privileged!() would cut it off).
    let Some(_g) = support::root_or_skip() else {
        return;
    };
    let profile = repo().join("scripts/apparmor/lab");
    let (root, _cleanup) = trixie_root("apparmor-parser");
    let chroot = |args: &[&str]| in_chroot(&root, args);
    let version = chroot(&["apparmor_parser", "--version"]);
    let version = support::text(&version);
    assert!(version.contains("AppArmor parser version 4."), "{version}");

    // Where lab.sh puts it, so that its `include if exists <local/lab>` and
    // <tunables/global> resolve as they will on the machine.
    std::fs::copy(&profile, root.join("etc/apparmor.d/lab")).unwrap();
    let out = chroot(&[PARSE, &["/etc/apparmor.d/lab"]].concat());
    assert!(
        out.status.success(),
        "{}: apparmor_parser rejects it:\n{}{}",
        profile.display(),
        support::text(&out),
        support::err(&out)
    );
    // Its name is the one lab doctor looks for in the kernel's list of profiles.
    let names = chroot(&["apparmor_parser", "--names", "/etc/apparmor.d/lab"]);
    assert_eq!(support::text(&names), "lab\n", "{}", support::err(&names));

    // The negative control: one word misspelt, the parser says no.
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("\n  userns,\n"), "{text}");
    std::fs::write(
        root.join("etc/apparmor.d/broken"),
        text.replace("\n  userns,\n", "\n  usrens,\n"),
    )
    .unwrap();
    let out = chroot(&[PARSE, &["/etc/apparmor.d/broken"]].concat());
    assert!(
        !out.status.success(),
        "a broken copy passed: the check proves nothing"
    );
    assert!(
        support::err(&out).contains("syntax error"),
        "{}",
        support::err(&out)
    );
}

/// lab.sh's AppArmor step does nothing where the kernel has no such switch
/// (Debian's, this machine's) or has it off; where it is on, it installs the
/// profile and loads it with apparmor_parser -r, saying what and why, once.
/// Whatever fails in it (no apparmor_parser, a kernel that refuses the profile)
/// is said, and lab.sh goes on: lab works with sudo without it.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn lab_sh_installs_the_profile_only_where_apparmor_restricts_user_namespaces() {
    let Some(_g) = support::root_or_skip() else {
        return;
    };
    let (root, _cleanup) = trixie_root("apparmor-lab-sh");
    // What the step reads of lab's repository.
    let repo_in = root.join("lab");
    std::fs::create_dir_all(repo_in.join("scripts/apparmor")).unwrap();
    for f in ["scripts/common.sh", "scripts/apparmor/lab"] {
        std::fs::copy(repo().join(f), repo_in.join(f)).unwrap();
    }
    let step = || {
        let out = in_chroot(
            &root,
            &[
                "bash",
                "-c",
                "set -euo pipefail; cd /lab; . scripts/common.sh; apparmor_profile",
            ],
        );
        assert!(out.status.success(), "{}", support::err(&out));
        format!("{}{}", support::text(&out), support::err(&out))
    };
    let installed = root.join("etc/apparmor.d/lab");
    let switch = root.join("proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let profiles = root.join("sys/kernel/security/apparmor/profiles");
    let parser = root.join("usr/sbin/apparmor_parser");

    // No switch (Debian's kernels): nothing said, nothing installed.
    assert_eq!(step(), "");
    assert!(!installed.exists());
    // The switch off: the same.
    std::fs::create_dir_all(switch.parent().unwrap()).unwrap();
    std::fs::write(&switch, "0\n").unwrap();
    assert_eq!(step(), "");
    assert!(!installed.exists());

    // On, and no apparmor_parser to load a profile: said, nothing installed.
    std::fs::write(&switch, "1\n").unwrap();
    let hidden = parser.with_extension("hidden");
    std::fs::rename(&parser, &hidden).unwrap();
    let said = step();
    std::fs::rename(&hidden, &parser).unwrap();
    assert!(said.contains("apparmor_parser, which would load lab's profile, is not installed: lab step 9 needs sudo"), "{said}");
    assert!(!installed.exists());

    // On: installed and loaded, said why. This kernel has no AppArmor, so the
    // load fails, which is said too.
    let said = step();
    assert!(
        said.contains("AppArmor keeps users from making user namespaces here"),
        "{said}"
    );
    assert!(said.contains("Installing lab's AppArmor profile as /etc/apparmor.d/lab and loading it (apparmor_parser -r /etc/apparmor.d/lab)"), "{said}");
    assert!(
        said.contains("apparmor_parser could not load /etc/apparmor.d/lab"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(repo().join("scripts/apparmor/lab")).unwrap()
    );
    // Installed, and loaded as the kernel's list says: nothing to do, nothing said.
    std::fs::create_dir_all(profiles.parent().unwrap()).unwrap();
    std::fs::write(&profiles, "crun (unconfined)\nlab (unconfined)\n").unwrap();
    assert_eq!(step(), "");
    // A profile of an older lab: installed and loaded again.
    std::fs::write(&installed, "# an older profile\n").unwrap();
    assert!(step().contains("Installing lab's AppArmor profile"));
    // Not in the kernel's list (a reboot without it): loaded again.
    std::fs::write(&profiles, "crun (unconfined)\n").unwrap();
    assert!(step().contains("Installing lab's AppArmor profile"));
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Debian 13 tree, unpacked in target/tmp/NAME, and what removes it when
/// the test ends, also when it fails.
fn trixie_root(name: &str) -> (PathBuf, RemoveOnDrop) {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&work);
    let cleanup = RemoveOnDrop(work.clone());
    let root = work.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let unpacked = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-xpf"])
        .arg(trixie_with_apparmor())
        .status()
        .unwrap();
    assert!(unpacked.success(), "unpacking the Debian 13 tarball");
    (root, cleanup)
}

/// A command in the tree, by chroot (no mount: nothing to undo).
fn in_chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap()
}

/// A Debian 13 root filesystem with AppArmor's tools, as a tarball under
/// target/ (made once, in about 15 s; later runs unpack it).
fn trixie_with_apparmor() -> PathBuf {
    let tarball = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-trixie-apparmor.tar");
    if !tarball.is_file() {
        // mmdebstrap chooses the format by the name's extension: .tar for a tarball.
        let part = tarball.with_extension("part.tar");
        let _unfinished = RemoveOnDrop(part.clone());
        let out = Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=essential",
                "--include=apparmor",
                "trixie",
            ])
            .arg(&part)
            .arg("http://deb.debian.org/debian")
            .output()
            .expect("mmdebstrap (test.sh installs it: apt-get install mmdebstrap)");
        assert!(out.status.success(), "mmdebstrap: {}", support::err(&out));
        std::fs::rename(&part, &tarball).unwrap();
    }
    tarball
}

/// A path removed when the test ends, also when it fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}
