//! What image files hold, and how lab reads them (part of image/, after mod.rs):
//! names as images spell them, `FILE:REF`, the archives (tar, gzip, zstd),
//! `docker save`'s manifest.json, an OCI layout's index and manifests, and the
//! digests every blob is checked against.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::DEFAULT;

/// A name as images are named (`registry.example/team/app:1.2`, `alpine@sha256:...`).
pub(super) fn valid_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != DEFAULT
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-/@".contains(c));
    anyhow::ensure!(ok, "{name:?} cannot name an image: use letters, digits, '.', '_', ':', '-', '@' and '/' between parts (and not {DEFAULT:?}); choose one with --name");
    Ok(name.to_string())
}

/// The file in the store of image `name`: a file name cannot hold '/'.
pub(super) fn file_of(name: &str) -> String {
    name.replace('/', "%")
}

pub(super) fn name_of(file: &str) -> String {
    file.replace('%', "/")
}

/// `FILE:REF` as skopeo writes it, when FILE exists and FILE:REF does not.
pub(super) fn split_reference(
    source: &Path,
    reference: Option<&str>,
) -> Result<(PathBuf, Option<String>)> {
    if source.exists() {
        return Ok((source.to_path_buf(), reference.map(String::from)));
    }
    let text = source.to_string_lossy();
    // The first ':' after which the rest is a reference and before it a file.
    for (i, _) in text.match_indices(':') {
        let (file, rest) = (&text[..i], &text[i + 1..]);
        if Path::new(file).exists() && !rest.is_empty() {
            anyhow::ensure!(
                reference.is_none() || reference == Some(rest),
                "two references: {rest} (after the file name) and {} (--ref)",
                reference.unwrap_or_default()
            );
            return Ok((PathBuf::from(file), Some(rest.to_string())));
        }
    }
    bail!("{} does not exist", source.display())
}

/// A file, decompressed when it starts with the magic bytes of gzip or zstd.
///
/// zstd (OCI's `+zstd` layers) is read by ruzstd: pure Rust, no C library to
/// build on the classroom VM. Pinned to 0.7.3: 0.8 uses `is_multiple_of`, which
/// needs Rust 1.87, and Ubuntu 24.04 has 1.75 (the provisioning test caught it). Its own frame checksum is not checked (the crate's
/// `hash` feature is off): the layer's SHA-256 is, against the manifest and the
/// config's diff_ids.
pub(super) fn open_maybe_gzip(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    decompressed(BufReader::new(file), path)
}

fn decompressed<R: BufRead + 'static>(mut reader: R, path: &Path) -> Result<Box<dyn Read>> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::StreamingDecoder::new(reader)
            .map_err(|e| anyhow!("{} is not valid zstd: {e}", path.display()))?;
        return Ok(Box::new(decoder));
    }
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

pub(super) fn tar_names(path: &Path) -> Result<Vec<String>> {
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

pub(super) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// A blob of an image: a file of the archive, with the digest that names it
/// (none in a `docker save` manifest, whose layers the config's diff_ids check).
pub(super) struct Blob {
    pub(super) file: String,
    pub(super) sha256: Option<String>,
    pub(super) size: Option<u64>,
    pub(super) media_type: String,
}

/// The image chosen in an archive or a layout.
pub(super) struct Found {
    pub(super) name: Option<String>,
    pub(super) config: Option<Blob>,
    pub(super) layers: Vec<Blob>,
}

/// More than one image, and none named: the student chooses.
pub(super) fn choose(source: &Path, refs: &[String]) -> anyhow::Error {
    let file = source.display();
    anyhow!(
        "{file} holds {} images: {}. Choose one: sudo lab image import {file} --ref {}",
        refs.len(),
        refs.join(", "),
        refs[0]
    )
}

pub(super) fn no_such(source: &Path, reference: &str, refs: &[String]) -> anyhow::Error {
    anyhow!(
        "{} has no image {reference}; it holds: {}",
        source.display(),
        if refs.is_empty() {
            "one image without a name (leave out --ref)".to_string()
        } else {
            refs.join(", ")
        }
    )
}

/// `docker save`: manifest.json is `[{"Config": ..., "RepoTags": [...], "Layers": [...]}]`,
/// one element per image.
pub(super) fn docker_save_image(
    dir: &Path,
    reference: Option<&str>,
    source: &Path,
) -> Result<Found> {
    let manifest = read_json(&dir.join("manifest.json"))?;
    let images = manifest
        .as_array()
        .filter(|a| !a.is_empty())
        .context("manifest.json lists no image")?;
    let tags = |image: &Value| -> Vec<String> {
        image["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let refs: Vec<String> = images.iter().flat_map(tags).collect();
    let (image, name) = match reference {
        Some(r) => {
            let image = images
                .iter()
                .find(|i| tags(i).iter().any(|t| t == r))
                .ok_or_else(|| no_such(source, r, &refs))?;
            (image, Some(r.to_string()))
        }
        None if images.len() > 1 => return Err(choose(source, &refs)),
        None => (&images[0], tags(&images[0]).into_iter().next()),
    };
    let plain = |file: &str| Blob {
        file: file.to_string(),
        sha256: None,
        size: None,
        media_type: String::new(),
    };
    let layers = image["Layers"]
        .as_array()
        .context("manifest.json has no Layers")?
        .iter()
        .map(|l| {
            l.as_str()
                .map(plain)
                .context("a layer in manifest.json is not a path")
        })
        .collect::<Result<_>>()?;
    Ok(Found {
        name,
        config: image["Config"].as_str().map(plain),
        layers,
    })
}

/// An OCI image layout: index.json → (maybe a nested index) → a manifest → its layers.
pub(super) fn oci_image(dir: &Path, reference: Option<&str>, source: &Path) -> Result<Found> {
    let index = read_json(&dir.join("index.json"))?;
    let entries = index["manifests"]
        .as_array()
        .filter(|a| !a.is_empty())
        .context("index.json lists no manifest")?;
    let ref_of = |m: &Value| {
        m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(String::from)
    };
    let mut refs: Vec<String> = entries.iter().filter_map(ref_of).collect();
    refs.dedup();
    // Entries of one name (or of none) are one image for several platforms.
    let chosen: Vec<&Value> = match reference {
        Some(r) => entries
            .iter()
            .filter(|m| ref_of(m).as_deref() == Some(r))
            .collect(),
        None if refs.len() > 1 => return Err(choose(source, &refs)),
        None => entries.iter().collect(),
    };
    if let Some(r) = reference {
        anyhow::ensure!(!chosen.is_empty(), no_such(source, r, &refs));
    }
    let entry = pick_manifest(&chosen).context("index.json lists no manifest")?;
    let name = ref_of(entry);
    let mut descriptor = entry;
    let mut manifest = read_blob_json(dir, descriptor)?;
    // A multi-platform image points to another index first.
    let mut inner_entries;
    for _ in 0..4 {
        if manifest.get("layers").is_some() {
            break;
        }
        inner_entries = manifest["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let all: Vec<&Value> = inner_entries.iter().collect();
        descriptor = pick_manifest(&all).context("an image index lists no manifest")?;
        manifest = read_blob_json(dir, descriptor)?;
    }
    let layers = manifest["layers"]
        .as_array()
        .context("the manifest has no layers")?
        .iter()
        .map(blob)
        .collect::<Result<_>>()?;
    Ok(Found {
        name,
        config: Some(blob(&manifest["config"]).context("the manifest has no config")?),
        layers,
    })
}

/// A descriptor's blob, checked, as JSON.
pub(super) fn read_blob_json(dir: &Path, descriptor: &Value) -> Result<Value> {
    let b = blob(descriptor)?;
    verify_blob(dir, &b)?;
    read_json(&inside(dir, &b.file)?)
}

/// The manifest for this machine's architecture, or the first one.
pub(super) fn pick_manifest<'a>(manifests: &[&'a Value]) -> Option<&'a Value> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    manifests
        .iter()
        .find(|m| m["platform"]["architecture"].as_str() == Some(arch))
        .or_else(|| manifests.first())
        .copied()
}

pub(super) fn blob(descriptor: &Value) -> Result<Blob> {
    let file = blob_path(descriptor)?;
    let digest = descriptor["digest"].as_str().unwrap_or_default();
    Ok(Blob {
        file,
        sha256: digest.strip_prefix("sha256:").map(String::from),
        size: descriptor["size"].as_u64(),
        media_type: descriptor["mediaType"].as_str().unwrap_or("").to_string(),
    })
}

/// `file` of the image in `dir`, staying inside it even through symlinks.
pub(super) fn inside(dir: &Path, file: &str) -> Result<PathBuf> {
    let real = dir
        .join(file)
        .canonicalize()
        .with_context(|| format!("{file} is missing from the image"))?;
    anyhow::ensure!(
        real.starts_with(dir.canonicalize()?),
        "{file} points outside the image"
    );
    Ok(real)
}

/// The blob's size and SHA-256 against its descriptor.
pub(super) fn verify_blob(dir: &Path, blob: &Blob) -> Result<()> {
    let path = inside(dir, &blob.file)?;
    if let Some(size) = blob.size {
        let real = std::fs::metadata(&path)?.len();
        anyhow::ensure!(
            real == size,
            "{} is damaged: {real} bytes where the manifest says {size} (a truncated copy?)",
            blob.file
        );
    }
    if let Some(want) = &blob.sha256 {
        let mut hash = Sha256::new();
        std::io::copy(&mut File::open(&path)?, &mut hash)?;
        let got = format!("{:x}", hash.finalize());
        anyhow::ensure!(
            got == *want,
            "{} is damaged: its SHA-256 is {got}, the manifest says {want}",
            blob.file
        );
    }
    Ok(())
}

/// A layer blob, decompressed as its first bytes say (gzip, zstd or none).
pub(super) fn open_layer(path: &Path, media_type: &str, label: &str) -> Result<Box<dyn Read>> {
    anyhow::ensure!(
        !media_type.contains("encrypted"),
        "layer {media_type} is encrypted, which lab does not read"
    );
    open_counted(path, label)
}

/// `open_maybe_gzip`, with a progress line on a terminal: `label`, a bar, and
/// how much of the file was read.
pub(super) fn open_counted(path: &Path, label: &str) -> Result<Box<dyn Read>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let counting = Counting {
        inner: file,
        progress: Progress::new(label, total),
    };
    decompressed(BufReader::new(counting), path)
}

/// On a terminal, a line that shows how far a long read is: drawn after the
/// first half second, redrawn at most ten times a second, erased at the end.
/// Nothing when standard error is not a terminal (piped, CI).
struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: std::time::Instant,
    drawn: Option<std::time::Instant>,
    terminal: bool,
}

impl Progress {
    fn new(label: &str, total: u64) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            start: std::time::Instant::now(),
            drawn: None,
            terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn add(&mut self, n: usize) {
        self.done += n as u64;
        let now = std::time::Instant::now();
        let due = match self.drawn {
            None => now.duration_since(self.start).as_millis() >= 500,
            Some(last) => now.duration_since(last).as_millis() >= 100,
        };
        if !self.terminal || !due {
            return;
        }
        self.drawn = Some(now);
        let share = (self.done as f64 / self.total.max(1) as f64).min(1.0);
        let filled = (share * 30.0) as usize;
        let line = format!(
            "\r  {} [{}{}] {:>3}% of {:.1} MB",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled),
            (share * 100.0) as u32,
            self.total as f64 / 1e6
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn.is_some() {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"\r\x1b[K");
        }
    }
}

struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n);
        Ok(n)
    }
}

pub(super) fn blob_path(descriptor: &Value) -> Result<String> {
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
