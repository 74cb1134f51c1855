//! Layer 5, part 5: who takes down what containers share, and when.
//!
//! The last container leaving removes lab's chains, puts `ip_forward` back and
//! removes lab0, under the network lock, so that it never takes lab0 away from
//! a container arriving; the bridge's removal runs in a process of its own after
//! lab has gone. A run killed with `kill -9` leaves its published ports behind:
//! [`forget`] removes them. Next: `gather.rs`.

use super::bridge::*;
use super::iptables::*;
use super::syscalls::*;
use super::{Net, BRIDGE};
use crate::engine::plan::{Action, RunContext};
use crate::netlink::Netlink;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Taking down what containers share, in reverse; each line only when no other
/// container is attached to lab0 (lab does them all at once: see [`sweep`]).
pub(super) fn shared_teardown(
    subnet: &Subnet,
    masquerade_out: &str,
    leaving: &str,
) -> Vec<(&'static str, Box<dyn Action>)> {
    let mut out: Vec<(&'static str, Box<dyn Action>)> = Vec::new();
    for mut rule in shared_undo_rules(subnet, masquerade_out) {
        let why = match rule.op {
            Op::Flush => "when no other container uses lab0: empty lab's chain",
            Op::DeleteChain => "and delete it",
            _ => "when no other container uses lab0: remove the jump into lab's chain",
        };
        rule.leaving = leaving.to_string();
        out.push((why, Box::new(rule)));
    }
    out.push((
        "when no other container uses lab0: remove the bridge (lab leaves this, and the rules above, to a process of its own, so that the kernel's 60 ms or so do not hold your prompt)",
        Box::new(Bridge::Delete(leaving.to_string())),
    ));
    out.push((
        "when no other container uses lab0: switch forwarding back off, unless it was on before (Docker or libvirt may need it on). IP_FORWARD_WAS is what this terminal noted when it switched forwarding on: in another shell it is unset, and the line leaves forwarding on",
        Box::new(Forwarding::Restore(leaving.to_string())),
    ));
    out
}

/// Take down everything containers share, in one go under the network lock, if no
/// container but `leaving` uses lab0. Every line of the shared teardown calls this;
/// the first decides for all of them (this run's context remembers it). Two containers leaving at the same moment
/// never both leave lab0 to the other: the first to take the lock gives up its
/// address, so the second finds lab0 unused.
pub(super) fn sweep(leaving: &str, run: &RunContext) -> Result<()> {
    const SWEPT: &str = "what containers share on the network, taken down if unused";
    if run.decided(SWEPT) {
        return Ok(());
    }
    sweep_now(leaving)?;
    run.decide(SWEPT);
    Ok(())
}

/// [`sweep`], every time it is called. Returns whether it took things down.
fn sweep_now(leaving: &str) -> Result<bool> {
    // A removal of lab0 that an earlier run left to a process of its own: done
    // (or finished here) first.
    settle_removal();
    let _lock = lock()?;
    // The leaving container's own veth: the removal of lab0 deletes it (the
    // kernel would too, with its namespace); this need not wait for it.
    let own = (!leaving.is_empty())
        .then(|| reserved(&crate::engine::state::container_dir(leaving)))
        .flatten()
        .map(|(address, subnet)| host_veth(address, subnet));
    if !leaving.is_empty() {
        // Give up this container's address first, under the lock: of several
        // containers leaving at once, each sees the others still holding theirs,
        // except the last to get here, which then finds lab0 unused.
        let _ = std::fs::remove_file(crate::engine::state::container_dir(leaving).join("address"));
    }
    let mut nl = Netlink::open()?;
    if in_use(&mut nl, leaving, own.as_deref())? {
        return Ok(false);
    }
    match leaving.is_empty() {
        // lab clean, or the cleanup of a killed run: now.
        true => take_down(&mut nl, None)?,
        // The last container leaving: after lab has gone (or now, if that
        // process cannot be started).
        false => {
            if let Err(e) = take_down_later(own.as_deref()) {
                let _ = std::fs::remove_file(removal_record());
                take_down(&mut nl, own.as_deref())?;
                return Err(e);
            }
        }
    }
    Ok(true)
}

/// Remove lab's rules, put ip_forward back, remove lab0 (the caller holds the
/// lock and found lab0 unused).
fn take_down(nl: &mut Netlink, own: Option<&str>) -> Result<()> {
    // First the record, then the rules: a run stopped between the two leaves
    // rules that the next container checks again, never a record of missing ones.
    let recorded = std::fs::read_to_string(rules_record()).unwrap_or_default();
    match std::fs::remove_file(rules_record()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context("removing the record of lab's iptables rules")
        }
        _ => {}
    }
    // The rules' removal and lab0's each end in a wait in the kernel (grace
    // periods, 15-30 ms and 30-55 ms here): the restore goes on in its own
    // process while lab0 goes, in a thread. lab0 is asked for first: the kernel
    // holds the lock of all links through half its wait, and the leaving
    // container's veth, asked for after it, goes as that half ends.
    let bridge = Deleting::start(BRIDGE, "bridge").asked();
    let rules = iptables_path().is_ok().then(|| {
        // Which subnet does not matter here: the MASQUERADE rule goes with its chain.
        let undo = shared_undo_rules(&default_subnet(), "");
        // Every shared line recorded: they are all there, and go in one restore
        // as they are; otherwise (or if it fails) what is there is looked up first.
        let all_there = shared_rules(&default_subnet(), "")
            .iter()
            .filter(|r| r.iptables.op == Op::NewChain || !r.iptables.chain.starts_with("LAB-"))
            .all(|r| recorded.lines().any(|l| l.starts_with(&r.iptables.shell())));
        let running = all_there
            .then(|| Restore::start(&restore_input(&undo.iter().collect::<Vec<_>>())).ok())
            .flatten();
        (undo, running)
    });
    let own = own.map(|own| Deleting::start(own, "veth"));
    if let Some((undo, running)) = rules {
        if !running.is_some_and(|r| r.finish().is_ok()) {
            batch(&undo.iter().collect::<Vec<_>>())?;
        }
    }
    if forwarding_record().exists() {
        std::fs::write(IP_FORWARD, "0").with_context(|| format!("writing {IP_FORWARD}"))?;
        let _ = std::fs::remove_file(forwarding_record());
    }
    let bridge = bridge.unlisted(nl);
    if let Some(own) = own {
        own.unlisted(nl)?;
    }
    bridge
}

/// `ip link del NAME`, of a link of that kind (an interface of another kind by
/// that name is not lab's), in a thread of its own. The kernel takes the link off
/// its list holding the lock of all links (rtnl), and for a bridge waits there
/// until what the CPUs had queued to free has been freed (an `rcu_barrier`);
/// whoever asks for a link meanwhile waits for the lock. Then it lets go of the
/// lock and waits once more, for the link's last users, before it answers: 17-24
/// ms and 33-53 ms for lab0 here, with `ip link show` and `ip link del`. From the
/// moment it lets go nobody sees the link: that is what [`Deleting::unlisted`]
/// waits for. Nobody waits for the thread (a process that exits waits for its
/// threads to leave the kernel).
struct Deleting {
    name: String,
    work: Work,
}

enum Work {
    Thread(
        std::thread::JoinHandle<Result<()>>,
        std::sync::mpsc::Receiver<()>,
    ),
    // (No thread could be started: done in place.)
    Done(Result<()>),
}

impl Deleting {
    fn start(name: &str, kind: &'static str) -> Deleting {
        let (asking, asked) = std::sync::mpsc::channel();
        let (looked_up, told) = (name.to_string(), asking.clone());
        let work =
            match std::thread::Builder::new().spawn(move || delete_link(&looked_up, kind, &told)) {
                Ok(thread) => Work::Thread(thread, asked),
                Err(_) => Work::Done(delete_link(name, kind, &asking)),
            };
        Deleting {
            name: name.to_string(),
            work,
        }
    }

    /// Wait until the thread is about to ask the kernel (or found nothing to
    /// delete): a deletion started next reaches the kernel after this one.
    fn asked(self) -> Deleting {
        if let Work::Thread(_, asked) = &self.work {
            let _ = asked.recv();
        }
        self
    }

    /// Wait until the link is off the kernel's list, or the deletion ended
    /// (it was not there, was of another kind, or the kernel refused).
    fn unlisted(self, nl: &mut Netlink) -> Result<()> {
        let thread = match self.work {
            Work::Done(result) => return result.with_context(|| format!("removing {}", self.name)),
            Work::Thread(thread, _) => thread,
        };
        loop {
            if thread.is_finished() {
                return match thread.join() {
                    Ok(result) => result.with_context(|| format!("removing {}", self.name)),
                    Err(_) => anyhow::bail!("removing {}: its thread panicked", self.name),
                };
            }
            if nl.link(&self.name)?.is_none() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// The work of [`Deleting`]: says on `asking` when it is about to ask the kernel
/// (and when it is done).
fn delete_link(name: &str, kind: &str, asking: &std::sync::mpsc::Sender<()>) -> Result<()> {
    let result = (|| {
        let mut nl = Netlink::open()?;
        match nl.link(name)? {
            Some(l) if l.kind.as_deref() == Some(kind) => {
                let _ = asking.send(());
                match nl.delete_link(l.index) {
                    Err(e) if e.downcast_ref() == Some(&nix::errno::Errno::ENODEV) => Ok(()),
                    other => other,
                }
            }
            _ => Ok(()),
        }
    })();
    let _ = asking.send(());
    result
}

// ── lab0's removal, after lab has gone ────────────────────────────────────────

/// In LAB_RUN while lab0's removal is under way: the process doing it.
fn removal_record() -> PathBuf {
    crate::dirs::run_dir().join("lab0-removal")
}

/// Taking down what containers share makes the kernel wait until no CPU can
/// still use what goes (RCU: 30-55 ms for lab0, 15-30 for the rules here): it
/// need not hold the student's prompt. A process of its own does it after lab
/// has gone, under the network lock, if lab0 is still unused then;
/// the note in LAB_RUN says so until the host is as it was (the kernel may still
/// be freeing lab0: nobody sees it), and whoever needs lab0 next (a run, `lab
/// clean`, the checks after exit) waits for it, or finishes it if that process
/// died. The leaving container's veth (`own`) is deleted there too: the kernel
/// would remove it with the container's namespace, but only after a grace period
/// of its own and, with lab0 going, after lab0's first wait.
fn take_down_later(own: Option<&str>) -> Result<()> {
    use nix::unistd::ForkResult;
    let record = removal_record();
    // Written first, by lab: a note of a removal is never missing while one runs.
    std::fs::write(&record, "").context("writing the note of lab0's removal")?;
    crate::engine::state::fault_point("the note of lab0's removal")?;
    match crate::sys::fork()? {
        ForkResult::Child => {
            // On its own: no terminal, no pipe of whoever ran lab held open, no
            // copy of lab's locks (flocks are held while any copy is open).
            crate::sys::close_inherited();
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = nix::unistd::dup2_stdin(&null);
                let _ = nix::unistd::dup2_stdout(&null);
                let _ = nix::unistd::dup2_stderr(&null);
            }
            let _ = finish_removal(own);
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            // (Gone already: it finished, or the next run will.)
            if let Some(id) = crate::engine::state::ProcessId::of(child.as_raw()) {
                std::fs::write(&record, id.text()).context("writing the note of lab0's removal")?;
            }
            Ok(())
        }
    }
}

/// Take down what containers share if nothing uses lab0 (after the departing
/// veths but `own` are gone), under the network lock, and `own`, then the note:
/// whoever waits for the note finds the host as it was.
fn finish_removal(own: Option<&str>) -> Result<()> {
    let _lock = lock()?;
    let mut nl = Netlink::open()?;
    if !in_use(&mut nl, "", own)? {
        take_down(&mut nl, own)?;
    } else if let Some(own) = own {
        Deleting::start(own, "veth").unlisted(&mut nl)?;
    }
    match std::fs::remove_file(removal_record()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Wait until a removal of lab0 under way is done (at most 5 s), or finish it
/// here if the process doing it is gone.
pub(super) fn settle_removal() {
    let record = removal_record();
    let start = std::time::Instant::now();
    while let Ok(text) = std::fs::read_to_string(&record) {
        let alive = crate::engine::state::ProcessId::parse(&text).is_some_and(|p| p.alive());
        // (Empty: lab wrote the note and has not yet named the process; if that
        // lab is gone too, nobody will.)
        let young = text.is_empty() && start.elapsed() < std::time::Duration::from_millis(200);
        if !(alive || young) || start.elapsed() > std::time::Duration::from_secs(5) {
            let _ = finish_removal(None);
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

/// After `kill -9` of lab: the published-port rules its container left (the veth
/// went with the namespace). Called with the container's state still there.
pub(super) fn forget(dir: &Path) {
    let Some((address, subnet)) = reserved(dir) else {
        return;
    };
    let net = Net {
        subnet,
        gateway: subnet.host(1),
        address,
        veth: String::new(),
        uplink: None,
        etc: PathBuf::new(),
        resolv: PathBuf::new(),
        publish: vec![],
        name: String::new(),
    };
    let _ = Veth::Delete(host_veth(address, subnet)).apply(&RunContext::default());
    let published = std::fs::read_to_string(dir.join("published")).unwrap_or_default();
    // The container port is not kept: delete the DNAT rules by what they send to.
    let _ = (|| -> Result<()> {
        let _lock = lock()?;
        let out = std::process::Command::new(iptables_path()?)
            .args(["-t", "nat", "-S", "LAB-DNAT", "-w"])
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let ours = published
                .lines()
                .filter_map(|l| Publish::parse(l).ok())
                .any(|p| line.contains(&format!("--dport {} ", p.host)))
                && line.contains(&format!("--to-destination {}:", net.address));
            if let (true, Some(rule)) = (ours, line.strip_prefix("-A LAB-DNAT ")) {
                let mut args: Vec<String> =
                    ["-t", "nat", "-D", "LAB-DNAT"].map(String::from).to_vec();
                args.extend(rule.split_whitespace().map(String::from));
                let _ = iptables(&args, true);
            }
        }
        let out = std::process::Command::new(iptables_path()?)
            .args(["-S", "LAB-FORWARD", "-w"])
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rule) = line
                .strip_prefix("-A LAB-FORWARD ")
                .filter(|r| r.starts_with(&format!("-d {}/32 ", net.address)))
            {
                let mut args: Vec<String> = ["-D", "LAB-FORWARD"].map(String::from).to_vec();
                args.extend(rule.split_whitespace().map(String::from));
                let _ = iptables(&args, true);
            }
        }
        Ok(())
    })();
}

/// Take down what containers share (lab's chains, lab0, ip_forward), unless a
/// container still uses it. For `lab clean` and after a killed run. Returns
/// whether anything was there to remove.
pub(super) fn remove_shared_if_unused() -> Result<bool> {
    // A removal under way first: looked at halfway, lab0 may be gone already
    // while the process doing it has yet to remove its note.
    settle_removal();
    let mut nl = Netlink::open()?;
    if nl.link(BRIDGE)?.is_none() && !forwarding_record().exists() {
        return Ok(false);
    }
    sweep_now("")
}
