//! Layer 5, part 3: the firewall rules, through the `iptables` program.
//!
//! Everything lab asks of iptables lives in lab's own chains (LAB-POSTROUTING,
//! LAB-DNAT, LAB-FORWARD), so taking them down removes exactly what lab added.
//! The program, not its kernel interface: an nftables or xtables ruleset blob is
//! impractical to build by hand. Next: `bridge.rs`.

use super::bridge::*;
use super::syscalls::UNUSED;
use super::teardown::*;
use super::{Net, BRIDGE};
use crate::engine::plan::{Action, RunContext};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// An iptables line of the plan, and why.
pub(super) struct Rule {
    pub(super) why: &'static str,
    pub(super) iptables: Iptables,
}

/// The rules every container shares: lab's chains, and the jumps into them.
pub(super) fn shared_rules(subnet: &Subnet, masquerade_out: &str) -> Vec<Rule> {
    let s = subnet.to_string();
    let r = |why, table, op, chain: &str, rule: String| Rule {
        why,
        iptables: Iptables::new(table, op, chain, &rule, true),
    };
    vec![
        r("lab's own chain for NAT on the way out (Docker has DOCKER chains)", Some("nat"), Op::NewChain, "LAB-POSTROUTING", String::new()),
        r("every packet leaving the host passes through it", Some("nat"), Op::Append, "POSTROUTING", "-j LAB-POSTROUTING".into()),
        r("packets from the containers leave with the host's address (found on the default route's interface)", Some("nat"), Op::Append, "LAB-POSTROUTING", format!("-s {s} {masquerade_out} -j MASQUERADE")),
        r("lab's own chain for published ports", Some("nat"), Op::NewChain, "LAB-DNAT", String::new()),
        r("packets arriving for one of the host's addresses look there first", Some("nat"), Op::Append, "PREROUTING", "-m addrtype --dst-type LOCAL -j LAB-DNAT".into()),
        r("and so do the host's own, except to 127.0.0.0/8", Some("nat"), Op::Append, "OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j LAB-DNAT".into()),
        r("lab's own chain of forwarding rules", None, Op::NewChain, "LAB-FORWARD", String::new()),
        r("first in FORWARD: Docker sets the FORWARD policy to DROP, and with br_netfilter even traffic between two containers on lab0 passes FORWARD", None, Op::Insert, "FORWARD", "-j LAB-FORWARD".into()),
        r("let everything from the containers through", None, Op::Append, "LAB-FORWARD", format!("-i {BRIDGE} -j ACCEPT")),
        r("and the answers to it", None, Op::Append, "LAB-FORWARD", format!("-o {BRIDGE} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")),
    ]
}

/// The two rules of one published port.
pub(super) fn publish_rules(net: &Net, p: &Publish) -> Vec<Rule> {
    let a = net.address;
    vec![
        Rule {
            why: "publish a port: what arrives for the host's port goes to the container's",
            iptables: Iptables::new(
                Some("nat"),
                Op::Append,
                "LAB-DNAT",
                &format!(
                    "-p tcp --dport {} -j DNAT --to-destination {a}:{}",
                    p.host, p.container
                ),
                false,
            ),
        },
        Rule {
            why: "and let it through to the container",
            iptables: Iptables::new(
                None,
                Op::Append,
                "LAB-FORWARD",
                &format!(
                    "-d {a}/32 -o {BRIDGE} -p tcp --dport {} -j ACCEPT",
                    p.container
                ),
                false,
            ),
        },
    ]
}

/// Lines printed one by one and applied together: the first carries them all.
/// (A shared line the first did not apply, because it was recorded as in place
/// while another was not, is applied by itself: each is checked against the
/// record. A container's own lines are all the first's.)
pub(super) fn grouped<W>(lines: impl IntoIterator<Item = (W, Iptables)>) -> Vec<(W, Iptables)> {
    let mut lines: Vec<(W, Iptables)> = lines.into_iter().collect();
    let all: Vec<Iptables> = lines.iter().map(|(_, r)| r.clone()).collect();
    for (i, (_, r)) in lines.iter_mut().enumerate() {
        match i {
            0 => r.with = all.clone(),
            _ => r.carried = !r.shared,
        }
    }
    lines
}

/// The iptables lines that undo [`shared_rules`]: the jumps into lab's chains are
/// deleted, the chains emptied and deleted (their own rules go with them).
pub(super) fn shared_undo_rules(subnet: &Subnet, masquerade_out: &str) -> Vec<Iptables> {
    let mut out = Vec::new();
    for rule in shared_rules(subnet, masquerade_out).into_iter().rev() {
        if rule.iptables.op == Op::NewChain {
            out.push(Iptables {
                op: Op::Flush,
                ..rule.iptables.clone()
            });
            out.push(rule.iptables.undo());
        } else if !rule.iptables.chain.starts_with("LAB-") {
            out.push(rule.iptables.undo());
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    NewChain,
    Append,
    Insert,
    Delete,
    Flush,
    DeleteChain,
}

/// One iptables command. `shared`: part of what every container uses (its undoing
/// waits for the last container).
#[derive(Clone)]
pub(super) struct Iptables {
    pub(super) table: Option<&'static str>,
    pub(super) op: Op,
    pub(super) chain: String,
    pub(super) rule: Vec<String>,
    pub(super) shared: bool,
    /// For undoing a shared line: the container that is leaving (it does not count
    /// as a user of lab0).
    pub(super) leaving: String,
    /// The first line of a group (the shared lines, or one container's published
    /// ports) carries them all: lab applies them together.
    pub(super) with: Vec<Iptables>,
    /// A container's own line that the first of its group applied.
    pub(super) carried: bool,
}

impl Iptables {
    pub(super) fn new(
        table: Option<&'static str>,
        op: Op,
        chain: &str,
        rule: &str,
        shared: bool,
    ) -> Iptables {
        Iptables {
            table,
            op,
            chain: chain.into(),
            rule: rule.split_whitespace().map(String::from).collect(),
            shared,
            leaving: String::new(),
            with: vec![],
            carried: false,
        }
    }
    /// The command that takes this one back.
    pub(super) fn undo(&self) -> Iptables {
        let op = match self.op {
            Op::NewChain => Op::DeleteChain,
            _ => Op::Delete,
        };
        Iptables {
            op,
            with: vec![],
            carried: false,
            ..self.clone()
        }
    }
    pub(super) fn args(&self, op: Op) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(t) = self.table {
            a.extend(["-t".to_string(), t.to_string()]);
        }
        let flag = match op {
            Op::NewChain => "-N",
            Op::Append => "-A",
            Op::Insert => "-I",
            Op::Delete => "-D",
            Op::Flush => "-F",
            Op::DeleteChain => "-X",
        };
        a.push(flag.into());
        a.push(self.chain.clone());
        a.extend(self.rule.iter().cloned());
        a
    }
    /// `-C`: does the rule exist? (`-n -L CHAIN` for a chain.)
    pub(super) fn exists(&self) -> Result<bool> {
        Ok(iptables(&exists_args(self), true)?.is_ok())
    }
}

impl Action for Iptables {
    fn shell(&self) -> String {
        format!("iptables {}", self.args(self.op).join(" "))
    }
    fn script(&self) -> String {
        // Runnable again and again: add what is missing, remove what is there.
        let shell = self.shell();
        let check = format!("iptables {} >/dev/null 2>&1", exists_args(self).join(" "));
        let body = match self.op {
            Op::NewChain => format!("{check} || {shell}"),
            Op::Append | Op::Insert => format!("{check} || {shell}"),
            Op::Delete | Op::Flush | Op::DeleteChain => format!("! {check} || {shell}"),
        };
        if self.shared && matches!(self.op, Op::Delete | Op::Flush | Op::DeleteChain) {
            format!("{UNUSED} || {body}")
        } else {
            body
        }
    }
    fn apply(&self, run: &RunContext) -> Result<()> {
        if self.shared && matches!(self.op, Op::Delete | Op::Flush | Op::DeleteChain) {
            return sweep(&self.leaving, run);
        }
        if self.carried {
            return Ok(());
        }
        let _lock = lock()?;
        if !self.shared {
            return match self.with.is_empty() {
                true => self.now(),
                false => own_group(&self.with.iter().collect::<Vec<_>>()),
            };
        }
        // Like Docker, which sets its rules up once when its daemon starts, lab
        // asks iptables about a shared rule only until it is recorded as in place:
        // each iptables run costs 1-5 ms, and ten of them were most of the time a
        // container took to start. The record goes before the rules do (sweep).
        let record = rules_record();
        let recorded = std::fs::read_to_string(&record).unwrap_or_default();
        // (`with`, when given, holds this line too.)
        let all: Vec<&Iptables> = match self.with.is_empty() {
            true => vec![self],
            false => self.with.iter().collect(),
        };
        let missing: Vec<&Iptables> = all
            .into_iter()
            .filter(|r| !recorded.lines().any(|l| l == r.shell()))
            .collect();
        if missing.iter().all(|r| r.shell() != self.shell()) {
            return Ok(());
        }
        // One iptables-restore for all of them (the first line carries the rest):
        // as they are, since none is recorded; checked first only if that fails.
        if restore(&restore_input(&missing)).is_err() {
            batch(&missing)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&record)
            .with_context(|| format!("writing {}", record.display()))?;
        let lines: String = missing.iter().map(|r| r.shell() + "\n").collect();
        std::io::Write::write_all(&mut file, lines.as_bytes())
            .with_context(|| format!("writing {}", record.display()))
    }
}

/// A container's own lines (its published ports), in one iptables-restore: one
/// program run instead of two per line. Those that remove rules go as they are
/// (a removal waits 10-15 ms for the kernel as iptables exits: once, not per
/// line), or, if refused (a rule was removed by hand), as [`batch`] finds them;
/// those that add rules go through [`batch`], which adds none twice.
fn own_group(rules: &[&Iptables]) -> Result<()> {
    let removing = rules
        .iter()
        .all(|r| matches!(r.op, Op::Delete | Op::Flush | Op::DeleteChain));
    if removing && restore(&restore_input(rules)).is_ok() {
        return Ok(());
    }
    batch(rules)
}

/// Make the lines of `rules` true at once: add what is missing, remove what is
/// there, in one `iptables-restore --noflush` (atomic per table, one program run
/// where one iptables per line and one more to check it took 20 runs and most
/// of a lone container's start). What is there comes from one `iptables-save`.
/// Should the batch be refused (iptables prints rules a little differently from
/// how they were given, and lab's guess of what exists was wrong), each line
/// is done on its own, as before. The caller holds the lock.
pub(super) fn batch(rules: &[&Iptables]) -> Result<()> {
    let saved = std::process::Command::new(iptables_path()?.with_file_name("iptables-save"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let Some(saved) = saved else {
        return one_by_one(rules);
    };
    let present = |r: &Iptables| {
        let table = r.table.unwrap_or("filter");
        let mut in_table = false;
        let chain_line = format!(":{} ", r.chain);
        let rule_line = normal(&format!("-A {} {}", r.chain, r.rule.join(" ")));
        saved.lines().any(|l| {
            if let Some(t) = l.strip_prefix('*') {
                in_table = t == table;
                return false;
            }
            in_table
                && match r.op {
                    Op::NewChain | Op::DeleteChain | Op::Flush => l.starts_with(&chain_line),
                    _ => normal(l) == rule_line,
                }
        })
    };
    let needed: Vec<&Iptables> = rules
        .iter()
        .copied()
        .filter(|r| match r.op {
            Op::NewChain | Op::Append | Op::Insert => !present(r),
            Op::Delete | Op::Flush | Op::DeleteChain => present(r),
        })
        .collect();
    if needed.is_empty() {
        return Ok(());
    }
    if restore(&restore_input(&needed)).is_ok() {
        return Ok(());
    }
    one_by_one(&needed)
}

/// The lines of `rules` as iptables-restore reads them: by table, in order.
pub(super) fn restore_input(rules: &[&Iptables]) -> String {
    let mut input = String::new();
    let mut tables: Vec<&str> = rules.iter().map(|r| r.table.unwrap_or("filter")).collect();
    tables.sort();
    tables.dedup();
    for table in tables {
        input.push_str(&format!("*{table}\n"));
        for r in rules
            .iter()
            .filter(|r| r.table.unwrap_or("filter") == table)
        {
            let mut args = r.args(r.op);
            if r.table.is_some() {
                args.drain(..2);
            }
            input.push_str(&args.join(" "));
            input.push('\n');
        }
        input.push_str("COMMIT\n");
    }
    input
}

fn one_by_one(rules: &[&Iptables]) -> Result<()> {
    rules.iter().try_for_each(|r| r.now())
}

/// A rule line as iptables-save prints it, without what it adds by itself
/// (`-m tcp` after `-p tcp`).
fn normal(line: &str) -> String {
    line.replace(" -m tcp", "").replace(" -m udp", "")
}

/// `iptables-restore --noflush -w`, `input` on its standard input. All or nothing:
/// a line it refuses leaves every table as it was.
pub(super) fn restore(input: &str) -> Result<()> {
    Restore::start(input)?.finish()
}

/// An iptables-restore under way. Its rules are in the kernel when it has sent
/// them; a restore that removed rules then waits, as it exits, for the kernel to
/// free them (the nf_tables socket's release waits for an RCU grace period,
/// 30-40 ms here): other work can go on meanwhile.
pub(super) struct Restore(std::process::Child);

impl Restore {
    pub(super) fn start(input: &str) -> Result<Restore> {
        use std::io::Write;
        let mut child =
            std::process::Command::new(iptables_path()?.with_file_name("iptables-restore"))
                .args(["--noflush", "-w"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("running iptables-restore")?;
        let written = child
            .stdin
            .take()
            .context("iptables-restore's input")
            .and_then(|mut stdin| Ok(stdin.write_all(input.as_bytes())?));
        // (Closed: it reads to the end of its input.)
        if let Err(e) = written {
            let _ = child.wait();
            return Err(e);
        }
        Ok(Restore(child))
    }

    /// Wait until it has exited; what it said if it refused.
    pub(super) fn finish(self) -> Result<()> {
        let out = self.0.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "iptables-restore said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

/// The shared rules lab has made and not yet taken down, one iptables line each.
pub(super) fn rules_record() -> PathBuf {
    crate::dirs::run_dir().join("network-rules")
}

impl Iptables {
    /// Add it if missing, remove it if present (the caller holds the lock).
    pub(super) fn now(&self) -> Result<()> {
        let present = self.exists()?;
        let needed = match self.op {
            Op::NewChain | Op::Append | Op::Insert => !present,
            Op::Delete | Op::Flush | Op::DeleteChain => present,
        };
        if !needed {
            return Ok(());
        }
        iptables(&self.args(self.op), false)?.map_err(|e| anyhow::anyhow!(e))
    }
}

fn exists_args(r: &Iptables) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(t) = r.table {
        a.extend(["-t".to_string(), t.to_string()]);
    }
    match r.op {
        Op::NewChain | Op::DeleteChain | Op::Flush => {
            a.extend(["-n".into(), "-L".into(), r.chain.clone()])
        }
        _ => {
            a.extend(["-C".into(), r.chain.clone()]);
            a.extend(r.rule.iter().cloned());
        }
    }
    a
}

/// Run iptables. Outer error: it could not run at all; inner: it said no.
pub(super) fn iptables(args: &[String], quiet: bool) -> Result<Result<(), String>> {
    let out = std::process::Command::new(iptables_path()?)
        .args(args)
        // -w: wait for the xtables lock instead of failing when Docker holds it.
        .arg("-w")
        .output()
        .context("running iptables")?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok(Err(if quiet {
        said
    } else {
        format!("iptables {} said: {said}", args.join(" "))
    }))
}

/// The iptables program, or what to install.
pub fn iptables_path() -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join("iptables");
        // (iptables is usually a symlink to xtables-nft-multi: metadata follows it.)
        if p.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(p);
        }
    }
    bail!("iptables not found: step 5 needs it for NAT and published ports (apt-get install iptables)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line of a group carries all of them. The shared lines after it
    /// are still checked against the record one by one; a container's own lines
    /// after the first are done by it.
    #[test]
    fn a_group_is_applied_by_its_first_line() {
        let shared = shared_rules(&default_subnet(), "");
        let n = shared.len();
        let shared = grouped(shared.into_iter().map(|r| (r.why, r.iptables)));
        assert_eq!(shared[0].1.with.len(), n);
        assert!(shared[1..]
            .iter()
            .all(|(_, r)| r.with.is_empty() && !r.carried));
        let own = |port: u16| {
            Iptables::new(
                Some("nat"),
                Op::Delete,
                "LAB-DNAT",
                &format!("-p tcp --dport {port} -j DNAT --to-destination 10.200.0.2:80"),
                false,
            )
        };
        let own = grouped([((), own(8080)), ((), own(8081))]);
        let first: Vec<String> = own[0].1.with.iter().map(|r| r.shell()).collect();
        assert_eq!(
            first,
            [
                "iptables -t nat -D LAB-DNAT -p tcp --dport 8080 -j DNAT --to-destination 10.200.0.2:80",
                "iptables -t nat -D LAB-DNAT -p tcp --dport 8081 -j DNAT --to-destination 10.200.0.2:80",
            ]
        );
        assert!(!own[0].1.carried && own[1].1.carried);
        // Both go in one restore, in the nat table.
        let lines: Vec<&Iptables> = own[0].1.with.iter().collect();
        assert_eq!(
            restore_input(&lines),
            "*nat\n-D LAB-DNAT -p tcp --dport 8080 -j DNAT --to-destination 10.200.0.2:80\n-D LAB-DNAT -p tcp --dport 8081 -j DNAT --to-destination 10.200.0.2:80\nCOMMIT\n"
        );
    }
}
