//! What the student asked for: the step, the root filesystem, the command, and
//! each layer's own options, before any layer has turned them into commands
//! (plan.rs).

use super::namespace::Namespace;
use super::plan::join_quoted;
use std::path::PathBuf;

/// What the student asked for.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Layers 1..=step are switched on.
    pub step: u8,
    /// The directory that becomes the container's `/`.
    pub rootfs: PathBuf,
    /// The container's name: its hostname (from step 4) and its state directory.
    pub name: String,
    /// What runs inside (default: an interactive shell).
    pub command: Vec<String>,
    /// The image's layers, bottom first (from step 7; until then `rootfs` alone).
    pub image: Vec<PathBuf>,
    /// What the image's config asks (environment, working directory, command);
    /// `command` already holds its Entrypoint and Cmd.
    pub image_config: crate::image::Config,
    /// Who the command runs as (step 7: the image's User, or `--user`); root of
    /// the container when none.
    pub user: Option<RunAs>,
    /// Keep the container's writable layer after exit (step 7).
    pub keep: bool,
    /// What the layers were asked for on the command line (step 5's subnet and
    /// published ports, step 6's limits), each layer's own.
    pub options: LayerOptions,
    /// Built by hand from the printed commands (`lab explain`, `lab script`), not
    /// by `lab step`: its files go where lab keeps none of its own.
    pub by_hand: bool,
}

/// A user of the container, as docker run takes `--user` or an image's User:
/// looked up in the root filesystem's /etc/passwd and /etc/group (layer 7,
/// config.rs). The command switches to it just before its exec; lab's init
/// stays root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// As it was written (`app`, `1000:1000`, `app:staff`).
    pub named: String,
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups: those of /etc/group that list the user.
    pub groups: Vec<u32>,
    /// Its home directory (HOME), from /etc/passwd, else `/`.
    pub home: String,
}

impl RunAs {
    /// The words of setpriv (util-linux) that switch to this user, for the
    /// last line: groups, gid and uid at once, as runc does it.
    pub fn setpriv_words(&self) -> String {
        let groups = match self.groups.as_slice() {
            [] => "--clear-groups".to_string(),
            g => format!(
                "--groups={}",
                g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
        };
        format!("--reuid={} --regid={} {groups}", self.uid, self.gid)
    }
}

/// Each layer's own options (its `clap::Args` struct: `--publish`, `--memory`,
/// ...; and what it reserved for this container), kept in the Spec for it. The
/// engine carries them without knowing what they are: a layer reads its own
/// with [`LayerOptions::get`] (its defaults when none were given).
#[derive(Clone, Default)]
pub struct LayerOptions(Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl LayerOptions {
    /// These options with `value` in place of any of its type.
    pub fn with<T: std::any::Any + Send + Sync>(mut self, value: T) -> Self {
        self.set(value);
        self
    }

    pub fn set<T: std::any::Any + Send + Sync>(&mut self, value: T) {
        self.0.retain(|o| !o.is::<T>());
        self.0.push(std::sync::Arc::new(value));
    }

    /// The options of type `T`, or its defaults.
    pub fn get<T: std::any::Any + Clone + Default>(&self) -> T {
        self.0
            .iter()
            .find_map(|o| o.downcast_ref::<T>())
            .cloned()
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for LayerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "LayerOptions({} set)", self.0.len())
    }
}

impl Spec {
    pub const DEFAULT_COMMAND: &'static str = "/bin/sh";

    /// The container's own directory on the host (its writable layer, from step 7):
    /// LAB_HOME/containers/NAME for lab's, LAB_HOME/hand/NAME for one typed by
    /// hand, so that lab never takes or removes what it did not make.
    pub fn container_dir(&self) -> PathBuf {
        let kind = if self.by_hand { "hand" } else { "containers" };
        crate::dirs::home().join(kind).join(&self.name)
    }

    /// Where the container's small files live on the host while it runs (its
    /// /etc files from step 5, its seccomp filter from step 8): lab's state
    /// directory LAB_RUN/containers/NAME, or LAB_RUN/hand/NAME by hand.
    pub fn files_dir(&self) -> PathBuf {
        match self.by_hand {
            true => crate::dirs::run_dir().join("hand").join(&self.name),
            false => crate::engine::state::container_dir(&self.name),
        }
    }

    /// The directory that becomes the container's `/`: the root filesystem, or from
    /// step 7 the merged view of the overlay mount.
    pub fn new_root(&self) -> PathBuf {
        crate::engine::curriculum::active(self.step)
            .iter()
            .rev()
            .find_map(|l| l.hooks.new_root(self))
            .unwrap_or_else(|| self.rootfs.clone())
    }

    /// Does the container get a user namespace at this step (a layer up to it
    /// asks for one)? Then its root is an ordinary user of the host, and layers
    /// before that one do some of their work another way.
    pub fn in_user_namespace(&self) -> bool {
        // Every layer up to the step, as for the clone flags: without root, a
        // layer left out keeps its namespaces.
        crate::engine::curriculum::up_to(self.step)
            .iter()
            .any(|l| l.namespaces.contains(&Namespace::User))
    }

    /// The command as one shell line, quoted so it can be pasted.
    pub fn command_line(&self) -> String {
        join_quoted(&self.command)
    }
}
