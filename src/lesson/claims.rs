//! Claims of the lessons about the kernel that were found wrong (issue #31), as
//! tests (part of lesson/, after mod.rs). Where the lesson's text can be held
//! against lab itself (the curriculum, the commands it prints, the capabilities
//! it keeps), it is; the rest guards against the wrong sentence coming back, and
//! says why it was wrong. Each new sentence was checked against the kernel's
//! documentation or source, or tried: the commit that wrote it says how.

#[cfg(test)]
mod tests {
    use crate::lesson::{find, Lesson};

    fn lesson(key: &str) -> &'static Lesson {
        find(key).unwrap()
    }

    /// Its words, one space between each: a phrase may wrap anywhere.
    fn flat(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The section under `## heading`, to the next `## ` (flat).
    fn section(lesson: &Lesson, heading: &str) -> String {
        let start = lesson
            .text
            .find(&format!("\n## {heading}\n"))
            .unwrap_or_else(|| panic!("lessons/{}: no section {heading}", lesson.file));
        let rest = &lesson.text[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        flat(&rest[..end])
    }

    fn absent(lesson: &Lesson, phrase: &str, why: &str) {
        assert!(
            !flat(lesson.text).contains(phrase),
            "lessons/{} says \"{phrase}\": {why}",
            lesson.file
        );
    }

    /// Lab's command runs under no_new_privs (its last line at step 8), with
    /// which an exec never raises the permitted set above the one it had
    /// (security/commoncap.c, cap_bprm_creds_from_file: with
    /// LSM_UNSAFE_NO_NEW_PRIVS the new permitted set is cut to the old one):
    /// cutting the permitted set alone would last. The bounding set, the
    /// filter and the masks hold without no_new_privs, which Docker leaves off.
    #[test]
    fn lesson_8_says_what_no_new_privs_does() {
        let run = super::super::blocks::run_line(&super::super::tests::classroom_explain(8, None));
        assert!(run.contains("--no-new-privs"), "{run}");
        let eight = lesson("8");
        absent(
            eight,
            "cutting permitted alone would not last",
            "with no_new_privs, which the same line sets, it would",
        );
        absent(
            eight,
            "Without it nothing of the rest would hold",
            "the bounding set, the seccomp filter and the masks hold without it",
        );
        let nnp = flat(eight.text);
        assert!(nnp.contains("never raises the permitted set"), "{nnp}");
    }

    /// lab keeps CAP_NET_RAW, as Docker does: lesson 8 says what it gives root
    /// inside over its neighbours on lab0 (raw and packet sockets: any source
    /// address, ARP), and that Podman's default drops it.
    #[test]
    fn lesson_8_says_what_cap_net_raw_allows() {
        use crate::layers::privileges::capabilities::{kept_set, podman_set};
        const NET_RAW: u64 = 1 << 13;
        assert!(kept_set() & NET_RAW != 0 && podman_set() & NET_RAW == 0);
        let open = section(lesson("8"), "What it still does not protect against");
        for said in [
            "`CAP_NET_RAW` stays",
            "source address",
            "ARP",
            "Podman's default drops it",
        ] {
            assert!(
                open.contains(said),
                "lesson 8 does not say {said:?}: {open}"
            );
        }
    }

    /// lab's seccomp filter allows every call it does not name (its last rule),
    /// no LSM confines the container, and the kernel is the host's: steps 8
    /// and 9 harden the container, they do not make it a boundary. The lessons
    /// that said they did say so, and name what is one (a kernel of its own:
    /// gVisor, Kata Containers, a VM); an LSM's rules do not hold against a
    /// bug of the kernel that enforces them.
    #[test]
    fn steps_8_and_9_are_not_called_a_boundary() {
        let filter = super::super::tests::classroom_explain(8, Some(8));
        assert!(filter.contains("# everything else: allow"), "{filter}");
        absent(
            lesson("7"),
            "steps 8 and 9 make it one",
            "a denylist filter, no LSM and one shared kernel make no boundary",
        );
        absent(
            lesson("closing"),
            "which hold even for a bug in the other layers",
            "the kernel enforces an LSM's rules: a bug of the kernel is past them",
        );
        for key in ["8", "closing"] {
            let text = flat(lesson(key).text);
            for named in ["gVisor", "Kata Containers", "virtual machine"] {
                assert!(text.contains(named), "lesson {key} does not name {named}");
            }
        }
    }

    /// The introduction's table of what each step switches on lists every step
    /// of the curriculum, each row naming its step's layer by the first word of
    /// its title (chroot, mount, pid, ... user).
    #[test]
    fn the_introductions_table_lists_every_step() {
        let intro = lesson("intro");
        let rows: Vec<(String, Vec<u8>)> = intro
            .text
            .lines()
            .skip_while(|l| !l.starts_with("| what the process sees or uses |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                let steps = cells[cells.len() - 1]
                    .split(", ")
                    .map(|n| n.parse().unwrap())
                    .collect();
                (cells[..cells.len() - 1].join(" "), steps)
            })
            .collect();
        let steps = crate::engine::curriculum::steps();
        let listed: std::collections::BTreeSet<u8> =
            rows.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let all: std::collections::BTreeSet<u8> = steps.iter().map(|s| s.number).collect();
        assert_eq!(listed, all, "the introduction's table: {rows:?}");
        for step in steps {
            let word = step.title.split([' ', ',', ':']).next().unwrap();
            assert!(
                rows.iter()
                    .any(|(text, s)| s.contains(&step.number) && text.contains(word)),
                "the introduction's row for step {} does not name {word}",
                step.number
            );
        }
    }

    /// Step 5 switches `ip_forward` on for the whole network namespace: on a
    /// machine whose FORWARD chain accepts (no Docker, no ufw), it routes for
    /// its neighbours while the container runs. The lesson says where to type
    /// it and how to see the policy first.
    #[test]
    fn lesson_5_says_where_forwarding_is_safe_to_switch_on() {
        let five = super::super::tests::classroom_explain(5, None);
        assert!(five.contains("sysctl -w net.ipv4.ip_forward=1"), "{five}");
        let idea = section(lesson("5"), "The idea");
        for said in ["iptables -S FORWARD", "-P FORWARD ACCEPT", "classroom VM"] {
            assert!(
                idea.contains(said),
                "lesson 5 does not say {said:?}: {idea}"
            );
        }
    }

    /// The lesson of the layer whose check first shows an escape says what the
    /// escape really gives (the host's root: core_pattern's pipe for
    /// /proc/sys, cgroup v1's release_agent for the cgroup filesystem), and
    /// that lab's own attempt writes nothing that changes the host.
    #[test]
    fn the_escapes_stakes_are_said_where_they_are_taught() {
        use crate::layers::escapes;
        for (check, stakes) in [
            (
                escapes::kernel_settings(),
                &["core_pattern", "as the host's root"][..],
            ),
            (
                escapes::cgroup_limits(),
                &["release_agent", "as the host's root", "CVE-2022-0492"][..],
            ),
        ] {
            let key = check.layer.to_string();
            let open = section(lesson(&key), "What it does not protect against");
            for said in stakes
                .iter()
                .chain(&["writes nothing that changes the host"])
            {
                assert!(
                    open.contains(said),
                    "lesson {key} teaches \"{}\" without saying {said:?}",
                    check.name
                );
            }
        }
    }

    /// Root of a user namespace is not root over everything it owns (no device
    /// node, FS_USERNS_MOUNT filesystems only, locked mounts, no module, little
    /// of /proc/sys: tried with `unshare -r` as nobody, the module read in the
    /// kernel's source). From inside, a process may write a one-line map of
    /// its own ID; a range takes CAP_SETUID in the parent namespace, which is
    /// why lab's map (a range, with root) is written by the host's root. A range
    /// from 200000 is userns-remap's and --userns=auto's, not rootless Podman's.
    #[test]
    fn lesson_9_says_what_root_of_a_user_namespace_may_not_do() {
        let map = super::super::tests::classroom_explain(9, Some(9));
        assert!(
            map.contains("echo '0 200000 65536' > /proc/$PID/uid_map"),
            "{map}"
        );
        let nine = lesson("9");
        absent(
            nine,
            "This is what rootless Podman and Docker's `userns-remap` do",
            "rootless Podman maps root to the user and 1-65536 to the user's range",
        );
        absent(
            nine,
            "a process may only map its own ID",
            "from inside, it may write one line for its own ID (unshare -r)",
        );
        let idea = section(nine, "The idea");
        for said in [
            "`mknod` fails",
            "FS_USERNS_MOUNT",
            "*locked*",
            "no kernel module",
            "`/proc/sys`",
            "`unshare -r`",
            "`CAP_SETUID` in the parent namespace",
            "`--userns=auto`",
        ] {
            assert!(
                idea.contains(said),
                "lesson 9 does not say {said:?}: {idea}"
            );
        }
    }
}
