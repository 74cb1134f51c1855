//! lab's AppArmor profile (scripts/apparmor/lab), parsed and compiled by
//! AppArmor 4's apparmor_parser, as lab.sh installs it on Ubuntu 24.04: in a
//! fresh Debian 13 ("trixie") root filesystem made by mmdebstrap with its
//! `apparmor` package. Nothing is loaded into a kernel (this machine's has no
//! AppArmor): the parser compiles for the kernel features that package ships,
//! which include the mediation of user namespaces, and every warning is an
//! error. A copy with a mistake in it must fail the same way, or the check
//! proves nothing.

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
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/apparmor/lab");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apparmor");
    let _ = std::fs::remove_dir_all(&work);
    let _cleanup = RemoveOnDrop(work.clone());
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

    let chroot = |args: &[&str]| -> Output {
        Command::new("chroot")
            .arg(&root)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap()
    };
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
