//! `lab image import|ls|rm`: the images of step 7, in the store (image/).

use super::need_root;
use crate::{cli::ImageCmd, engine::render, image};
use anyhow::Result;
use std::fmt::Write;
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
            render::out(&imported(&done));
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

/// What `lab image import` did, with the whiteouts explained when there are any.
pub fn imported(done: &crate::image::Imported) -> String {
    let mut out = format!(
        "Imported {} ({}), {} layer(s), bottom first:\n",
        done.name,
        done.format,
        done.layers.len()
    );
    let (mut whiteouts, mut opaque, mut implicit, mut copied) = (0, 0, 0, 0);
    let mut devices = Vec::new();
    for (i, l) in done.layers.iter().enumerate() {
        let counted = |n: usize, what: &str| {
            if n > 0 {
                format!(", {n} {what}")
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            out,
            "  {}. {}  {} entries{}{}{}{}{}{}",
            i + 1,
            l.id,
            l.entries,
            counted(l.whiteouts, "whiteouts"),
            counted(l.opaque, "opaque directories"),
            counted(l.implicit, "directories from below"),
            counted(l.copied_up, "files copied up"),
            counted(l.devices_skipped.len(), "device nodes skipped"),
            if l.reused {
                " (already in the store: shared)"
            } else {
                ""
            }
        );
        whiteouts += l.whiteouts;
        opaque += l.opaque;
        implicit += l.implicit;
        copied += l.copied_up;
        devices.extend(l.devices_skipped.iter().cloned());
    }
    if done.layers.iter().any(|l| l.verified) {
        out.push_str("Verified: every blob against its SHA-256 in the manifest, every layer against the config's diff_ids.\n");
    }
    if whiteouts > 0 {
        out.push_str("Whiteouts: a layer's .wh.NAME file deletes NAME from the layers below it. overlayfs marks the same thing with a character device 0/0 named NAME, so lab made those.\n");
    }
    if opaque > 0 {
        out.push_str("Opaque directories: .wh..wh..opq in a directory hides everything the layers below have in it. overlayfs marks that with the xattr trusted.overlay.opaque=y on the directory.\n");
    }
    if implicit > 0 {
        out.push_str("Directories from below: a layer held dir/file without dir/ itself. The image spec applies each layer on top of the ones below, where dir keeps its owner and mode; lab made dir in this layer with them. Such a layer is stored once per stack below it (its name is a chain ID).\n");
    }
    if copied > 0 {
        out.push_str("Files copied up: a hard link to a file of a lower layer. A link cannot cross layers, so lab copied the file into this layer first, as overlayfs copies a file up before it is changed.\n");
    }
    if !devices.is_empty() {
        let _ = writeln!(
            out,
            "Device nodes skipped: {}. A node is a door to a device of the host (b 254:0 would be its disk); the container gets null, zero, full, random, urandom and tty, nothing else.",
            devices.join(", ")
        );
    }
    let c = &done.config;
    let mut took = Vec::new();
    if !c.entrypoint.is_empty() {
        took.push(format!("Entrypoint {:?}", c.entrypoint));
    }
    if !c.cmd.is_empty() {
        took.push(format!("Cmd {:?}", c.cmd));
    }
    if !c.env.is_empty() {
        took.push(format!("Env {}", c.env.join(" ")));
    }
    if let Some(dir) = &c.workdir {
        took.push(format!("WorkingDir {dir}"));
    }
    if let Some(user) = &c.user {
        took.push(format!(
            "User {user} (not applied: lab runs the command as root of the container)"
        ));
    }
    if !took.is_empty() {
        let _ = writeln!(
            out,
            "From its config, as docker run takes them: {}.",
            took.join("; ")
        );
    }
    let _ = writeln!(out, "Run it with: sudo lab step 7 --image {}", done.name);
    out
}
