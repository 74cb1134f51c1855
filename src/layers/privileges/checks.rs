//! Layer 8, part 5: the checks.
//!
//! Two look at the container's process from the host (/proc/PID/status); the
//! rest run in a probe that has joined the container and taken on what its
//! processes live under, so they prove what those processes can and cannot do.
//! The escapes that this layer closes are checked by their own layers
//! (escapes.rs): from step 8 they must fail, with the errno that says why.

use super::{capabilities, masks};
use crate::engine::check::{Check, Kind, Outcome, Probe};
use nix::errno::Errno;
use std::path::Path;

pub(super) fn checks(_step: u8) -> Vec<Check> {
    vec![
        super::LAYER.check(
            "the container's processes hold no capability beyond Docker's default 14 (lab's: those but mknod)",
            "The capability sets are not cut: the last line must run the command through `setpriv --bounding-set ... --inh-caps -all` (or lab's init must drop them). Look at CapBnd, CapEff, CapInh in /proc/PID/status and decode them with `capsh --decode=HEX`.",
            Kind::Host(capabilities_cut),
        ),
        super::LAYER.check(
            "a seccomp filter is installed",
            "No seccomp filter: the last line must run through `bwrap --seccomp 10 ...` with the filter open as descriptor 10. Look at Seccomp and Seccomp_filters in /proc/PID/status.",
            Kind::Host(filter_installed),
        ),
        super::LAYER.check(
            "no_new_privs is set: no program it runs can gain privileges",
            "no_new_privs is not set: bwrap sets it when it installs the filter (`bwrap --seccomp 10 ...`), setpriv with --no-new-privs. Look at NoNewPrivs in /proc/PID/status.",
            Kind::Host(no_new_privs_set),
        ),
        super::LAYER.check(
            "mount inside fails with EPERM",
            "Root inside may still mount: CAP_SYS_ADMIN is in its sets, or the seccomp filter does not deny mount. Try `mount -t tmpfs tmpfs /mnt` inside.",
            Kind::Confined(mount_denied),
        ),
        super::LAYER.check(
            "a new user namespace fails with EPERM: only seccomp stops it",
            "unshare(CLONE_NEWUSER) worked: no capability is needed for it, only the seccomp filter denies it. Is the filter installed (Seccomp: 2)? Try `unshare --user true` inside.",
            Kind::Confined(user_namespace_denied),
        ),
        super::LAYER.check(
            "/proc/kcore and the other masked files read as empty",
            "A masked file still shows the kernel's data: /dev/null was not mounted over it. Look at `grep /proc/ /proc/mounts` inside.",
            Kind::Confined(masked_files_empty),
        ),
        super::LAYER.check(
            "/sys is read-only and /sys/firmware is empty",
            "/sys is writable or unmasked: mount it with `mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys`, then the tmpfs over /sys/firmware.",
            Kind::Confined(sys_read_only),
        ),
        // What step 8 still leaves open (escapes.rs).
        crate::layers::escapes::root_file(),
        super::LAYER.check(
            "ordinary work still succeeds: a shell runs, lists processes, writes a file",
            "An ordinary program fails under the restrictions: the filter or the capability list takes too much. Run `sh -c 'ps; echo hi > /tmp/x'` inside and read the error.",
            Kind::Confined(ordinary_work),
        ),
    ]
}

fn status(p: &Probe) -> Result<capabilities::Status, Outcome> {
    capabilities::Status::of(&p.target.to_string())
        .ok_or_else(|| Outcome::Fail(format!("process {} is gone", p.target)))
}

fn capabilities_cut(p: &Probe) -> Outcome {
    let s = match status(p) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let all = (1u64 << (capabilities::last_cap() + 1)) - 1;
    let c = s.caps;
    let ok = match p.maker.is_other() {
        // Another runtime's container: cut at least as far as Docker's default.
        true => {
            let docker = capabilities::docker_set();
            [c.bounding, c.permitted, c.effective, c.ambient]
                .iter()
                .all(|set| set & all & !docker == 0)
        }
        // lab's recipe: exactly its set.
        false => {
            let kept = capabilities::kept_set();
            c.bounding & all == kept
                && c.permitted == kept
                && c.effective == kept
                && c.inheritable == 0
                && c.ambient == 0
        }
    };
    let detail = match (c.bounding & all) == c.effective && c.effective == c.permitted {
        true => format!(
            "process {}: bounding, permitted and effective {}; inheritable {:#x}, ambient {:#x}",
            p.target,
            capabilities::described(c.bounding & all),
            c.inheritable,
            c.ambient
        ),
        false => format!(
            "process {}: bounding {}; permitted {}; effective {}; inheritable {:#x}, ambient {:#x}",
            p.target,
            capabilities::described(c.bounding & all),
            capabilities::described(c.permitted),
            capabilities::described(c.effective),
            c.inheritable,
            c.ambient
        ),
    };
    Outcome::from(ok, detail)
}

fn filter_installed(p: &Probe) -> Outcome {
    let s = match status(p) {
        Ok(s) => s,
        Err(o) => return o,
    };
    Outcome::from(
        s.seccomp == 2 && s.seccomp_filters >= 1,
        format!(
            "process {}: Seccomp {} ({}), {} filter(s)",
            p.target,
            s.seccomp,
            match s.seccomp {
                0 => "none",
                1 => "strict",
                _ => "filter",
            },
            s.seccomp_filters
        ),
    )
}

fn no_new_privs_set(p: &Probe) -> Outcome {
    let s = match status(p) {
        Ok(s) => s,
        Err(o) => return o,
    };
    Outcome::from(
        s.no_new_privs,
        format!(
            "process {}: NoNewPrivs {}{}",
            p.target,
            u8::from(s.no_new_privs),
            match s.no_new_privs {
                true => "",
                false => " (Docker and Podman set it only with --security-opt no-new-privileges)",
            }
        ),
    )
}

fn mount_denied(_p: &Probe) -> Outcome {
    let dir = if Path::new("/mnt").is_dir() {
        "/mnt"
    } else {
        "/tmp"
    };
    match nix::mount::mount(
        Some("lab-probe"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4k"),
    ) {
        Err(Errno::EPERM) => Outcome::Pass(format!("mount -t tmpfs tmpfs {dir}: EPERM")),
        Err(e) => Outcome::Fail(format!("mount -t tmpfs tmpfs {dir}: {e}, not EPERM")),
        Ok(()) => {
            let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
            Outcome::Fail(format!("mount -t tmpfs tmpfs {dir} worked"))
        }
    }
}

fn user_namespace_denied(_p: &Probe) -> Outcome {
    // (This probe is a process of its own: a new user namespace would go with it.)
    match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
        Err(Errno::EPERM) => Outcome::Pass("unshare(CLONE_NEWUSER): EPERM".into()),
        Err(e) => Outcome::Fail(format!("unshare(CLONE_NEWUSER): {e}, not EPERM")),
        Ok(()) => Outcome::Fail("unshare(CLONE_NEWUSER) worked: root of a new user namespace, with every capability in it".into()),
    }
}

fn masked_files_empty(_p: &Probe) -> Outcome {
    let mut seen = Vec::new();
    let mut full = Vec::new();
    for f in masks::MASKED_FILES {
        if !Path::new(f).exists() {
            continue;
        }
        let len = std::fs::read(f).map(|b| b.len()).unwrap_or(0);
        if len == 0 {
            seen.push(f);
        } else {
            full.push(format!("{f} ({len} bytes)"));
        }
    }
    if seen.is_empty() && full.is_empty() {
        return Outcome::Skip("this kernel has none of the masked files".into());
    }
    Outcome::from(
        full.is_empty(),
        if full.is_empty() {
            format!("empty: {}", seen.join(", "))
        } else {
            format!("not masked: {}", full.join(", "))
        },
    )
}

fn sys_read_only(_p: &Probe) -> Outcome {
    let ro = match nix::sys::statvfs::statvfs("/sys") {
        Ok(s) => s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        Err(e) => return Outcome::Fail(format!("statvfs /sys: {e}")),
    };
    let firmware = Path::new("/sys/firmware");
    let hidden =
        !firmware.exists() || std::fs::read_dir(firmware).map_or(true, |mut d| d.next().is_none());
    Outcome::from(
        ro && hidden,
        format!(
            "/sys is mounted {}; /sys/firmware {}",
            if ro { "read-only" } else { "read-write" },
            if hidden {
                "shows nothing"
            } else {
                "shows the machine's firmware"
            }
        ),
    )
}

fn ordinary_work(_p: &Probe) -> Outcome {
    // This probe took on the container's restrictions: with none, ordinary
    // work proves nothing about them.
    // (CAP_SYS_ADMIN, "the new root", is the first a container loses.)
    let me = capabilities::Status::of("self").unwrap_or_default();
    if me.seccomp == 0 && me.caps.effective & 1 << 21 != 0 {
        return Outcome::Skip(
            "nothing restricts the container's processes (CAP_SYS_ADMIN, no seccomp filter): ordinary work proves nothing here".into(),
        );
    }
    let script = "echo ok > /tmp/.lab-work-$$ && cat /tmp/.lab-work-$$ && rm /tmp/.lab-work-$$ && ps >/dev/null && echo done";
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", script])
        .output();
    match out {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout) == "ok\ndone\n" => {
            Outcome::Pass(format!("sh -c '{script}' ran"))
        }
        Ok(o) => Outcome::Fail(format!(
            "sh -c '{script}': {}; {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Outcome::Fail(format!("cannot start /bin/sh inside: {e}")),
    }
}
