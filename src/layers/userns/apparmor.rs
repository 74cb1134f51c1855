//! Ubuntu 24.04's AppArmor and user namespaces made without root.
//!
//! There, `kernel.apparmor_restrict_unprivileged_userns = 1`: a program that
//! AppArmor knows by no profile of its own ("unconfined") may still make a user
//! namespace without root, but lands in the `unprivileged_userns` profile, which
//! denies it every capability in it: rootless step 9 cannot mount, pivot_root or
//! become root of its namespace. The switch guards the kernel's code that only
//! root could reach before user namespaces (a bug there is a way to root), and
//! programs that need them get a profile of their own: Ubuntu ships some (crun,
//! buildah, chrome), lab has one (scripts/apparmor/lab, which lab.sh installs as
//! /etc/apparmor.d/lab and loads) for /usr/local/bin/lab. This file reads what
//! the kernel says and decides whether this lab may go on without root, and what
//! to do if not; the layer's preflight and `lab doctor` ask it. Turning the switch
//! off is never the advice: it would lift the protection for every program.

use std::path::Path;

/// The switch (Ubuntu's kernels; absent where the kernel has no such restriction).
pub const SWITCH: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
/// The profiles loaded in the kernel, one `NAME (MODE)` a line (only root may read it).
pub const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
/// Where lab.sh installs lab's profile.
pub const INSTALLED: &str = "/etc/apparmor.d/lab";
/// The profile's name, and the one program it attaches to: where lab.sh installs lab.
pub const NAME: &str = "lab";
pub const ATTACHED: &str = "/usr/local/bin/lab";

/// What the kernel and the filesystem say, as text.
pub struct Seen {
    /// The switch's file, None when there is none.
    pub switch: Option<String>,
    /// The list of loaded profiles, None when it cannot be read (without root).
    pub profiles: Option<String>,
    /// This process's AppArmor label: `lab (unconfined)` under lab's profile,
    /// `unconfined` under none.
    pub label: Option<String>,
    /// Whether lab's profile is installed (INSTALLED exists).
    pub installed: bool,
    /// The path of this lab's program.
    pub exe: String,
}

impl Seen {
    pub fn read() -> Seen {
        let read = |f: &str| std::fs::read_to_string(f).ok();
        Seen {
            switch: read(SWITCH),
            profiles: read(PROFILES),
            // The AppArmor file where there are several security modules (5.8+).
            label: read("/proc/self/attr/apparmor/current")
                .or_else(|| read("/proc/self/attr/current")),
            installed: Path::new(INSTALLED).exists(),
            exe: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Restriction {
    /// No such switch in this kernel.
    Absent,
    /// The switch is off: AppArmor lets users make user namespaces.
    Off,
    /// On, and this lab runs under lab's profile, which allows them.
    Allowed,
    /// On, and this lab does not run under lab's profile: why, and what to do.
    Blocked { why: String, fix: String },
}

/// The sentence that says the switch is on, for whoever reports it.
pub const ON: &str = "AppArmor keeps users from making user namespaces here (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 24.04's default)";

pub fn decide(seen: &Seen) -> Restriction {
    match seen.switch.as_deref().map(str::trim) {
        None => return Restriction::Absent,
        Some("1") => {}
        Some(_) => return Restriction::Off,
    }
    if seen.label.as_deref().is_some_and(|l| name_of(l) == NAME) {
        return Restriction::Allowed;
    }
    let attached = seen.exe == ATTACHED;
    // Without root the list cannot be read; then the program the profile names,
    // not running under it, says that it is not loaded.
    let loaded = match &seen.profiles {
        Some(list) => list.lines().any(|l| name_of(l) == NAME),
        None if attached => false,
        None => {
            return Restriction::Blocked {
                why: format!("lab's profile is for {ATTACHED} only, and this lab is {}", seen.exe),
                fix: format!("run {ATTACHED}, which sudo ./lab.sh (in lab's repository) installs with its profile; sudo lab doctor says whether the profile is loaded"),
            }
        }
    };
    let (why, fix) = match (loaded, attached) {
        (true, false) => (
            format!("lab's profile is loaded, for {ATTACHED} only, and this lab is {}", seen.exe),
            format!("run {ATTACHED} (sudo ./lab.sh in lab's repository installs it there)"),
        ),
        (true, true) => (
            "lab's profile is loaded, yet this lab does not run under it (loaded after this lab started?)".into(),
            format!("run lab again; if it says this again, sudo apparmor_parser -r {INSTALLED}"),
        ),
        (false, _) if seen.installed => (
            format!("lab's profile, {INSTALLED}, is not loaded"),
            format!("sudo apparmor_parser -r {INSTALLED} (or sudo ./lab.sh in lab's repository)"),
        ),
        (false, _) => (
            "lab's profile is not installed".into(),
            format!("sudo ./lab.sh in lab's repository installs scripts/apparmor/lab as {INSTALLED} and loads it (apparmor_parser -r)"),
        ),
    };
    let fix = if !loaded && !attached {
        format!("{fix}, then run {ATTACHED}, the program it names")
    } else {
        fix
    };
    Restriction::Blocked { why, fix }
}

/// The name in a label or in a line of the profiles' list: `lab (unconfined)`.
fn name_of(line: &str) -> &str {
    let line = line.trim_end_matches(['\n', '\0']).trim();
    line.split(" (").next().unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "unprivileged_userns (enforce)\ncrun (unconfined)\nlab (unconfined)\n/usr/bin/man (enforce)\n";
    const WITHOUT: &str =
        "unprivileged_userns (enforce)\ncrun (unconfined)\nlaboratory (enforce)\n";

    fn seen(switch: Option<&str>, profiles: Option<&str>, label: &str, exe: &str) -> Seen {
        Seen {
            switch: switch.map(Into::into),
            profiles: profiles.map(Into::into),
            label: Some(label.into()),
            installed: false,
            exe: exe.into(),
        }
    }

    fn blocked(r: Restriction) -> (String, String) {
        match r {
            Restriction::Blocked { why, fix } => (why, fix),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_the_switch_or_with_it_off_apparmor_is_not_in_the_way() {
        let s = seen(None, None, "unconfined\n", ATTACHED);
        assert_eq!(decide(&s), Restriction::Absent);
        let s = seen(Some("0\n"), Some(WITHOUT), "unconfined\n", "/tmp/lab");
        assert_eq!(decide(&s), Restriction::Off);
    }

    #[test]
    fn under_labs_profile_lab_may_make_user_namespaces() {
        for profiles in [Some(LIST), None] {
            let s = seen(Some("1\n"), profiles, "lab (unconfined)\n", ATTACHED);
            assert_eq!(decide(&s), Restriction::Allowed);
        }
    }

    #[test]
    fn not_loaded_it_says_how_to_install_or_load_it() {
        let (why, fix) = blocked(decide(&seen(
            Some("1\n"),
            Some(WITHOUT),
            "unconfined\n",
            ATTACHED,
        )));
        assert_eq!(why, "lab's profile is not installed");
        assert!(fix.starts_with("sudo ./lab.sh in lab's repository installs scripts/apparmor/lab as /etc/apparmor.d/lab"), "{fix}");
        // Without root the list is unreadable: /usr/local/bin/lab not under it says the same.
        let mut s = seen(Some("1\n"), None, "unconfined\n", ATTACHED);
        s.installed = true;
        let (why, fix) = blocked(decide(&s));
        assert_eq!(why, "lab's profile, /etc/apparmor.d/lab, is not loaded");
        assert!(
            fix.starts_with("sudo apparmor_parser -r /etc/apparmor.d/lab"),
            "{fix}"
        );
    }

    #[test]
    fn another_program_than_the_one_the_profile_names_is_told_to_run_that_one() {
        let exe = "/home/u/lab/target/release/lab";
        let (why, fix) = blocked(decide(&seen(Some("1"), Some(LIST), "unconfined", exe)));
        assert!(why.contains("loaded") && why.ends_with(exe), "{why}");
        assert!(fix.starts_with("run /usr/local/bin/lab"), "{fix}");
        let (why, fix) = blocked(decide(&seen(Some("1"), None, "unconfined", exe)));
        assert!(why.ends_with(exe), "{why}");
        assert!(
            fix.contains("sudo lab doctor says whether the profile is loaded"),
            "{fix}"
        );
        let (_, fix) = blocked(decide(&seen(Some("1"), Some(WITHOUT), "unconfined", exe)));
        assert!(
            fix.ends_with("then run /usr/local/bin/lab, the program it names"),
            "{fix}"
        );
    }

    #[test]
    fn no_advice_turns_the_restriction_off() {
        let exes = [ATTACHED, "/tmp/lab"];
        for profiles in [Some(LIST), Some(WITHOUT), None] {
            for exe in exes {
                for installed in [true, false] {
                    let mut s = seen(Some("1"), profiles, "unconfined", exe);
                    s.installed = installed;
                    let (why, fix) = blocked(decide(&s));
                    for said in [why, fix] {
                        assert!(!said.contains("sysctl") && !said.contains("=0"), "{said}");
                    }
                }
            }
        }
    }

    /// The profile in the repository is the one this file describes, for the
    /// program lab.sh installs (tests/it/apparmor.rs has AppArmor 4 compile it).
    #[test]
    fn the_repositorys_profile_names_lab_where_lab_sh_installs_it() {
        let profile = include_str!("../../../scripts/apparmor/lab");
        assert!(
            profile.contains(&format!(
                "\nprofile {NAME} {ATTACHED} flags=(unconfined) {{\n  userns,\n"
            )),
            "{profile}"
        );
        let lab_sh = include_str!("../../../lab.sh");
        assert!(
            lab_sh.contains(&format!("install -m 0755 target/release/lab {ATTACHED}\n")),
            "{lab_sh}"
        );
        let common = include_str!("../../../scripts/common.sh");
        assert!(
            common.contains(&format!("local profile={INSTALLED}\n")),
            "{common}"
        );
        assert!(
            common.contains(&format!("local restrict={SWITCH}\n")),
            "{common}"
        );
        assert!(
            common.contains(&format!("grep -q '^{NAME} (' {PROFILES}")),
            "{common}"
        );
    }
}
