//! Layer 7, its second part: what an image's config asks of the container
//! (after mod.rs), as `docker run` takes it: the command's environment (Env), the
//! directory it starts in (WorkingDir), and the command itself (Entrypoint, then
//! Cmd, already put together in the spec by options.rs), and the user it runs
//! as (User, or `--user`), looked up here in the image's own /etc/passwd and
//! /etc/group.

use crate::engine::plan::{quote_path, Action, Command, RunAs, RunContext, Spec};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What the image's config asks, as `docker run` does it: the command's
/// environment and the directory it starts in (its Entrypoint and Cmd are already
/// in the command: main.rs).
pub(super) fn commands(spec: &Spec) -> Vec<Command> {
    let config = &spec.image_config;
    let mut commands = Vec::new();
    if !config.entrypoint.is_empty() || !config.cmd.is_empty() {
        commands.push(super::LAYER.inside(format!(
                "the command comes from the image's config, as with docker run: its Entrypoint {:?}, then the command you gave or else its Cmd {:?}",
                config.entrypoint, config.cmd
            ),
            Remark(format!("the command: {}", spec.command_line())),
        ));
    }
    for var in &config.env {
        if let Some((key, value)) = var.split_once('=') {
            commands.push(super::LAYER.inside(
                "from the image's config (Env): the command's environment",
                Export(key.to_string(), value.to_string()),
            ));
        }
    }
    if let Some(dir) = &config.workdir {
        commands.push(super::LAYER.inside(
            "from the image's config (WorkingDir): where the command starts",
            StartIn(dir.into()),
        ));
    }
    if let Some(user) = &spec.user {
        let groups: Vec<String> = user.groups.iter().map(u32::to_string).collect();
        let from = match &config.user {
            Some(u) if *u == user.named => "the image's config (User)",
            _ => "--user",
        };
        commands.push(super::LAYER.inside(format!("from {from}, as docker run does: the last line's setpriv switches to this user just before the command (lab's init stays root); names are looked up in the image's /etc/passwd and /etc/group. An ordinary user has no capabilities: the kernel clears them when root changes its uid"),
            Remark(format!(
                "the command runs as {}: uid {}, gid {}, groups {}, HOME {}",
                user.named,
                user.uid,
                user.gid,
                if groups.is_empty() { "none".to_string() } else { groups.join(",") },
                user.home
            )),
        ));
    }
    commands
}

/// `USER[:GROUP]` as docker run takes it, each a name or a number: a name must be
/// in the image's /etc/passwd (or /etc/group); a number need not be (then its
/// group is 0 and HOME is /). The supplementary groups are the /etc/group
/// entries that list the user's name. `layers`: the image, bottom first.
pub fn run_as(user: &str, layers: &[PathBuf]) -> Result<RunAs> {
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if !valid(name) || group.is_some_and(|g| !valid(g)) {
        bail!("user {user:?}: give USER or USER:GROUP, each a name or a number (as docker run --user)");
    }
    let passwd = image_file(layers, "passwd")?;
    // name:password:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .find(|f| f[0] == name || (name.parse::<u32>().is_ok() && f[2] == name));
    let (uid, mut gid, home, login) = match (&entry, name.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>().with_context(|| format!("the image's /etc/passwd has a bad uid for {}", f[0]))?,
            f[3].parse::<u32>().with_context(|| format!("the image's /etc/passwd has a bad gid for {}", f[0]))?,
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), None),
        (None, Err(_)) => bail!(
            "unable to find user {name}: no such name in the image's /etc/passwd (a number works without one: --user 1000)"
        ),
    };
    let group_file = image_file(layers, "group")?;
    // name:password:gid:member,member
    let groups: Vec<Vec<&str>> = group_file
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = group {
        gid = match (groups.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (Some(f), _) => f[2]
                .parse()
                .with_context(|| format!("the image's /etc/group has a bad gid for {g}"))?,
            (None, Ok(n)) => n,
            (None, Err(_)) => {
                bail!("unable to find group {g}: no such name in the image's /etc/group")
            }
        };
    }
    let mut supplementary: Vec<u32> = match &login {
        Some(login) => groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == login))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        None => vec![],
    };
    supplementary.dedup();
    Ok(RunAs {
        named: user.to_string(),
        uid,
        gid,
        groups: supplementary,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// The text of the image's /etc/NAME: that of the topmost layer that has one
/// (empty if none does, or a layer above deleted it). Read from the host, so a
/// symbolic link is not followed: it could lead to the host's own file.
fn image_file(layers: &[PathBuf], name: &str) -> Result<String> {
    use std::os::unix::fs::FileTypeExt;
    for layer in layers.iter().rev() {
        let etc = layer.join("etc");
        match etc.symlink_metadata() {
            Err(_) => continue,
            Ok(m) if !m.is_dir() => return Ok(String::new()),
            Ok(_) => {}
        }
        let path = etc.join(name);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.file_type().is_char_device() {
            // A whiteout: deleted by this layer.
            return Ok(String::new());
        }
        if !meta.is_file() {
            bail!(
                "the image's /etc/{name} is not a plain file ({}): lab cannot look up a user by name in it; give numbers (--user 1000:1000)",
                path.display()
            );
        }
        return read_nofollow(&path);
    }
    Ok(String::new())
}

fn read_nofollow(path: &Path) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    std::fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(text)
}

/// `export KEY=VALUE`
struct Export(String, String);
/// `cd DIR`, where the command starts
struct StartIn(PathBuf);
/// `# TEXT`: a line to read, not to run
struct Remark(String);

// ── The system calls ───────────────────────────────────────────────────────────

impl Action for Export {
    fn shell(&self) -> String {
        format!("export {}={}", self.0, crate::engine::plan::quote(&self.1))
    }
    fn apply(&self, run: &RunContext) -> Result<()> {
        // For the command's exec (init.rs), which this run's context carries.
        run.set_env(&self.0, &self.1);
        Ok(())
    }
}

impl Action for StartIn {
    fn shell(&self) -> String {
        format!("cd {}", quote_path(&self.0))
    }
    fn apply(&self, run: &RunContext) -> Result<()> {
        // Docker makes a missing WorkingDir; so does lab, in the container's layer.
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("making the working directory {}", self.0.display()))?;
        run.set_workdir(self.0.clone());
        Ok(())
    }
}

impl Action for Remark {
    fn shell(&self) -> String {
        format!("# {}", self.0)
    }
    fn apply(&self, _run: &RunContext) -> Result<()> {
        Ok(())
    }
}
