//! Images for step 7: import them from files, keep their layers once, stack them.
//!
//! An image is a list of layers, bottom first. A layer is a directory tree that
//! lab unpacks once into its store, named by the SHA-256 of the layer's tar (what
//! Docker calls its diff ID), so two images that share a layer share one copy.
//!
//! `lab image import FILE` reads three kinds of file, all of them without a network:
//! - a root filesystem tarball (`.tar` or `.tar.gz`, e.g. Alpine's minirootfs): one layer;
//! - the output of `docker save`: `manifest.json` names the layer tars in order;
//! - an OCI image layout, as a directory or a tarball: `index.json` leads to a
//!   manifest, which names the layer blobs in order.
//!
//! Layers carry deletions as *whiteouts*: `.wh.NAME` deletes NAME from the layers
//! below, `.wh..wh..opq` makes its directory opaque (nothing below shows through).
//! overlayfs spells these differently (a character device 0/0 named NAME, and the
//! xattr `trusted.overlay.opaque=y`), so lab converts them while unpacking.
//!
//! A tar file says where to write each entry, so unpacking one is a classic way to
//! be tricked into writing outside the target. lab refuses absolute paths, `..`,
//! hard links to anything outside the image, and paths that go through a symbolic
//! link (every directory is opened with O_NOFOLLOW); it skips device nodes other
//! than null, zero, full, random, urandom and tty, and says how many.
//!
//! Every blob is checked against the SHA-256 its manifest gives, and every
//! unpacked layer against the config's `diff_ids`: a corrupted archive is refused
//! whole, and what the import made is removed.
//!
//! A file or directory the image holds several images (tags, or one `docker save`
//! of several): the student names one, `lab image import FILE --ref team/app:1`
//! (or `FILE:team/app:1`, as skopeo writes it). Names are kept as written, slashes
//! and all; on disk a `/` becomes `%`.
//!
//! This file is the store; `formats.rs` reads what image files hold (names,
//! manifests, digests, compression, the progress line); `unpack.rs` unpacks one
//! tar safely.

mod formats;
mod unpack;

use formats::*;

use unpack::{Contents, Unpacker};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The name under which `lab image ls` shows the default root filesystem.
pub const DEFAULT: &str = "default";

pub struct Store {
    images: PathBuf,
    layers: PathBuf,
}

/// What the image's config asks of the container, as `docker run` takes it:
/// its environment, the directory to start in, the command (Entrypoint, then
/// Cmd, which the student's command replaces), and the user (which lab does not
/// apply: the command runs as root of the container).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: Option<String>,
}

impl Config {
    /// The `config` object of an image's config JSON.
    fn of(config: &Value) -> Config {
        let words = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
        Config {
            env: words(&config["Env"]),
            workdir: text(&config["WorkingDir"]),
            entrypoint: words(&config["Entrypoint"]),
            cmd: words(&config["Cmd"]),
            user: text(&config["User"]),
        }
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "Env": self.env,
            "WorkingDir": self.workdir,
            "Entrypoint": self.entrypoint,
            "Cmd": self.cmd,
            "User": self.user,
        })
    }

    /// The command to run: Entrypoint, then the student's words or else Cmd.
    pub fn command(&self, given: &[String]) -> Vec<String> {
        let rest = if given.is_empty() { &self.cmd } else { given };
        self.entrypoint.iter().chain(rest).cloned().collect()
    }
}

/// What an import did, for the student to read.
pub struct Imported {
    pub name: String,
    pub format: &'static str,
    pub layers: Vec<LayerReport>,
    pub config: Config,
}

pub struct LayerReport {
    /// Where it is in the store: its diff ID, or a chain ID when its content
    /// depends on the layers below (see unpack.rs).
    pub id: String,
    /// SHA-256 of the uncompressed tar.
    pub diff_id: String,
    pub entries: usize,
    pub whiteouts: usize,
    pub opaque: usize,
    pub implicit: usize,
    pub copied_up: usize,
    pub devices_skipped: Vec<String>,
    pub reused: bool,
    /// Checked against the config's diff_ids (false: the config has none).
    pub verified: bool,
}

impl Store {
    pub fn open() -> Store {
        let home = crate::dirs::home();
        Store {
            images: home.join("images"),
            layers: home.join("layers"),
        }
    }

    /// The text of image `name` in the store.
    fn read(&self, name: &str) -> Result<String> {
        // Docker's short names: team/app:1 is docker.io/team/app:1, alpine:3
        // is docker.io/library/alpine:3.
        [
            name.to_string(),
            format!("docker.io/{name}"),
            format!("docker.io/library/{name}"),
        ]
        .iter()
        .find_map(|n| std::fs::read_to_string(self.images.join(file_of(n))).ok())
        .ok_or_else(|| anyhow!("no image named {name}: see `lab image ls`, or import one with sudo lab image import FILE"))
    }

    /// What image `name`'s config asks of a container (nothing for the default).
    pub fn config(&self, name: &str) -> Result<Config> {
        if name == DEFAULT {
            return Ok(Config::default());
        }
        let text = self.read(name)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("# config "))
            .and_then(|json| serde_json::from_str::<Value>(json).ok())
            .map(|v| Config::of(&v))
            .unwrap_or_default())
    }

    /// The layer directories of image `name`, bottom first.
    pub fn layers(&self, name: &str) -> Result<Vec<PathBuf>> {
        if name == DEFAULT {
            return Ok(vec![crate::rootfs::ensure_default()?]);
        }
        let text = self.read(name)?;
        let layers: Vec<PathBuf> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|id| self.layers.join(id.trim()))
            .collect();
        for l in &layers {
            anyhow::ensure!(
                l.is_dir(),
                "image {name} lost its layer {}: import it again",
                l.display()
            );
        }
        Ok(layers)
    }

    /// Every image: its name, its number of layers, and where it came from.
    pub fn list(&self) -> Vec<(String, usize, String)> {
        let mut out = vec![(
            DEFAULT.to_string(),
            1,
            "the root filesystem `lab rootfs` builds".to_string(),
        )];
        let Ok(dir) = std::fs::read_dir(&self.images) else {
            return out;
        };
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for file in names {
            let text = std::fs::read_to_string(self.images.join(&file)).unwrap_or_default();
            let name = name_of(&file);
            let source = text
                .lines()
                .find_map(|l| l.strip_prefix("# from "))
                .unwrap_or("")
                .to_string();
            let layers = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .count();
            out.push((name, layers, source));
        }
        out
    }

    /// Remove image `name`, and every layer no other image uses.
    pub fn remove(&self, name: &str) -> Result<usize> {
        anyhow::ensure!(
            name != DEFAULT,
            "the default image is the root filesystem: remove it with sudo lab clean"
        );
        // A running container's overlay names its layers as lowerdirs.
        let mounts = crate::mountinfo::parse_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        );
        for layer in self.layers(name)? {
            // Step 9 stacks shifted copies of the layer (layers/userns/shift.rs).
            let mut paths = vec![layer.clone()];
            paths.extend(crate::dirs::shifted_copies(layer.as_os_str()));
            for path in paths {
                let path = path.to_string_lossy().into_owned();
                let in_use = mounts.iter().any(|m| {
                    m.fs_type == "overlay" && m.options.split([',', ':', '=']).any(|p| p == path)
                });
                anyhow::ensure!(
                    !in_use,
                    "image {name} is in use by a running container: stop it first (or sudo lab clean)"
                );
            }
        }
        let file = self.images.join(file_of(name));
        std::fs::remove_file(&file)
            .map_err(|_| anyhow!("no image named {name}: see `lab image ls`"))?;
        let mut used = std::collections::HashSet::new();
        for e in std::fs::read_dir(&self.images)
            .into_iter()
            .flatten()
            .flatten()
        {
            for l in std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
            {
                used.insert(l.trim().to_string());
            }
        }
        let mut removed = 0;
        for e in std::fs::read_dir(&self.layers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            if !used.contains(&id) {
                for copy in crate::dirs::shifted_copies(&e.file_name()) {
                    crate::dirs::remove_tree(&copy)?;
                }
                crate::dirs::remove_tree(&e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Import FILE (or an OCI layout directory) as image `name`; `reference`
    /// chooses one image of several (`FILE:REF` is read the same way).
    pub fn import(
        &self,
        source: &Path,
        name: Option<&str>,
        reference: Option<&str>,
    ) -> Result<Imported> {
        let (source, reference) = split_reference(source, reference)?;
        let source = source.as_path();
        // What is not an image is refused before anything is created.
        let names = if source.is_dir() {
            vec![]
        } else {
            tar_names(source)?
        };
        if let Some(n) = name {
            valid_name(n)?;
        }
        for d in [&self.images, &self.layers] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let scratch = self.layers.join(format!(".import-{}", std::process::id()));
        let mut added = Vec::new();
        let result = self.import_into(
            source,
            name,
            reference.as_deref(),
            &names,
            &scratch,
            &mut added,
        );
        let _ = crate::dirs::remove_tree(&scratch);
        if result.is_err() {
            // Nothing of a refused import stays: the layers it added go.
            for id in added {
                let _ = crate::dirs::remove_tree(&self.layers.join(id));
            }
        }
        result
    }

    /// `names`: the entries of the archive `source` (none for a directory);
    /// `added`: the layers this import put in the store, for removal on failure.
    fn import_into(
        &self,
        source: &Path,
        name: Option<&str>,
        reference: Option<&str>,
        names: &[String],
        scratch: &Path,
        added: &mut Vec<String>,
    ) -> Result<Imported> {
        let stem = source
            .file_name()
            .map(|f| {
                f.to_string_lossy()
                    .trim_end_matches(".gz")
                    .trim_end_matches(".tgz")
                    .trim_end_matches(".tar")
                    .to_string()
            })
            .unwrap_or_default();
        // An archive of an image is unpacked to a scratch directory first (only files
        // and directories allowed), then read like a directory.
        let (dir, format) = if source.is_dir() {
            (source.to_path_buf(), "OCI image layout")
        } else {
            let has = |n: &str| names.iter().any(|e| e.trim_start_matches("./") == n);
            if has("manifest.json") || (has("index.json") && has("oci-layout")) {
                std::fs::create_dir_all(scratch)?;
                let mut u = Unpacker::new(scratch, Contents::Plain)?;
                u.unpack(open_counted(source, "reading the archive")?)?;
                let format = if has("manifest.json") {
                    "docker save"
                } else {
                    "OCI image layout"
                };
                (scratch.to_path_buf(), format)
            } else {
                anyhow::ensure!(
                    reference.is_none(),
                    "{} is a root filesystem tarball: it holds one image, with no name to choose",
                    source.display()
                );
                let name = valid_name(name.unwrap_or(&stem))?;
                let layer = self.add_layer(open_counted(source, "unpacking")?, None, &[])?;
                if !layer.reused {
                    added.push(layer.id.clone());
                }
                let config = Config::default();
                self.write_image(
                    &name,
                    &[&layer.id],
                    "root filesystem tarball",
                    source,
                    &config,
                )?;
                return Ok(Imported {
                    name,
                    format: "root filesystem tarball",
                    layers: vec![layer],
                    config,
                });
            }
        };
        let found = if dir.join("manifest.json").is_file() {
            docker_save_image(&dir, reference, source)?
        } else if dir.join("index.json").is_file() {
            oci_image(&dir, reference, source)?
        } else {
            bail!("{} is neither a docker save archive nor an OCI image layout (no manifest.json, no index.json)", source.display());
        };
        anyhow::ensure!(!found.layers.is_empty(), "the image has no layers");
        let name = valid_name(name.or(found.name.as_deref()).unwrap_or(&stem))?;
        // Every blob against its digest before anything is unpacked.
        for blob in found.config.iter().chain(&found.layers) {
            verify_blob(&dir, blob)?;
        }
        let config_json = match &found.config {
            Some(c) => read_json(&inside(&dir, &c.file)?)?,
            None => Value::Null,
        };
        let config = Config::of(&config_json["config"]);
        let diff_ids: Vec<String> = match &found.config {
            Some(_) => config_json["rootfs"]["diff_ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(|d| d.trim_start_matches("sha256:").to_string())
                        .collect()
                })
                .unwrap_or_default(),
            None => vec![],
        };
        anyhow::ensure!(
            diff_ids.is_empty() || diff_ids.len() == found.layers.len(),
            "the image's config lists {} layers (diff_ids), its manifest {}: the image is damaged",
            diff_ids.len(),
            found.layers.len()
        );
        let mut layers: Vec<LayerReport> = Vec::new();
        for (i, blob) in found.layers.iter().enumerate() {
            let real = inside(&dir, &blob.file)?;
            let lowers: Vec<PathBuf> = layers.iter().map(|l| self.layers.join(&l.id)).collect();
            let mut layer = self
                .add_layer(
                    open_layer(
                        &real,
                        &blob.media_type,
                        &format!("layer {} of {}", i + 1, found.layers.len()),
                    )?,
                    layers.last().map(|l| l.id.as_str()),
                    &lowers,
                )
                .with_context(|| format!("layer {}", blob.file))?;
            if !layer.reused {
                added.push(layer.id.clone());
            }
            if let Some(want) = diff_ids.get(i) {
                anyhow::ensure!(
                    *want == layer.diff_id,
                    "layer {} is damaged: its content has SHA-256 {}, the image's config says {want}",
                    i + 1,
                    layer.diff_id
                );
                layer.verified = true;
            }
            layers.push(layer);
        }
        let ids: Vec<&str> = layers.iter().map(|l| l.id.as_str()).collect();
        self.write_image(&name, &ids, format, source, &config)?;
        Ok(Imported {
            name,
            format,
            layers,
            config,
        })
    }

    fn write_image(
        &self,
        name: &str,
        ids: &[&str],
        format: &str,
        source: &Path,
        config: &Config,
    ) -> Result<()> {
        let name = &file_of(name);
        let text = format!(
            "# lab image {name}: its layers, bottom first\n# from {format} {}\n# config {}\n{}\n",
            source.display(),
            config.to_json(),
            ids.join("\n")
        );
        let tmp = self.images.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.images.join(name))?;
        Ok(())
    }

    /// Unpack one layer tar into the store, named by the SHA-256 of the tar (its
    /// diff ID), or by a chain ID when it takes something from the layers below
    /// (`below`: the store's name of the layer under it; `lowers`: all of them).
    fn add_layer(
        &self,
        tar: Box<dyn Read>,
        below: Option<&str>,
        lowers: &[PathBuf],
    ) -> Result<LayerReport> {
        let tmp = self
            .layers
            .join(format!(".layer-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&tmp)?;
        let mut hashing = Hashing {
            inner: tar,
            hash: Sha256::new(),
        };
        let unpacked = Unpacker::new(&tmp, Contents::Layer).and_then(|u| {
            let mut u = u.on_top_of(lowers)?;
            u.unpack(&mut hashing)?;
            // The rest of the stream (end-of-archive blocks) is part of the digest.
            std::io::copy(&mut hashing, &mut std::io::sink())?;
            Ok(u)
        });
        let u = match unpacked {
            Ok(u) => u,
            Err(e) => {
                let _ = crate::dirs::remove_tree(&tmp);
                return Err(e);
            }
        };
        let diff_id = format!("{:x}", hashing.hash.finalize());
        // Like containerd's snapshots: a layer whose content depends on those
        // below is kept once per stack below it.
        let id = match below {
            Some(below) if u.depends_on_lowers() => {
                format!("chain-{:x}", Sha256::digest(format!("{below} {diff_id}")))
            }
            _ => format!("sha256-{diff_id}"),
        };
        let dest = self.layers.join(&id);
        let reused = dest.exists();
        if reused {
            crate::dirs::remove_tree(&tmp)?;
        } else {
            std::fs::rename(&tmp, &dest)?;
        }
        Ok(LayerReport {
            id,
            diff_id,
            entries: u.entries,
            whiteouts: u.whiteouts,
            opaque: u.opaque,
            implicit: if lowers.is_empty() {
                0
            } else {
                u.implicit.get()
            },
            copied_up: u.copied_up,
            devices_skipped: u.devices_skipped,
            reused,
            verified: false,
        })
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

struct Hashing {
    inner: Box<dyn Read>,
    hash: Sha256,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
