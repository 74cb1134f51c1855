//! Layer 7, its second part: what an image's config asks of the container
//! (after mod.rs), as `docker run` takes it: the command's environment (Env), the
//! directory it starts in (WorkingDir), and the command itself (Entrypoint, then
//! Cmd, already put together in the spec by options.rs). User is named, not
//! applied.

use crate::plan::{quote_path, Action, Command, Spec};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// What the image's config asks, as `docker run` does it: the command's
/// environment and the directory it starts in (its Entrypoint and Cmd are already
/// in the command: main.rs).
pub(super) fn commands(spec: &Spec) -> Vec<Command> {
    let config = &spec.image_config;
    let mut commands = Vec::new();
    if !config.entrypoint.is_empty() || !config.cmd.is_empty() {
        commands.push(Command::inside(
            7,
            format!(
                "the command comes from the image's config, as with docker run: its Entrypoint {:?}, then the command you gave or else its Cmd {:?}",
                config.entrypoint, config.cmd
            ),
            Remark(format!("the command: {}", spec.command_line())),
        ));
    }
    for var in &config.env {
        if let Some((key, value)) = var.split_once('=') {
            commands.push(Command::inside(
                7,
                "from the image's config (Env): the command's environment",
                Export(key.to_string(), value.to_string()),
            ));
        }
    }
    if let Some(dir) = &config.workdir {
        commands.push(Command::inside(
            7,
            "from the image's config (WorkingDir): where the command starts",
            StartIn(dir.into()),
        ));
    }
    if let Some(user) = &config.user {
        commands.push(Command::inside(
            7,
            "not applied: lab runs the command as root of the container (from step 9 an ordinary user of the host); docker run would switch to this user",
            Remark(format!("the image's config names the user {user}")),
        ));
    }
    commands
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
        format!("export {}={}", self.0, crate::plan::quote(&self.1))
    }
    fn apply(&self) -> Result<()> {
        crate::init::set_env(&self.0, &self.1);
        Ok(())
    }
}

impl Action for StartIn {
    fn shell(&self) -> String {
        format!("cd {}", quote_path(&self.0))
    }
    fn apply(&self) -> Result<()> {
        // Docker makes a missing WorkingDir; so does lab, in the container's layer.
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("making the working directory {}", self.0.display()))?;
        crate::init::set_workdir(&self.0);
        Ok(())
    }
}

impl Action for Remark {
    fn shell(&self) -> String {
        format!("# {}", self.0)
    }
    fn apply(&self) -> Result<()> {
        Ok(())
    }
}
