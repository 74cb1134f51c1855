//! The overlay layer's options on lab's command line (`--image`,
//! `--entrypoint`, `--user`, `--keep`), flattened into every subcommand that
//! builds a step (cli.rs): their check against the step, and the parts of the
//! Spec they make (the image's layers and config, the user, `keep`), as docker
//! run makes them. What the layer does with those is in mod.rs and config.rs.

use super::{run_as, LAYER};
use crate::{engine::plan::RunAs, image};
use anyhow::{bail, ensure, Result};
use std::path::PathBuf;

/// What the student chose for the image and who runs the command in it.
#[derive(clap::Args, Debug, Default)]
#[group(id = "overlay")]
pub struct Options {
    /// Step 7: the image to run (see `lab image ls`) [default: the root filesystem]
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Step 7: run this program instead of the image's Entrypoint ("" for none:
    /// the command alone), as docker run --entrypoint
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Step 7: run the command as this user, a name or number of the image's
    /// /etc/passwd, with GROUP (as docker run --user) [default: the image's User, else root]
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Step 7: keep the container's writable layer after exit, to look at it
    #[arg(long)]
    pub keep: bool,
}

impl Options {
    /// Before this layer's step there is no image: say so rather than ignore
    /// the options.
    pub fn check(&self, step: u8) -> Result<()> {
        let overlay = LAYER.number;
        let given =
            self.image.is_some() || self.keep || self.entrypoint.is_some() || self.user.is_some();
        if step < overlay && given {
            bail!("--image, --entrypoint, --user and --keep belong to step {overlay} (the overlay filesystem, images) and later");
        }
        Ok(())
    }

    /// The image's layers (None: the root filesystem, which the caller finds)
    /// and its config, with --entrypoint in place of its Entrypoint. Looked up
    /// first: a wrong name must not cost building the default rootfs.
    pub fn image(&self) -> Result<(Option<Vec<PathBuf>>, image::Config)> {
        let (layers, mut config) = match &self.image {
            Some(name) => {
                let store = image::Store::open();
                (Some(store.layers(name)?), store.config(name)?)
            }
            None => (None, image::Config::default()),
        };
        if let Some(program) = &self.entrypoint {
            ensure!(
                self.image.is_some(),
                "--entrypoint replaces the Entrypoint of an image: give one with --image"
            );
            // As docker run --entrypoint: the image's Cmd goes with its Entrypoint.
            config.entrypoint = [program.clone()]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            config.cmd.clear();
        }
        Ok((layers, config))
    }

    /// Who the command runs as, as docker run decides it: --user, else the
    /// image's User, else root (None). `image`: its layers, bottom first, whose
    /// /etc/passwd names the user. `for_real`: a run without root can be no
    /// other user than root of the container.
    pub fn user(
        &self,
        config: &image::Config,
        image: &[PathBuf],
        for_real: bool,
    ) -> Result<Option<RunAs>> {
        let user = match self.user.as_ref().or(config.user.as_ref()) {
            Some(u) => Some(run_as(u, image)?),
            None => None,
        };
        if let Some(u) = user.as_ref() {
            if for_real
                && crate::dirs::rootless()
                && (u.uid != 0 || u.gid != 0 || !u.groups.is_empty())
            {
                bail!(
                    "the command would run as {} (uid {}, gid {}, {} supplementary groups): without root, lab's user namespace maps only your own user and group, as root of the container, and may not set groups. Run it with sudo",
                    u.named, u.uid, u.gid, u.groups.len()
                );
            }
        }
        Ok(user)
    }
}
