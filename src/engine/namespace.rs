//! The namespaces lab knows, in one table.
//!
//! A namespace is known to the kernel by a clone(2) flag and a file in
//! /proc/PID/ns/, and to a person by the options of unshare(1) and nsenter(1)
//! and a word. Every part of lab that needs one of these reads it here: the
//! plan's clone flags and unshare line, the probe that joins a container,
//! `lab exec`, `lab show` and `lab doctor`. Which step makes a namespace is the
//! curriculum's to say (a layer's `namespaces`), not this table's.

use nix::sched::CloneFlags;

/// A kind of namespace that lab makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    User,
    Mount,
    Uts,
    Ipc,
    Net,
    Pid,
    Cgroup,
}

/// One namespace, as each tool and the kernel name it.
pub struct Row {
    pub ns: Namespace,
    /// Its flag for clone(2), unshare(2) and setns(2).
    pub flag: CloneFlags,
    /// Its file in /proc/PID/ns/.
    pub file: &'static str,
    /// The options of unshare(1) that make it.
    pub unshare: &'static str,
    /// The option of nsenter(1) that joins it.
    pub nsenter: &'static str,
    /// The word in a sentence: "a new network namespace".
    pub word: &'static str,
    /// What a process in a new one has of its own (`lab show`).
    pub holds: &'static str,
    /// Its place in the order a process joins them with setns(2), 0 first.
    pub join: u8,
    /// Made by the container's first process itself, once it is where the
    /// lines of `Phase::Join` put it: a cgroup namespace's root is the cgroup of
    /// the process that makes it. (lab's clone3 into the cgroup makes it at
    /// birth, already there.)
    pub after_join: bool,
}

/// Every namespace lab makes, once, in the order nsenter(1) lists its options
/// with the user namespace first (as `lab exec` prints them).
pub static NAMESPACES: [Row; 7] = [
    Row {
        ns: Namespace::User,
        flag: CloneFlags::CLONE_NEWUSER,
        file: "user",
        // Capabilities in a new user namespace belong to a process whose user
        // is mapped there; ours is not mapped yet when bash starts, so without
        // --keep-caps (ambient capabilities) bash would start with none.
        unshare: "--user --keep-caps",
        nsenter: "-U",
        word: "user",
        holds: "user and group IDs",
        // First: it owns the others, and in it a process that joins holds the
        // capabilities that joining them takes (nsenter does the same).
        join: 0,
        after_join: false,
    },
    Row {
        ns: Namespace::Mount,
        flag: CloneFlags::CLONE_NEWNS,
        file: "mnt",
        unshare: "--mount",
        nsenter: "-m",
        word: "mount",
        holds: "mount table",
        // Last, as nsenter does: joining it moves the caller's root and working
        // directory to the namespace's, just before the probe takes the
        // container's root.
        join: 6,
        after_join: false,
    },
    Row {
        ns: Namespace::Uts,
        flag: CloneFlags::CLONE_NEWUTS,
        file: "uts",
        unshare: "--uts",
        nsenter: "-u",
        word: "uts",
        holds: "hostname",
        join: 4,
        after_join: false,
    },
    Row {
        ns: Namespace::Ipc,
        flag: CloneFlags::CLONE_NEWIPC,
        file: "ipc",
        unshare: "--ipc",
        nsenter: "-i",
        word: "ipc",
        holds: "System V IPC",
        join: 3,
        after_join: false,
    },
    Row {
        ns: Namespace::Net,
        flag: CloneFlags::CLONE_NEWNET,
        file: "net",
        unshare: "--net",
        nsenter: "-n",
        word: "network",
        holds: "network stack",
        join: 2,
        after_join: false,
    },
    Row {
        ns: Namespace::Pid,
        flag: CloneFlags::CLONE_NEWPID,
        file: "pid",
        // A new pid namespace needs --fork: the process that calls unshare stays
        // where it was, and only its next child is PID 1.
        unshare: "--pid --fork",
        nsenter: "-p",
        word: "pid",
        holds: "process numbers",
        join: 5,
        after_join: false,
    },
    Row {
        ns: Namespace::Cgroup,
        flag: CloneFlags::CLONE_NEWCGROUP,
        file: "cgroup",
        unshare: "--cgroup",
        nsenter: "-C",
        word: "cgroup",
        holds: "cgroup paths",
        // Right after the user namespace, as nsenter does.
        join: 1,
        // Its root is the cgroup of the process that makes it: the container's
        // only once it has joined it.
        after_join: true,
    },
];

impl Namespace {
    /// Its row of [`NAMESPACES`].
    pub fn row(self) -> &'static Row {
        NAMESPACES
            .iter()
            .find(|r| r.ns == self)
            .expect("every namespace has a row")
    }

    /// The options of `unshare(1)`.
    pub fn unshare_options(self) -> &'static str {
        self.row().unshare
    }

    pub fn clone_flag(self) -> CloneFlags {
        self.row().flag
    }

    /// Its file in `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        self.row().file
    }

    pub fn word(self) -> &'static str {
        self.row().word
    }
}

/// The rows in the order a process joins them with setns(2).
pub fn join_order() -> Vec<&'static Row> {
    let mut rows: Vec<&Row> = NAMESPACES.iter().collect();
    rows.sort_by_key(|r| r.join);
    rows
}

/// The step whose layer makes `ns` first, from the curriculum.
pub fn made_at(ns: Namespace) -> Option<u8> {
    crate::engine::curriculum::all()
        .into_iter()
        .find(|l| l.namespaces.contains(&ns))
        .map(|l| l.number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_has_one_row() {
        let all = [
            Namespace::User,
            Namespace::Mount,
            Namespace::Uts,
            Namespace::Ipc,
            Namespace::Net,
            Namespace::Pid,
            Namespace::Cgroup,
        ];
        assert_eq!(all.len(), NAMESPACES.len());
        for ns in all {
            assert_eq!(
                NAMESPACES.iter().filter(|r| r.ns == ns).count(),
                1,
                "{ns:?}"
            );
        }
        let files: Vec<&str> = NAMESPACES.iter().map(|r| r.file).collect();
        for r in &NAMESPACES {
            assert_eq!(files.iter().filter(|f| **f == r.file).count(), 1);
        }
    }

    #[test]
    fn the_curriculum_uses_only_namespaces_of_the_table() {
        for layer in crate::engine::curriculum::all() {
            for ns in layer.namespaces {
                assert_eq!(NAMESPACES.iter().filter(|r| r.ns == *ns).count(), 1);
            }
        }
    }

    #[test]
    fn a_process_joins_the_user_namespace_first_and_the_mount_namespace_last() {
        let order: Vec<&str> = join_order().iter().map(|r| r.file).collect();
        assert_eq!(order, ["user", "cgroup", "net", "ipc", "uts", "pid", "mnt"]);
        let mut places: Vec<u8> = NAMESPACES.iter().map(|r| r.join).collect();
        places.sort();
        assert_eq!(places, (0..NAMESPACES.len() as u8).collect::<Vec<_>>());
    }
}
