//! `lab image import|ls|rm`: the images of step 7, in the store (image/).

use super::need_root;
use crate::{cli::ImageCmd, engine::render, image};
use anyhow::Result;
use std::process::ExitCode;

pub fn run(command: ImageCmd) -> Result<ExitCode> {
    let store = image::Store::open();
    match command {
        ImageCmd::Import {
            file,
            name,
            reference,
        } => {
            need_root("image import")?;
            let done = store.import(&file, name.as_deref(), reference.as_deref())?;
            render::out(&render::imported(&done));
        }
        ImageCmd::Ls => {
            for (name, layers, source) in store.list() {
                outln!(
                    "{name:<32} {layers:>2} layer{}  {source}",
                    if layers == 1 { " " } else { "s" }
                );
            }
        }
        ImageCmd::Rm { name } => {
            need_root("image rm")?;
            let layers = store.remove(&name)?;
            outln!("Removed image {name} and {layers} layers no other image uses.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
