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
//! hard links to anything outside the layer, device nodes, and paths that go
//! through a symbolic link (every directory is opened with O_NOFOLLOW). Symbolic//!
//! This file is the store and the formats; `unpack.rs` unpacks one tar safely.

mod unpack;

use unpack::{Contents, Unpacker};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The name under which `lab image ls` shows the default root filesystem.
pub const DEFAULT: &str = "default";

pub struct Store {
    images: PathBuf,
    layers: PathBuf,
}

/// What an import did, for the student to read.
pub struct Imported {
    pub name: String,
    pub format: &'static str,
    pub layers: Vec<LayerReport>,
}

pub struct LayerReport {
    pub id: String,
    pub entries: usize,
    pub whiteouts: usize,
    pub opaque: usize,
    pub reused: bool,
}

impl Store {
    pub fn open() -> Store {
        let home = crate::state::home();
        Store {
            images: home.join("images"),
            layers: home.join("layers"),
        }
    }

    /// The layer directories of image `name`, bottom first.
    pub fn layers(&self, name: &str) -> Result<Vec<PathBuf>> {
        if name == DEFAULT {
            return Ok(vec![crate::rootfs::ensure_default()?]);
        }
        let file = self.images.join(name);
        let text = std::fs::read_to_string(&file)
            .map_err(|_| anyhow!("no image named {name}: see `lab image ls`, or import one with sudo lab image import FILE"))?;
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
            .collect();
        names.sort();
        for name in names {
            let text = std::fs::read_to_string(self.images.join(&name)).unwrap_or_default();
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
            paths.extend(crate::layers::userns::shift::all_copies(layer.as_os_str()));
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
        let file = self.images.join(name);
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
                for copy in crate::layers::userns::shift::all_copies(&e.file_name()) {
                    crate::state::remove_tree(&copy)?;
                }
                crate::state::remove_tree(&e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Import FILE (or an OCI layout directory) as image `name`.
    pub fn import(&self, source: &Path, name: Option<&str>) -> Result<Imported> {
        // What is not an image is refused before anything is created.
        let names = if source.is_dir() {
            vec![]
        } else {
            tar_names(source)?
        };
        for d in [&self.images, &self.layers] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let scratch = self.layers.join(format!(".import-{}", std::process::id()));
        let result = self.import_into(source, name, &names, &scratch);
        let _ = crate::state::remove_tree(&scratch);
        result
    }

    /// `names`: the entries of the archive `source` (none for a directory).
    fn import_into(
        &self,
        source: &Path,
        name: Option<&str>,
        names: &[String],
        scratch: &Path,
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
                u.unpack(open_maybe_gzip(source)?)?;
                let format = if has("manifest.json") {
                    "docker save"
                } else {
                    "OCI image layout"
                };
                (scratch.to_path_buf(), format)
            } else {
                let name = valid_name(name.unwrap_or(&stem))?;
                let layer = self.add_layer(open_maybe_gzip(source)?)?;
                self.write_image(&name, &[&layer.id], "root filesystem tarball", source)?;
                return Ok(Imported {
                    name,
                    format: "root filesystem tarball",
                    layers: vec![layer],
                });
            }
        };
        let (found_name, layer_files) = if dir.join("manifest.json").is_file() {
            docker_save_layers(&dir)?
        } else if dir.join("index.json").is_file() {
            oci_layers(&dir)?
        } else {
            bail!("{} is neither a docker save archive nor an OCI image layout (no manifest.json, no index.json)", source.display());
        };
        anyhow::ensure!(!layer_files.is_empty(), "the image has no layers");
        // Docker names hold slashes (library/alpine:3); a file name cannot.
        let found_name = found_name.map(|n| n.replace('/', "-"));
        let name = valid_name(name.or(found_name.as_deref()).unwrap_or(&stem))?;
        let mut layers = Vec::new();
        for file in &layer_files {
            let path = dir.join(file);
            // A layer path must stay inside the image, even through symlinks.
            let real = path
                .canonicalize()
                .with_context(|| format!("layer {file} is missing"))?;
            anyhow::ensure!(
                real.starts_with(dir.canonicalize()?),
                "layer {file} points outside the image"
            );
            layers.push(
                self.add_layer(open_maybe_gzip(&real)?)
                    .with_context(|| format!("layer {file}"))?,
            );
        }
        let ids: Vec<&str> = layers.iter().map(|l| l.id.as_str()).collect();
        self.write_image(&name, &ids, format, source)?;
        Ok(Imported {
            name,
            format,
            layers,
        })
    }

    fn write_image(&self, name: &str, ids: &[&str], format: &str, source: &Path) -> Result<()> {
        let text = format!(
            "# lab image {name}: its layers, bottom first\n# from {format} {}\n{}\n",
            source.display(),
            ids.join("\n")
        );
        let tmp = self.images.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.images.join(name))?;
        Ok(())
    }

    /// Unpack one layer tar into the store, named by the SHA-256 of the tar.
    fn add_layer(&self, tar: Box<dyn Read>) -> Result<LayerReport> {
        let tmp = self
            .layers
            .join(format!(".layer-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&tmp)?;
        let mut hashing = Hashing {
            inner: tar,
            hash: Sha256::new(),
        };
        let unpacked = Unpacker::new(&tmp, Contents::Layer).and_then(|mut u| {
            u.unpack(&mut hashing)?;
            // The rest of the stream (end-of-archive blocks) is part of the digest.
            std::io::copy(&mut hashing, &mut std::io::sink())?;
            Ok(u)
        });
        let u = match unpacked {
            Ok(u) => u,
            Err(e) => {
                let _ = crate::state::remove_tree(&tmp);
                return Err(e);
            }
        };
        let id = format!("sha256-{:x}", hashing.hash.finalize());
        let dest = self.layers.join(&id);
        let reused = dest.exists();
        if reused {
            crate::state::remove_tree(&tmp)?;
        } else {
            std::fs::rename(&tmp, &dest)?;
        }
        Ok(LayerReport {
            id,
            entries: u.entries,
            whiteouts: u.whiteouts,
            opaque: u.opaque,
            reused,
        })
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn valid_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != DEFAULT
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    anyhow::ensure!(ok, "{name:?} cannot name an image: use letters, digits, '.', '_', ':' and '-' (and not {DEFAULT:?}); choose one with --name");
    Ok(name.to_string())
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

/// A file, decompressed when it starts with gzip's magic bytes.
fn open_maybe_gzip(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    if reader.fill_buf()?.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!(
            "{} is compressed with zstd, which lab does not read: decompress it first (zstd -d)",
            path.display()
        );
    }
    Ok(if gzip {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

fn tar_names(path: &Path) -> Result<Vec<String>> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let not_an_image = || {
        format!(
            "{} is not an image: lab imports a root filesystem tarball (.tar, .tar.gz), a docker save archive or an OCI image layout",
            path.display()
        )
    };
    let mut archive = tar::Archive::new(open_maybe_gzip(path)?);
    let mut names = Vec::new();
    // The tar reader's own words would quote the garbage it found: not shown.
    for e in archive.entries().map_err(|_| anyhow!(not_an_image()))? {
        let e = e.map_err(|_| anyhow!(not_an_image()))?;
        names.push(e.path()?.to_string_lossy().into_owned());
    }
    if names.is_empty() {
        bail!("{}: the archive is empty", not_an_image());
    }
    Ok(names)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// `docker save`: manifest.json is `[{"Config": ..., "RepoTags": [...], "Layers": [...]}]`.
fn docker_save_layers(dir: &Path) -> Result<(Option<String>, Vec<String>)> {
    let manifest = read_json(&dir.join("manifest.json"))?;
    let first = manifest.get(0).context("manifest.json lists no image")?;
    let name = first["RepoTags"]
        .get(0)
        .and_then(Value::as_str)
        .map(String::from);
    let layers = first["Layers"]
        .as_array()
        .context("manifest.json has no Layers")?
        .iter()
        .map(|l| {
            l.as_str()
                .map(String::from)
                .context("a layer in manifest.json is not a path")
        })
        .collect::<Result<_>>()?;
    Ok((name, layers))
}

/// An OCI image layout: index.json → (maybe a nested index) → a manifest → its layers.
fn oci_layers(dir: &Path) -> Result<(Option<String>, Vec<String>)> {
    let index = read_json(&dir.join("index.json"))?;
    let entry = pick_manifest(&index).context("index.json lists no manifest")?;
    let name = entry["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .map(String::from);
    let mut manifest = read_json(&dir.join(blob_path(entry)?))?;
    // A multi-platform image points to another index first.
    for _ in 0..4 {
        if manifest.get("layers").is_some() {
            break;
        }
        let inner = pick_manifest(&manifest).context("an image index lists no manifest")?;
        manifest = read_json(&dir.join(blob_path(inner)?))?;
    }
    let layers = manifest["layers"]
        .as_array()
        .context("the manifest has no layers")?;
    let mut files = Vec::new();
    for l in layers {
        let media = l["mediaType"].as_str().unwrap_or("");
        anyhow::ensure!(
            !media.contains("zstd"),
            "layer {media} is compressed with zstd, which lab does not read"
        );
        files.push(blob_path(l)?);
    }
    Ok((name, files))
}

/// The manifest for this machine's architecture, or the first one.
fn pick_manifest(index: &Value) -> Option<&Value> {
    let manifests = index["manifests"].as_array()?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    manifests
        .iter()
        .find(|m| m["platform"]["architecture"].as_str() == Some(arch))
        .or_else(|| manifests.first())
}

fn blob_path(descriptor: &Value) -> Result<String> {
    let digest = descriptor["digest"]
        .as_str()
        .context("a descriptor has no digest")?;
    let (algo, hex) = digest
        .split_once(':')
        .context("a digest has no algorithm")?;
    anyhow::ensure!(
        algo.chars().all(|c| c.is_ascii_alphanumeric())
            && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "bad digest {digest}"
    );
    Ok(format!("blobs/{algo}/{hex}"))
}
