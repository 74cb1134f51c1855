//! Layer 9, part 4: the file capabilities of the shifted copy. Next: `checks.rs`.
//!
//! A file capability (`security.capability`) gives a program capabilities when
//! it is run, whoever runs it: Debian's ping has cap_net_raw, so that anyone may
//! send ICMP. `chown` clears it, as it clears setuid bits, so the shifted copy
//! (shift.rs) loses it, and lab writes it back after the chowns.
//!
//! Which root it belongs to matters. An image's is revision 2, the host root's,
//! and the kernel honours it in every user namespace, the host's and those below
//! it. The copy's is namespaced: revision 3, which names the host ID of the root
//! it belongs to, here the range's first user, and is honoured only in a user
//! namespace whose root that user is: the container's. The copy's files are the
//! container's root's; so are their capabilities, and no one on the host gains
//! them by running the copy. `setcap -n ROOTID` writes one by hand; read from
//! inside the container (getcap there), it shows as revision 2, its own root's.
//! (In lab's container, step 8's no_new_privs keeps an exec from gaining
//! capabilities at all: the copy keeps them so that it is the image.)

use crate::engine::plan::{Action, RunContext};
use anyhow::Result;
use std::ffi::{CStr, CString};
use std::path::Path;

/// `shift_caps() ( ... )`: a shell function that writes the file capabilities
/// of a layer onto its shifted copy, after the chowns that cleared them, as
/// namespaced ones: `setcap -n BASE` writes revision 3 with rootid BASE. getcap
/// says `PATH CAPS`, CAPS from the first ` cap_` (or ` =`, every capability).
pub struct DefineShiftCaps;

impl Action for DefineShiftCaps {
    fn shell(&self) -> String {
        r#"shift_caps() ( list=$(mktemp) && trap 'rm -f "$list"' EXIT && getcap -r "$2" > "$list" || exit; while read -r c; do p=${c%% cap_*}; p=${p%% =*}; setcap -n "$1" "${c#"$p "}" "$3${p#"$2"}" || exit; done < "$list" )"#.into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab does it itself (Shift).
        Ok(())
    }
}

/// The extended attribute of a file capability.
const CAPS: &str = "security.capability";

/// A file capability as the host's root reads it (revision 2, or 1 or 3) made
/// the root's of the user namespaces where host user `rootid` is 0: revision
/// 3, `struct vfs_ns_cap_data` of linux/capability.h, six little-endian u32s:
/// magic_etc (0x03000000, with bit 0 when the capabilities are effective at
/// exec), permitted and inheritable of capabilities 0-31, the same of 32-63,
/// rootid. The kernel honours it in those namespaces only.
pub fn namespaced_caps(value: &[u8], rootid: u32) -> Result<Vec<u8>> {
    const EFFECTIVE: u32 = 1;
    let word = |i: usize| -> u32 {
        let b = &value[4 * i..4 * i + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    anyhow::ensure!(
        value.len() >= 4,
        "a file capability of {} bytes",
        value.len()
    );
    let magic = word(0);
    // Revision 1 holds capabilities 0-31 only; 3 has rootid after the sets.
    let (words, len) = match magic >> 24 {
        1 => (2, 12),
        2 => (4, 20),
        3 => (4, 24),
        r => anyhow::bail!("a file capability of revision {r}"),
    };
    anyhow::ensure!(
        value.len() == len,
        "a file capability of revision {} in {} bytes",
        magic >> 24,
        value.len()
    );
    let mut out = (0x0300_0000 | (magic & EFFECTIVE)).to_le_bytes().to_vec();
    for i in 1..=4 {
        let w = if i <= words { word(i) } else { 0 };
        out.extend(w.to_le_bytes());
    }
    out.extend(rootid.to_le_bytes());
    Ok(out)
}

/// Is this extended attribute a file capability?
pub(super) fn is_capability(name: &CStr) -> bool {
    name.to_bytes() == CAPS.as_bytes()
}

/// Write `value`, the file capability of a layer's file, onto its copy `to` as
/// the root's of the user namespaces whose root is host user `base`.
pub(super) fn write_namespaced(to: &Path, value: &[u8], base: u32) -> Result<()> {
    let name = CString::new(CAPS)?;
    crate::sys::set_xattr(to, &name, &namespaced_caps(value, base)?)
}

#[cfg(test)]
mod tests {
    use super::super::shift::{copy_tree, DefineShiftIds};
    use super::*;
    use crate::engine::plan::quote_path;
    use std::path::PathBuf;

    /// A directory of the test's, removed when dropped.
    struct Gone(PathBuf);

    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A revision 2 file capability, the host root's: `cap_net_raw=ep`.
    const NET_RAW_EP: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn a_file_capability_becomes_the_namespace_roots() {
        // cap_net_raw=ep for the namespaces whose root is host user 100000
        // (0x000186a0), as `setcap -n 100000 cap_net_raw=ep` writes it.
        let v3 = namespaced_caps(&NET_RAW_EP, 100_000).unwrap();
        assert_eq!(
            v3,
            [1, 0, 0, 3, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0x86, 0x01, 0]
        );
        // Revision 1 (capabilities 0-31 only), without effective: chown=p.
        let v1 = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            namespaced_caps(&v1, 1).unwrap(),
            [0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
        );
        // Revision 3 already: the sets kept, the root replaced.
        assert_eq!(namespaced_caps(&v3, 7).unwrap()[..20], v3[..20]);
        assert_eq!(namespaced_caps(&v3, 7).unwrap()[20..], [7, 0, 0, 0]);
        assert!(namespaced_caps(&NET_RAW_EP[..12], 1).is_err());
        assert!(namespaced_caps(&[0, 0, 0, 4], 1).is_err());
        assert!(namespaced_caps(&[], 1).is_err());
    }

    /// The file capability of `path`, as the host's root reads it.
    fn caps_of(path: &Path) -> Option<Vec<u8>> {
        crate::sys::xattrs(path)
            .unwrap()
            .into_iter()
            .find(|(n, _)| n.to_bytes() == CAPS.as_bytes())
            .map(|(_, v)| v)
    }

    /// `program /proc/self/status`, as user 1000 of a user namespace whose 0 is
    /// host user 100000 (a file capability of rootid 100000 counts there):
    /// the CapEff line.
    fn effective_in_namespace(program: &Path) -> String {
        use std::process::{Command, Stdio};
        let child = Command::new("unshare")
            .args(["--user", "--keep-caps", "sh", "-c"])
            .arg("until grep -q . /proc/self/uid_map; do sleep 0.01; done; exec setpriv --reuid 0 --regid 0 --clear-groups setpriv --reuid 1000 --regid 1000 --clear-groups \"$0\" /proc/self/status")
            .arg(program)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Once unshare has made the namespace (its ns/user is no longer ours),
        // the maps, from here as lab writes them; the shell waits for them.
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        let pid = child.id().to_string();
        let mut waited = 0;
        while ns(&pid) == ns("self") && waited < 500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        let mapped = ["uid_map", "gid_map"]
            .iter()
            .try_for_each(|m| std::fs::write(format!("/proc/{pid}/{m}"), "0 100000 65536"));
        if let Err(e) = mapped {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("writing the maps of process {pid}: {e}");
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// A file capability cleared by chown comes back on the shifted copy as the
    /// container's root's, in lab's copy and in the printed one alike: the
    /// same bytes, `getcap -n` says so, and in a user namespace of that root a
    /// user's exec gains it (and gains nothing from a copy without it).
    #[test]
    #[ignore = "needs root: sudo ./test.sh"]
    fn a_shifted_copy_keeps_its_file_capabilities_for_the_containers_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root (chown, setcap): sudo ./test.sh"
        );
        for tool in ["getcap", "setcap"] {
            assert!(
                crate::rootfs::which(tool).is_some(),
                "{tool} is missing: apt-get install libcap2-bin"
            );
        }
        let src = Gone(std::env::temp_dir().join(format!("lab-caps-{}", std::process::id())));
        let bin = src.0.join("a dir");
        std::fs::create_dir_all(&bin).unwrap();
        let cat = crate::rootfs::which("cat").unwrap();
        let caps = CString::new(CAPS).unwrap();
        for name in ["ping", "plain"] {
            std::fs::copy(&cat, bin.join(name)).unwrap();
        }
        crate::sys::set_xattr(&bin.join("ping"), &caps, &NET_RAW_EP).unwrap();
        std::fs::hard_link(bin.join("ping"), bin.join("ping2")).unwrap();
        // Permitted net_raw, inheritable chown, not effective: getcap says
        // `cap_chown=i cap_net_raw+p`, two words.
        let mixed = [
            0, 0, 0, 2, 0, 0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        std::fs::write(bin.join("mixed"), "").unwrap();
        crate::sys::set_xattr(&bin.join("mixed"), &caps, &mixed).unwrap();

        let ours = Gone(src.0.with_extension("lab"));
        copy_tree(&src.0, &ours.0, 100_000, &mut Default::default()).unwrap();
        let by_hand = Gone(src.0.with_extension("by-hand"));
        let script = format!(
            "{}\n{}\ncp -a {src} {to} && shift_ids 100000 {to} && shift_caps 100000 {src} {to}",
            DefineShiftIds.shell(),
            DefineShiftCaps.shell(),
            src = quote_path(&src.0),
            to = quote_path(&by_hand.0)
        );
        crate::engine::run_bash("-c", &script);

        for copy in [&ours.0, &by_hand.0] {
            for (name, source) in [
                ("ping", &NET_RAW_EP[..]),
                ("ping2", &NET_RAW_EP),
                ("mixed", &mixed),
            ] {
                let file = copy.join("a dir").join(name);
                assert_eq!(
                    caps_of(&file),
                    Some(namespaced_caps(source, 100_000).unwrap()),
                    "{}",
                    file.display()
                );
            }
            assert_eq!(caps_of(&copy.join("a dir/plain")), None);
            let getcap = std::process::Command::new("getcap")
                .arg("-n")
                .arg(copy.join("a dir/ping"))
                .output()
                .unwrap();
            let getcap = String::from_utf8_lossy(&getcap.stdout);
            assert!(
                getcap.contains(" cap_net_raw=ep [rootid=100000]"),
                "{getcap}"
            );
            // CAP_NET_RAW is capability 13.
            assert_eq!(
                effective_in_namespace(&copy.join("a dir/ping")),
                "0000000000002000"
            );
            assert_eq!(
                effective_in_namespace(&copy.join("a dir/plain")),
                "0000000000000000"
            );
        }
    }
}
