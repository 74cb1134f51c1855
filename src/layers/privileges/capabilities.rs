//! Layer 8, part 2: capabilities. Next: `seccomp.rs`.
//!
//! Since Linux 2.2 the power of root is cut into about 40 capabilities:
//! CAP_SYS_ADMIN (mount, and much more), CAP_SYS_MODULE (load kernel code),
//! CAP_MKNOD (make device nodes), CAP_NET_ADMIN, ... A process holds five sets of
//! them: *bounding* (the most it can ever get, even by exec), *permitted* (what
//! it may use), *effective* (what the kernel checks right now), *inheritable* and
//! *ambient* (what passes through exec). Root keeps all of them unless someone
//! takes them away; after exec, a root process gets exactly its bounding set.
//!
//! Docker keeps 14 and drops the rest; lab keeps the same but CAP_MKNOD. Docker
//! keeps CAP_MKNOD and relies on its device cgroup to stop a node for the host's
//! disk from being opened; lab has no device cgroup, so it drops the capability
//! (escapes.rs shows that node at work until this step).

/// Docker's default capabilities (moby's `oci/caps/defaults.go`), without
/// CAP_MKNOD: (number, name as setpriv spells it, why a container keeps it).
pub const KEPT: [(u32, &str, &str); 13] = [
    (0, "chown", "change a file's owner (package managers do)"),
    (1, "dac_override", "ignore file permissions, as root does"),
    (3, "fowner", "act on files it does not own (chmod, utime)"),
    (
        4,
        "fsetid",
        "keep setuid/setgid bits when it changes a file",
    ),
    (
        5,
        "kill",
        "send signals to processes of other users (in its own pid namespace)",
    ),
    (
        6,
        "setgid",
        "change its group IDs (su, daemons dropping privileges)",
    ),
    (7, "setuid", "change its user IDs"),
    (8, "setpcap", "drop capabilities further"),
    (10, "net_bind_service", "listen on ports below 1024"),
    (13, "net_raw", "raw sockets (ping)"),
    (
        18,
        "sys_chroot",
        "chroot (pivot_root already took the host's tree away)",
    ),
    (
        29,
        "audit_write",
        "write to the kernel's audit log (login programs do)",
    ),
    (31, "setfcap", "set file capabilities (installing ping)"),
];

/// The kept capabilities as a set: bit N is capability N.
pub fn kept_set() -> u64 {
    KEPT.iter().fold(0, |set, (n, _, _)| set | 1 << n)
}

/// CAP_MKNOD, which Docker keeps and lab drops.
const MKNOD: u32 = 27;

/// Docker's default set: lab's and CAP_MKNOD (0xa80425fb, 14 capabilities).
pub fn docker_set() -> u64 {
    kept_set() | 1 << MKNOD
}

/// Podman's default set (its containers.conf): Docker's without mknod,
/// net_raw and audit_write (0x800405fb, 11).
pub fn podman_set() -> u64 {
    kept_set() & !(1 << 13) & !(1 << 29)
}

/// The name of a well-known set, when `set` is one: what a student reads in
/// place of a hexadecimal number.
pub fn known(set: u64) -> Option<&'static str> {
    let all = (1u64 << (last_cap() + 1)) - 1;
    match set {
        0 => Some("none"),
        s if s & all == all => Some("all of them, as the host's root has"),
        // A machine may withhold one from everyone (this one, CAP_SYS_RESOURCE):
        // root's own set here is then "all".
        s if Status::of("self").is_some_and(|me| me.caps.bounding & all == s) => {
            Some("all of them, as the host's root has here")
        }
        s if s == docker_set() => Some("Docker's default"),
        s if s == kept_set() => Some("lab's: Docker's default without mknod"),
        s if s == podman_set() => Some("Podman's default"),
        _ => None,
    }
}

/// A set in words: its known name or "N capabilities", then its members.
pub fn described(set: u64) -> String {
    let count = set.count_ones();
    match known(set) {
        Some(name) if count == 0 || count > 20 => format!("{set:#x}, {name}"),
        Some(name) => format!("{set:#x}, {name} ({count}: {})", names(set)),
        None if count > 20 => format!("{set:#x} ({count} capabilities)"),
        None => format!("{set:#x} ({count}: {})", names(set)),
    }
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// `--bounding-set -all,+chown,...`: setpriv's words for the kept set.
pub fn setpriv_list() -> String {
    let kept: Vec<String> = KEPT.iter().map(|(_, name, _)| format!("+{name}")).collect();
    format!("-all,{}", kept.join(","))
}

/// The five capability sets of a process, as /proc/PID/status shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sets {
    pub bounding: u64,
    pub permitted: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// The capability sets, no_new_privs and seccomp mode of a process, from
/// /proc/PID/status.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub caps: Sets,
    pub no_new_privs: bool,
    /// 0: none, 1: strict, 2: filter.
    pub seccomp: u8,
    pub seccomp_filters: u32,
}

impl Status {
    pub fn of(pid: &str) -> Option<Status> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let hex = |key: &str| field(key).and_then(|v| u64::from_str_radix(&v, 16).ok());
        Some(Status {
            caps: Sets {
                bounding: hex("CapBnd:")?,
                permitted: hex("CapPrm:")?,
                effective: hex("CapEff:")?,
                inheritable: hex("CapInh:")?,
                ambient: hex("CapAmb:").unwrap_or(0),
            },
            no_new_privs: field("NoNewPrivs:").as_deref() == Some("1"),
            seccomp: field("Seccomp:").and_then(|v| v.parse().ok()).unwrap_or(0),
            seccomp_filters: field("Seccomp_filters:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// The names of the capabilities in `set`, for messages ("chown, kill, ...").
pub fn names(set: u64) -> String {
    const ALL: [&str; 41] = [
        "chown",
        "dac_override",
        "dac_read_search",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "linux_immutable",
        "net_bind_service",
        "net_broadcast",
        "net_admin",
        "net_raw",
        "ipc_lock",
        "ipc_owner",
        "sys_module",
        "sys_rawio",
        "sys_chroot",
        "sys_ptrace",
        "sys_pacct",
        "sys_admin",
        "sys_boot",
        "sys_nice",
        "sys_resource",
        "sys_time",
        "sys_tty_config",
        "mknod",
        "lease",
        "audit_write",
        "audit_control",
        "setfcap",
        "mac_override",
        "mac_admin",
        "syslog",
        "wake_alarm",
        "block_suspend",
        "audit_read",
        "perfmon",
        "bpf",
        "checkpoint_restore",
    ];
    let names: Vec<String> = (0..64)
        .filter(|n| set & (1u64 << n) != 0)
        .map(|n| ALL.get(n).map_or(format!("cap_{n}"), |s| s.to_string()))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Cut this process's capabilities to `sets`: the bounding set first (it needs
/// CAP_SETPCAP, which the next call may take away), then permitted, effective and
/// inheritable in one capset(2), then the ambient set.
pub fn apply(sets: Sets) -> anyhow::Result<()> {
    for cap in 0..=last_cap() {
        if sets.bounding & (1u64 << cap) == 0 {
            crate::sys::drop_bounding(cap)?;
        }
    }
    crate::sys::capset(sets.effective, sets.permitted, sets.inheritable)?;
    crate::sys::clear_ambient()?;
    for cap in 0..=last_cap() {
        if sets.ambient & (1u64 << cap) != 0 {
            crate::sys::raise_ambient(cap)?;
        }
    }
    Ok(())
}
