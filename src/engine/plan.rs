//! The plan of a step, as data.
//!
//! Each layer turns a [`Spec`] (which step, which root filesystem, which container)
//! into a list of [`Command`]s. One command is one line a person would type, the
//! sentence that says why, and the [`Action`] that knows both its shell text and the
//! system calls that do the same thing. That single list is what `lab explain`
//! prints, what `lab script` turns into bash, and what `lab step` executes, so the
//! three cannot drift apart.

pub use super::context::RunContext;
use super::layer::Layer;
pub use super::spec::{LayerOptions, RunAs, Spec};
/// The layers name their namespaces by this path.
pub use crate::engine::namespace::Namespace;
use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use std::path::{Path, PathBuf};

/// When, and on which side, a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// On the host, before the container exists.
    Host,
    /// On the host, in the process that becomes the container's first process,
    /// before it makes the namespaces: where it must be when they are made
    /// (step 6: in its cgroups, so that its cgroup namespace has the container's
    /// cgroup as its root). Typed, these lines start the unshare line (`bash -c
    /// '...; exec unshare ...'`). lab does them from the host as soon as the
    /// process exists (or starts it there, clone3), and the process makes the
    /// namespaces that need them (`Row::after_join`) once the host is done.
    Join,
    /// On the host, as soon as the container's first process exists: what needs
    /// its PID. A person types these in a second terminal; `lab script` runs them in
    /// the background while unshare runs in the foreground.
    Connect,
    /// Inside, before anything else: wait for what the host did with the PID, and
    /// take it up (step 9: become root of the new user namespace once mapped).
    Wait,
    /// Inside the new namespaces, first thing, while the host's files are still
    /// in view (before the root changes).
    Enter,
    /// Inside, in the container's own mount table: what is mounted into the new
    /// root before it becomes `/`.
    Root,
    /// Inside: the root filesystem becomes `/` (the host's tree stays in view,
    /// stacked on it, until the first commands of `Inside` detach it).
    ChangeRoot,
    /// Inside the new root, the host's tree still in view: what comes from the
    /// host, mounted on paths that now resolve in the container (a symbolic link
    /// of the image leads to the container's own files, never the host's).
    FromOldRoot,
    /// Inside the new namespaces, before the command starts.
    Inside,
    /// The last line: start the command.
    Run,
    /// On the host, after the container is gone: undo what `Host` made.
    Teardown,
}

/// One thing a layer does, known both as shell text and as system calls.
pub trait Action {
    /// The line a person types, exactly as printed by `lab explain` and `lab step`.
    fn shell(&self) -> String;
    /// The same line inside `lab script`, where the command to run is `"$@"`.
    fn script(&self) -> String {
        self.shell()
    }
    /// Do it with system calls, the way the shell command would.
    fn apply(&self, run: &RunContext) -> Result<()>;
    /// A line that puts the container's first process in a cgroup (v2) names
    /// it here: lab starts that process in it (`clone3` with `CLONE_INTO_CGROUP`,
    /// see sys::clone_into), and `apply` finds the work done.
    fn born_in(&self) -> Option<&std::path::Path> {
        None
    }
    /// Whether clone3 did this line's work: this run's container's first
    /// process was born in the cgroup it names.
    fn done_at_birth(&self, run: &RunContext) -> bool {
        self.born_in().is_some() && run.born_in_cgroup()
    }
    /// Whether this is the line that finds the container's PID for the lines
    /// of the second terminal ([`FindPid`]).
    fn finds_pid(&self) -> bool {
        false
    }
}

/// A line of the plan: which layer it belongs to, when it runs, why, and what.
pub struct Command {
    pub layer: u8,
    pub phase: Phase,
    pub why: String,
    pub action: Box<dyn Action>,
}

impl Command {
    pub fn at(
        phase: Phase,
        layer: u8,
        why: impl Into<String>,
        action: impl Action + 'static,
    ) -> Self {
        Self {
            layer,
            phase,
            why: why.into(),
            action: Box::new(action),
        }
    }
}

/// The whole plan of one step.
pub struct Plan {
    pub spec: Spec,
    /// The layers switched on, in order.
    pub layers: Vec<&'static Layer>,
    /// Every namespace asked for, with the layer that asks for it.
    pub namespaces: Vec<(u8, Namespace)>,
    /// Every command, ordered by phase, then by layer.
    pub commands: Vec<Command>,
}

impl Plan {
    /// The plan of `spec`'s step. A layer that cannot make its commands on this
    /// machine (no cgroups, no range of IDs) stops lab here, before anything is
    /// made; printed for a person to type, its line says so instead.
    pub fn new(spec: Spec) -> Result<Plan> {
        let all = crate::engine::curriculum::up_to(spec.step);
        // (Without root, a layer that needs it keeps its namespaces, not its commands.)
        let namespaces = all
            .iter()
            .flat_map(|l| l.namespaces.iter().map(move |ns| (l.number, *ns)))
            .collect();
        let layers = crate::engine::curriculum::active(spec.step);
        let mut commands: Vec<Command> = Vec::new();
        for l in &layers {
            // What this machine lacks (cgroups, a range of IDs): printed, the rest
            // of the plan is still worth reading; run, nothing is made.
            match (l.commands)(&spec) {
                Ok(c) => commands.extend(c),
                Err(e) if spec.by_hand => commands.push(not_possible_here(l.number, &e)),
                Err(e) => return Err(e),
            }
        }
        // Without root, what a left-out layer still does in its namespace.
        for (l, _) in crate::engine::curriculum::left_out(spec.step) {
            commands.extend(l.hooks.without_root_commands(&spec));
        }
        // The last line starts the command; a layer may write it (step 8 runs the
        // command with fewer privileges).
        let run_given = commands.iter().any(|c| c.phase == Phase::Run);
        if !run_given && all.iter().any(|l| !l.namespaces.is_empty()) {
            commands.push(Command {
                layer: 0,
                phase: Phase::Run,
                why: "replace this shell with the command: it runs in the container".into(),
                action: Box::new(Exec {
                    command: spec.command.clone(),
                    user: spec.user.clone(),
                }),
            });
        }
        // Typed by hand, the first terminal notes its shell's PID: the second
        // terminal, and `lab check`, find the container it starts by it, whatever
        // other containers run.
        let note = shell_note(&spec);
        commands.push(Command::at(
            Phase::Host,
            0,
            "note the PID of this terminal's shell: the second terminal and lab check find the container it starts by it, even with other containers running",
            NoteShell(note.clone()),
        ));
        commands.push(Command::at(
            Phase::Teardown,
            0,
            match spec.by_hand {
                true => "the note of this terminal's shell, and the container's directory: empty now, or rmdir says what is left",
                false => "the note of this terminal's shell",
            },
            ForgetShell {
                note: note.clone(),
                dir_too: spec.by_hand,
            },
        ));
        // What the host does with the new process needs its PID: the first such
        // line finds it (in the section of the first layer that needs it).
        if let Some(layer) = commands
            .iter()
            .filter(|c| c.phase == Phase::Connect)
            .map(|c| c.layer)
            .min()
        {
            commands.insert(
                0,
                Command::at(
                    Phase::Connect,
                    layer,
                    "in a second terminal on the host: the PID of this container's unshare, which is in the new namespaces",
                    FindPid(note),
                ),
            );
        }
        // Stable: within a phase, layers keep their order and their own order.
        // The terminal's own lines (layer 0) come first, and last in the teardown.
        commands.sort_by_key(|c| match (c.phase, c.layer) {
            (Phase::Teardown, 0) => (c.phase, u8::MAX),
            _ => (c.phase, c.layer),
        });
        Ok(Plan {
            spec,
            layers,
            namespaces,
            commands,
        })
    }

    /// The namespaces the first process is born in (clone(2)'s flags).
    pub fn clone_flags(&self) -> CloneFlags {
        self.namespace_flags(false)
    }

    /// The namespaces it makes itself once the `Join` lines are done (unshare(2)),
    /// unless it is born where they put it (clone3 into its cgroup).
    pub fn after_join_flags(&self) -> CloneFlags {
        self.namespace_flags(true)
    }

    fn namespace_flags(&self, after_join: bool) -> CloneFlags {
        self.namespaces
            .iter()
            .filter(|(_, ns)| ns.row().after_join == after_join)
            .fold(CloneFlags::empty(), |f, (_, ns)| f | ns.clone_flag())
    }

    /// The cgroup the container's first process is born in, if a line names one.
    pub fn born_in(&self) -> Option<&std::path::Path> {
        self.commands.iter().find_map(|c| c.action.born_in())
    }

    /// The `unshare` line that enters every namespace of the step, if any.
    pub fn unshare(&self) -> Option<Unshare> {
        (!self.namespaces.is_empty()).then(|| Unshare {
            namespaces: self.namespaces.clone(),
            joins: self
                .commands_in(Phase::Join)
                .map(|c| Joined {
                    shell: c.action.shell(),
                    script: c.action.script(),
                    why: c.why.clone(),
                })
                .collect(),
        })
    }

    pub fn commands_in(&self, phase: Phase) -> impl Iterator<Item = &Command> {
        self.commands.iter().filter(move |c| c.phase == phase)
    }
}

/// Where the first terminal notes its shell's PID ([`NoteShell`]), which
/// [`FindPid`] and `lab check` read.
pub fn shell_note(spec: &Spec) -> PathBuf {
    spec.files_dir().join("shell")
}

/// The line printed in place of a layer's commands that this machine cannot
/// make: what could not be done (the error's outermost context) as its why,
/// and the reason as a comment. The rest of the plan can still be read.
fn not_possible_here(layer: u8, e: &anyhow::Error) -> Command {
    let mut chain = e.chain().map(|c| c.to_string());
    let what = chain.next().unwrap_or_default();
    let reason: Vec<String> = chain.collect();
    match reason.is_empty() {
        true => Command::at(
            Phase::Host,
            layer,
            format!("the commands of layer {layer}"),
            NotPossibleHere(what),
        ),
        false => Command::at(Phase::Host, layer, what, NotPossibleHere(reason.join(": "))),
    }
}

/// `# not possible here: WHY`: printed only (lab stops at [`Plan::new`]).
struct NotPossibleHere(String);

impl Action for NotPossibleHere {
    fn shell(&self) -> String {
        format!("# not possible here: {}", self.0)
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        anyhow::bail!("{}", self.0)
    }
}

/// `unshare --mount --pid --fork ... bash`: a new shell in new namespaces. lab does
/// the same with one `clone(2)` that carries every namespace flag (see container.rs).
/// With lines of `Phase::Join`, a shell does them first and then becomes unshare
/// (`bash -c 'JOIN; exec unshare ... bash'`): the namespaces are made by a process
/// that is already where they need it.
pub struct Unshare {
    pub namespaces: Vec<(u8, Namespace)>,
    /// The `Join` lines.
    pub joins: Vec<Joined>,
}

/// A `Join` line, as the unshare line takes it in.
pub struct Joined {
    pub shell: String,
    pub script: String,
    pub why: String,
}

impl Unshare {
    fn options(&self) -> String {
        let opts: Vec<&str> = self
            .namespaces
            .iter()
            .map(|(_, ns)| ns.unshare_options())
            .collect();
        opts.join(" ")
    }

    pub fn shell(&self) -> String {
        let joins: Vec<&str> = self.joins.iter().map(|j| j.shell.as_str()).collect();
        first(&joins, &format!("unshare {} bash", self.options()), "")
    }

    pub fn script(&self) -> String {
        let joins: Vec<&str> = self.joins.iter().map(|j| j.script.as_str()).collect();
        let unshare = format!(
            "unshare {} bash -c 'inside \"$@\"' inside \"$@\"",
            self.options()
        );
        first(&joins, &unshare, " join \"$@\"")
    }

    pub fn why(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut layers: Vec<u8> = self.namespaces.iter().map(|(l, _)| *l).collect();
        layers.dedup();
        for layer in layers {
            let words: Vec<&str> = self
                .namespaces
                .iter()
                .filter(|(l, _)| *l == layer)
                .map(|(_, ns)| ns.word())
                .collect();
            parts.push(format!("{} (layer {layer})", words.join(" and ")));
        }
        let start = if self.namespaces.len() == 1 {
            format!(
                "start a shell in a new {} namespace; type the rest in that shell",
                parts[0]
            )
        } else {
            format!(
                "start a shell in new {} namespaces; type the rest in that shell",
                parts.join(", ")
            )
        };
        let first: Vec<&str> = self.joins.iter().map(|j| j.why.as_str()).collect();
        match first.as_slice() {
            [] => start,
            whys => format!(
                "{}; then it becomes unshare (exec: the same process): {start}",
                whys.join("; ")
            ),
        }
    }

    /// "Layer 2 · new namespaces", or "Layers 2, 3, 4 · new namespaces".
    pub fn title(&self) -> String {
        let mut layers: Vec<String> = self.namespaces.iter().map(|(l, _)| l.to_string()).collect();
        layers.dedup();
        let s = if layers.len() == 1 { "" } else { "s" };
        format!("Layer{s} {} · new namespaces", layers.join(", "))
    }
}

/// `unshare`, or, with `Join` lines, a shell that does them, then becomes
/// unshare (exec: the same process), so the namespaces are made where it
/// joined. `args` pass the script's arguments on.
fn first(joins: &[&str], unshare: &str, args: &str) -> String {
    if joins.is_empty() {
        return unshare.to_string();
    }
    format!(
        "bash -c {}{args}",
        quote(&format!("set -e; {}; exec {unshare}", joins.join("; ")))
    )
}

/// `mkdir -p DIR && echo $$ > DIR/shell`: the PID of the shell that will run
/// unshare, for [`FindPid`].
pub struct NoteShell(pub PathBuf);

impl Action for NoteShell {
    fn shell(&self) -> String {
        let dir = self.0.parent().unwrap_or(&self.0);
        format!(
            "mkdir -p {} && echo $$ > {}",
            quote_path(dir),
            quote_path(&self.0)
        )
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab's own PID: lab is what starts this container, as the shell does
        // by hand (its newest child is the container's first process).
        let dir = self.0.parent().unwrap_or(&self.0);
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        std::fs::write(&self.0, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", self.0.display()))
    }
}

/// `rm -f DIR/shell`
pub struct ForgetShell {
    pub note: PathBuf,
    /// Typed by hand, the directory goes too: lab takes no name whose hand
    /// directory holds anything (see state::Claim::take).
    pub dir_too: bool,
}

impl ForgetShell {
    fn dir(&self) -> &Path {
        self.note.parent().unwrap_or(&self.note)
    }
}

impl Action for ForgetShell {
    fn shell(&self) -> String {
        match self.dir_too {
            true => format!(
                "rm -f {} && rmdir {}",
                quote_path(&self.note),
                quote_path(self.dir())
            ),
            false => format!("rm -f {}", quote_path(&self.note)),
        }
    }
    fn script(&self) -> String {
        match self.dir_too {
            true => self.shell(),
            // And the container's directory, once nothing else is in it.
            false => format!(
                "rm -f {}; rmdir {} 2>/dev/null || true",
                quote_path(&self.note),
                quote_path(self.dir())
            ),
        }
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match std::fs::remove_file(&self.note) {
            Err(e) if !gone(&e) => {
                return Err(e).with_context(|| format!("removing {}", self.note.display()))
            }
            _ => {}
        }
        if !self.dir_too {
            return Ok(());
        }
        match std::fs::remove_dir(self.dir()) {
            Err(e) if !gone(&e) => {
                Err(e).with_context(|| format!("removing {}", self.dir().display()))
            }
            _ => Ok(()),
        }
    }
}

/// `PID=$(pgrep -nx -P "$(cat DIR/shell)" unshare)`: the host's name for the new
/// process, the unshare that the noted shell started.
/// (The same note gives `lab check` the container: see `render::grade`.)
pub struct FindPid(pub PathBuf);

impl Action for FindPid {
    fn shell(&self) -> String {
        format!(
            "PID=$(pgrep -nx -P \"$(cat {})\" unshare)",
            quote_path(&self.0)
        )
    }
    fn script(&self) -> String {
        // unshare, started just below this background part, is a child of this
        // script; wait until it has made its namespaces.
        "for i in $(seq 1000); do PID=$(pgrep -P $$ -x unshare) && [ \"$(readlink /proc/$PID/ns/mnt)\" != \"$(readlink /proc/self/ns/mnt)\" ] && break; sleep 0.01; done".into()
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        // lab made the process itself: it knows the PID (and noted it in its state).
        Ok(())
    }
    fn finds_pid(&self) -> bool {
        true
    }
}

/// `mkdir -p DIR...`
pub struct MakeDirs(pub Vec<PathBuf>);

impl Action for MakeDirs {
    fn shell(&self) -> String {
        let dirs: Vec<String> = self.0.iter().map(|d| quote_path(d)).collect();
        format!("mkdir -p {}", dirs.join(" "))
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        for d in &self.0 {
            anyhow::Context::with_context(std::fs::create_dir_all(d), || {
                format!("mkdir {}", d.display())
            })?;
        }
        Ok(())
    }
}

/// `exec CMD`: the last line inside. lab's own init starts the command instead,
/// after the checks (see container.rs), so applying this line does nothing more.
/// With a user (step 7), setpriv switches to it first.
pub struct Exec {
    pub command: Vec<String>,
    pub user: Option<RunAs>,
}

impl Exec {
    fn line(&self, command: &str) -> String {
        match &self.user {
            Some(u) => format!("exec setpriv {} -- {command}", u.setpriv_words()),
            None => format!("exec {command}"),
        }
    }
}

impl Action for Exec {
    fn shell(&self) -> String {
        self.line(&join_quoted(&self.command))
    }
    fn script(&self) -> String {
        self.line("\"$@\"")
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        Ok(())
    }
}

/// Quote a word for a POSIX shell only when it needs it.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

pub fn quote_path(path: &std::path::Path) -> String {
    quote(&path.to_string_lossy())
}

pub fn join_quoted(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(quote("/var/lib/lab/rootfs"), "/var/lib/lab/rootfs");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    /// Printed by hand, a layer that lacks something here shows what it could
    /// not do and why, in its section, as `lab explain` always has.
    #[test]
    fn a_layer_that_cannot_make_its_commands_says_why() {
        let e = anyhow::anyhow!("no cgroup2 filesystem")
            .context("/sys/fs/cgroup")
            .context("find the cgroup controllers");
        let c = not_possible_here(6, &e);
        assert_eq!((c.layer, c.phase), (6, Phase::Host));
        assert_eq!(c.why, "find the cgroup controllers");
        assert_eq!(
            c.action.shell(),
            "# not possible here: /sys/fs/cgroup: no cgroup2 filesystem"
        );
        let c = not_possible_here(9, &anyhow::anyhow!("no range"));
        assert_eq!(c.why, "the commands of layer 9");
        assert_eq!(c.action.shell(), "# not possible here: no range");
    }
}
