//! Layer 8, part 3: the seccomp filter. Next: `masks.rs`.
//!
//! seccomp hands the kernel a small program that it runs on every system call of
//! the process (and of every process it starts): it looks at the call's number,
//! its architecture and its arguments, and returns what to do: allow it, fail it
//! with an errno, or kill the process. The program is classic BPF, the language
//! of packet filters: a list of 8-byte instructions (a 16-bit opcode, two jump
//! offsets, a 32-bit constant), run top to bottom, jumps only forward.
//!
//! lab's program is a denylist: it names the calls it refuses (the table in
//! [`RULES`], printed by `lab explain 8` as one line per rule) and allows every
//! other. Docker's default profile is an allowlist, the opposite: it names the
//! calls it allows (some only to a process with a given capability) and refuses
//! the rest. lab's list holds what Docker's refuses that matters most (mount and
//! the new mount API, namespaces, keyrings, modules, file handles, userfaultfd)
//! and io_uring, which Docker 20.10 allows: a ring whose requests the filter
//! never sees. None of them is a call that ordinary programs make (a shell,
//! busybox, apt and dpkg, the C library), or they fall back without it. It
//! fails them with EPERM rather than killing the process, as Docker does: a
//! program that tries `mount` gets an error it can report (clone3 gets ENOSYS,
//! below). A call of another ABI kills the process, and one of x32 fails (see
//! [`ARCH`]).
//!
//! There is no crate here: the program is a few dozen instructions that lab must
//! print one by one anyway, and seccompiler or libseccomp would compile rules
//! into a program lab would then have to take apart to show it.

use crate::engine::plan::{quote_path, Action, RunContext};
use anyhow::{bail, Context, Result};
use nix::libc;
use std::path::PathBuf;

/// What a rule does with a system call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// Fail it with EPERM.
    Eperm,
    /// Fail it with ENOSYS: "no such system call", so that the C library falls
    /// back to an older one that the filter can look into.
    Enosys,
    /// Fail it with EPERM when its first argument has a namespace flag.
    NamespaceFlags,
}

/// One line of the table: a system call, what happens to it, and why.
pub struct Rule {
    pub name: &'static str,
    pub nr: libc::c_long,
    pub deny: Deny,
    pub why: &'static str,
}

macro_rules! rule {
    ($name:ident, $deny:ident, $why:expr) => {
        Rule {
            name: stringify!($name),
            nr: paste_sys!($name),
            deny: Deny::$deny,
            why: $why,
        }
    };
}

/// libc's number for a system call on this architecture.
#[rustfmt::skip]
macro_rules! paste_sys {
    (mount) => { libc::SYS_mount };
    (umount2) => { libc::SYS_umount2 };
    (pivot_root) => { libc::SYS_pivot_root };
    (unshare) => { libc::SYS_unshare };
    (setns) => { libc::SYS_setns };
    (clone) => { libc::SYS_clone };
    (clone3) => { libc::SYS_clone3 };
    (keyctl) => { libc::SYS_keyctl };
    (add_key) => { libc::SYS_add_key };
    (request_key) => { libc::SYS_request_key };
    (bpf) => { libc::SYS_bpf };
    (perf_event_open) => { libc::SYS_perf_event_open };
    (kexec_load) => { libc::SYS_kexec_load };
    (kexec_file_load) => { libc::SYS_kexec_file_load };
    (init_module) => { libc::SYS_init_module };
    (finit_module) => { libc::SYS_finit_module };
    (delete_module) => { libc::SYS_delete_module };
    (reboot) => { libc::SYS_reboot };
    (swapon) => { libc::SYS_swapon };
    (swapoff) => { libc::SYS_swapoff };
    (open_by_handle_at) => { libc::SYS_open_by_handle_at };
    (acct) => { libc::SYS_acct };
    (fsopen) => { libc::SYS_fsopen };
    (fsconfig) => { libc::SYS_fsconfig };
    (fsmount) => { libc::SYS_fsmount };
    (fspick) => { libc::SYS_fspick };
    (open_tree) => { libc::SYS_open_tree };
    (move_mount) => { libc::SYS_move_mount };
    (mount_setattr) => { libc::SYS_mount_setattr };
    (name_to_handle_at) => { libc::SYS_name_to_handle_at };
    (io_uring_setup) => { libc::SYS_io_uring_setup };
    (io_uring_enter) => { libc::SYS_io_uring_enter };
    (io_uring_register) => { libc::SYS_io_uring_register };
    (userfaultfd) => { libc::SYS_userfaultfd };
}

/// The table, in the order the program tests it: the calls it refuses. Any
/// other call passes (a denylist: Docker's profile is the opposite, a list of
/// the calls it allows).
pub const RULES: [Rule; 34] = [
    rule!(mount, Eperm, "mount over the container's files, or a fresh proc or sysfs without the masks"),
    rule!(umount2, Eperm, "unmount the masks and see what they hide"),
    rule!(pivot_root, Eperm, "change the root again"),
    rule!(fsopen, Eperm, "the new mount API (Linux 5.2) does what mount does, in steps: open a filesystem to set up"),
    rule!(fsconfig, Eperm, "the new mount API: set that filesystem's options"),
    rule!(fsmount, Eperm, "the new mount API: make it a mount"),
    rule!(fspick, Eperm, "the new mount API: pick a mounted filesystem to reconfigure"),
    rule!(open_tree, Eperm, "the new mount API: a copy of a mount (a bind mount), not yet attached"),
    rule!(move_mount, Eperm, "the new mount API: attach a mount, or move one (a mask) away"),
    rule!(mount_setattr, Eperm, "the new mount API: change a mount's flags (the read-only of /proc/sys)"),
    rule!(unshare, Eperm, "new namespaces; a new user namespace needs no capability at all and gives every capability inside it"),
    rule!(setns, Eperm, "join another namespace, such as one of the host's through a file descriptor"),
    rule!(clone3, Enosys, "its flags are in memory the filter cannot read: ENOSYS makes the C library use clone, which the filter can check"),
    rule!(keyctl, Eperm, "the kernel's keyrings are not namespaced: the host's keys"),
    rule!(add_key, Eperm, "the same keyrings"),
    rule!(request_key, Eperm, "the same keyrings"),
    rule!(bpf, Eperm, "load programs into the host's kernel"),
    rule!(perf_event_open, Eperm, "observe the host's kernel and processes"),
    rule!(kexec_load, Eperm, "boot another kernel in place of the host's"),
    rule!(kexec_file_load, Eperm, "the same, from a file"),
    rule!(init_module, Eperm, "load code into the host's kernel"),
    rule!(finit_module, Eperm, "the same, from a file"),
    rule!(delete_module, Eperm, "unload a module the host uses"),
    rule!(reboot, Eperm, "reboot the machine (in a pid namespace: end the container)"),
    rule!(swapon, Eperm, "the host's swap"),
    rule!(swapoff, Eperm, "the host's swap"),
    rule!(open_by_handle_at, Eperm, "open any file of a filesystem by a handle, made up if need be, around every mount: the 2014 'shocker' escape from Docker"),
    rule!(name_to_handle_at, Eperm, "a file's handle, for open_by_handle_at (Docker allows it only with CAP_SYS_ADMIN)"),
    rule!(io_uring_setup, Eperm, "a ring of requests the kernel reads from memory: the opens, reads and connects it carries never pass this filter, and its code has been a frequent way into the kernel"),
    rule!(io_uring_enter, Eperm, "submit the requests of such a ring"),
    rule!(io_uring_register, Eperm, "give such a ring files and buffers"),
    rule!(userfaultfd, Eperm, "handle page faults in the process: an exploit uses it to stop the kernel in the middle of reading its memory, for as long as it likes"),
    rule!(acct, Eperm, "process accounting for the whole machine"),
    rule!(clone, NamespaceFlags, "with a CLONE_NEW* flag: new namespaces, like unshare; without one: a thread or a process, allowed"),
];

/// The architecture this filter is written for, as seccomp_data.arch reports it
/// (linux/audit.h): a process could make system calls of another ABI (i386's
/// `int 0x80` on x86_64, arm's on aarch64), where the numbers mean other calls.
/// The program kills the process at its first such call: a 32-bit program
/// cannot run under it (Docker's profile lists i386 and x32 beside x86_64, and
/// allows them the same calls). x32 calls carry x86_64's architecture and
/// [`X32_BIT`] in their number: the program fails each with EPERM.
#[cfg(target_arch = "x86_64")]
pub const ARCH: Option<(u32, &str)> = Some((0xc000_003e, "AUDIT_ARCH_X86_64"));
#[cfg(target_arch = "aarch64")]
pub const ARCH: Option<(u32, &str)> = Some((0xc000_00b7, "AUDIT_ARCH_AARCH64"));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const ARCH: Option<(u32, &str)> = None;

/// x32's system calls arrive as x86_64 ones with this bit set in the number.
const X32_BIT: u32 = 0x4000_0000;

/// Every CLONE_NEW* flag that fits clone's 32-bit flags: mount (0x20000), cgroup,
/// uts, ipc, user, pid, net.
const CLONE_NEW_FLAGS: u32 = 0x7e02_0000;

// Opcodes (linux/bpf_common.h): load a 32-bit word of seccomp_data; jump if
// equal, greater or equal, any bit set; return.
pub const LD: u16 = 0x20;
pub const JEQ: u16 = 0x15;
pub const JGE: u16 = 0x35;
pub const JSET: u16 = 0x45;
pub const RET: u16 = 0x06;

// What a program returns (linux/seccomp.h).
const KILL_PROCESS: u32 = 0x8000_0000;
const ERRNO: u32 = 0x0005_0000;
const ALLOW: u32 = 0x7fff_0000;

/// One instruction, and why it is there.
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
    pub why: String,
}

impl Insn {
    /// The 8 bytes the kernel reads (struct sock_filter, little-endian here).
    pub fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&self.code.to_le_bytes());
        b[2] = self.jt;
        b[3] = self.jf;
        b[4..].copy_from_slice(&self.k.to_le_bytes());
        b
    }

    fn op(&self) -> &'static str {
        match self.code {
            LD => "$LD",
            JEQ => "$JEQ",
            JGE => "$JGE",
            JSET => "$JSET",
            _ => "$RET",
        }
    }

    /// The constant as a person would write it: syscall numbers and offsets in
    /// decimal, flags, architectures and return values in hex.
    fn k_text(&self) -> String {
        if self.k >= 0x1000 {
            format!("{:#x}", self.k)
        } else {
            self.k.to_string()
        }
    }
}

/// The whole program, with the architecture check first and the returns last;
/// the rules' jumps lead to the return that their action names.
pub fn program() -> Result<Vec<Insn>> {
    let Some((arch, arch_name)) = ARCH else {
        bail!("step 8's seccomp filter is written for x86_64 and aarch64; this is neither");
    };
    let i = |code, jt, jf, k, why: &str| Insn {
        code,
        jt,
        jf,
        k,
        why: why.to_string(),
    };
    let mut p = vec![
        i(
            LD,
            0,
            0,
            4,
            "load the architecture (seccomp_data.arch, at byte 4)",
        ),
        i(JEQ, 1, 0, arch, &format!("{arch_name}: skip the next line")),
        i(
            RET,
            0,
            0,
            KILL_PROCESS,
            "another ABI, where the numbers mean other calls: kill the process",
        ),
        i(
            LD,
            0,
            0,
            0,
            "load the system call's number (seccomp_data.nr, at byte 0)",
        ),
    ];
    let x32 = cfg!(target_arch = "x86_64");
    let plain: Vec<&Rule> = RULES
        .iter()
        .filter(|r| r.deny != Deny::NamespaceFlags)
        .collect();
    let clone = RULES.iter().find(|r| r.deny == Deny::NamespaceFlags);
    // After the tests: [clone: 3 instructions], ALLOW, EPERM, ENOSYS.
    let tests = usize::from(x32) + plain.len();
    let clone_len = if clone.is_some() { 3 } else { 0 };
    let first_test = p.len();
    let allow = first_test + tests + clone_len;
    let (eperm, enosys) = (allow + 1, allow + 2);
    let jump = |from: usize, to: usize| -> Result<u8> {
        u8::try_from(to - from - 1).context("a seccomp jump longer than 255 instructions")
    };
    if x32 {
        let at = p.len();
        p.push(i(
            JGE,
            jump(at, eperm)?,
            0,
            X32_BIT,
            "an x32 call (bit 30 of the number): EPERM",
        ));
    }
    for r in &plain {
        let at = p.len();
        let (to, errno) = match r.deny {
            Deny::Enosys => (enosys, "ENOSYS"),
            _ => (eperm, "EPERM"),
        };
        let why = format!("{}: {errno}. {}", r.name, r.why);
        p.push(i(JEQ, jump(at, to)?, 0, r.nr as u32, &why));
    }
    if let Some(r) = clone {
        let at = p.len();
        p.push(i(
            JEQ,
            0,
            jump(at, allow)?,
            r.nr as u32,
            &format!("{}: look at its flags", r.name),
        ));
        p.push(i(
            LD,
            0,
            0,
            16,
            "load its first argument, the flags (seccomp_data.args[0], at byte 16)",
        ));
        let at = p.len();
        p.push(i(
            JSET,
            jump(at, eperm)?,
            0,
            CLONE_NEW_FLAGS,
            &format!("any CLONE_NEW* flag: EPERM. {}", r.why),
        ));
    }
    p.push(i(RET, 0, 0, ALLOW, "everything else: allow"));
    p.push(i(
        RET,
        0,
        0,
        ERRNO | libc::EPERM as u32,
        "return EPERM (the rules above jump here)",
    ));
    p.push(i(RET, 0, 0, ERRNO | libc::ENOSYS as u32, "return ENOSYS"));
    debug_assert_eq!(p.len(), enosys + 1);
    Ok(p)
}

/// The program as the kernel takes it.
pub fn filter(program: &[Insn]) -> Vec<libc::sock_filter> {
    program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

// ── The commands that write it, for bwrap to load ───────────────────────────────

/// `ins() { ... }`: a shell function that prints one instruction as its 8 bytes.
pub struct DefineIns;
/// `LD=0x20 JEQ=0x15 ...`: the opcodes by name.
pub struct Opcodes;
/// `BPF=FILE; : > "$BPF"`: where the program goes.
pub struct StartFile(pub PathBuf);
/// `ins $JEQ 21 0 165 >> "$BPF"`: one instruction of the program.
pub struct WriteInsn {
    pub insn: Insn,
    pub file: PathBuf,
}
/// `exec 10< FILE`: the program, held open across pivot_root for bwrap.
pub struct OpenFilter(pub PathBuf);

/// The file descriptor bwrap reads the program from.
pub const FD: u8 = 10;

impl Action for DefineIns {
    fn shell(&self) -> String {
        r#"ins() { printf "$(printf '\\x%02x' $(($1 & 255)) $(($1 >> 8)) $2 $3 $(($4 & 255)) $(($4 >> 8 & 255)) $(($4 >> 16 & 255)) $(($4 >> 24)))"; }"#.into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab writes the bytes itself (WriteInsn).
        Ok(())
    }
}

impl Action for Opcodes {
    fn shell(&self) -> String {
        format!("LD={LD:#x} JEQ={JEQ:#x} JGE={JGE:#x} JSET={JSET:#x} RET={RET:#x}")
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        Ok(())
    }
}

impl Action for StartFile {
    fn shell(&self) -> String {
        format!("BPF={}; : > \"$BPF\"", quote_path(&self.0))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        std::fs::write(&self.0, b"").with_context(|| format!("creating {}", self.0.display()))
    }
}

impl Action for WriteInsn {
    fn shell(&self) -> String {
        let i = &self.insn;
        format!(
            "ins {} {} {} {} >> \"$BPF\"",
            i.op(),
            i.jt,
            i.jf,
            i.k_text()
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.file)
            .with_context(|| format!("opening {}", self.file.display()))?;
        f.write_all(&self.insn.bytes())
            .with_context(|| format!("writing {}", self.file.display()))
    }
}

impl Action for OpenFilter {
    fn shell(&self) -> String {
        format!("exec {FD}< {}", quote_path(&self.0))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab loads the same program from memory with seccomp(2) in the last line
        // (RestrictedExec), so it keeps no descriptor open.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shell function prints exactly the bytes lab loads.
    #[test]
    fn the_printed_instructions_are_the_program() {
        let insns = program().unwrap();
        let file = std::env::temp_dir().join(format!("lab-bpf-{}", std::process::id()));
        let mut script = format!("{}\n{}\n", DefineIns.shell(), Opcodes.shell());
        script.push_str(&StartFile(file.clone()).shell());
        script.push('\n');
        for insn in insns {
            let w = WriteInsn {
                insn,
                file: file.clone(),
            };
            script.push_str(&w.shell());
            script.push('\n');
        }
        crate::engine::run_bash("-euc", &script);
        let written = std::fs::read(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        let expected: Vec<u8> = program().unwrap().iter().flat_map(|i| i.bytes()).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn every_jump_lands_on_a_return() {
        let p = program().unwrap();
        // (After the architecture check and the load of the number.)
        for (at, i) in p.iter().enumerate().skip(4) {
            if matches!(i.code, JEQ | JGE | JSET) {
                for off in [i.jt, i.jf] {
                    let to = at + 1 + off as usize;
                    assert!(to < p.len(), "instruction {at} jumps past the end");
                }
                if i.jt > 0 {
                    let target = &p[at + 1 + i.jt as usize];
                    assert_eq!(target.code, RET, "instruction {at}: {}", i.why);
                }
            }
        }
        assert_eq!(p.last().unwrap().code, RET);
    }

    /// What the kernel answers a call: the program run by an interpreter of the
    /// five instructions it uses, on the call's seccomp_data (its number at byte
    /// 0, its architecture at 4, its first argument's low word at 16).
    fn answer(p: &[Insn], arch: u32, nr: u32, arg0: u32) -> u32 {
        let word = |k: u32| match k {
            0 => nr,
            4 => arch,
            16 => arg0,
            _ => panic!("a load of byte {k}"),
        };
        let (mut pc, mut a) = (0, 0);
        loop {
            let i = &p[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                LD => a = word(i.k),
                JEQ => pc += jump(a == i.k),
                JGE => pc += jump(a >= i.k),
                JSET => pc += jump(a & i.k != 0),
                RET => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    const EPERM: u32 = ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = ERRNO | libc::ENOSYS as u32;

    /// Each rule of the table, run through the program: the answer it names.
    #[test]
    fn the_program_answers_each_rule_as_the_table_says() {
        let p = program().unwrap();
        let arch = ARCH.unwrap().0;
        for r in &RULES {
            let nr = r.nr as u32;
            match r.deny {
                Deny::Eperm => assert_eq!(answer(&p, arch, nr, 0), EPERM, "{}", r.name),
                Deny::Enosys => assert_eq!(answer(&p, arch, nr, 0), ENOSYS, "{}", r.name),
                Deny::NamespaceFlags => {
                    let thread = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES) as u32;
                    assert_eq!(answer(&p, arch, nr, thread), ALLOW, "{}", r.name);
                    for flag in [libc::CLONE_NEWNS, libc::CLONE_NEWUSER, libc::CLONE_NEWNET] {
                        assert_eq!(answer(&p, arch, nr, flag as u32), EPERM, "{}", r.name);
                    }
                }
            }
        }
    }

    /// What ordinary programs call passes; a call of another ABI kills the
    /// process, and an x32 call fails.
    #[test]
    fn the_program_allows_the_rest_and_guards_the_architecture() {
        let p = program().unwrap();
        let arch = ARCH.unwrap().0;
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_getpid,
            libc::SYS_mmap,
            libc::SYS_seccomp,
            libc::SYS_statx,
        ] {
            assert_eq!(answer(&p, arch, nr as u32, 0), ALLOW, "call {nr}");
        }
        // i386's getpid (20), made with int 0x80 on x86_64.
        const AUDIT_ARCH_I386: u32 = 0x4000_0003;
        assert_eq!(answer(&p, AUDIT_ARCH_I386, 20, 0), KILL_PROCESS);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(answer(&p, arch, X32_BIT | 39, 0), EPERM);
        }
    }

    /// The calls step 8 refuses besides Docker's headline ones, by their
    /// numbers on x86_64 (arch/x86/entry/syscalls/syscall_64.tbl): the table
    /// names them with those numbers, and the program fails each with EPERM.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_new_mount_api_io_uring_userfaultfd_and_handles_fail_with_eperm_on_x86_64() {
        let p = program().unwrap();
        let arch = ARCH.unwrap().0;
        let numbers = [
            ("name_to_handle_at", 303),
            ("open_by_handle_at", 304),
            ("userfaultfd", 323),
            ("io_uring_setup", 425),
            ("io_uring_enter", 426),
            ("io_uring_register", 427),
            ("open_tree", 428),
            ("move_mount", 429),
            ("fsopen", 430),
            ("fsconfig", 431),
            ("fsmount", 432),
            ("fspick", 433),
            ("mount_setattr", 442),
        ];
        for (name, nr) in numbers {
            let rule = RULES.iter().find(|r| r.name == name);
            assert_eq!(rule.map(|r| r.nr), Some(nr), "{name}");
            assert_eq!(answer(&p, arch, nr as u32, 0), EPERM, "{name}");
        }
    }
}
