//! Step 7's images: import of a root filesystem tarball, a `docker save` archive and
//! an OCI layout (as a directory and as a tarball), all built here from the test
//! root filesystem; whiteouts and opaque directories; shared layers; and the tar
//! entries lab must refuse. Needs root (mknod, chown, trusted xattrs, mounts).

use crate::support;
use crate::support::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// lab with a state directory of the test's own, removed (with `lab clean`) when
/// the test ends, however it ends.
struct Scratch {
    home: PathBuf,
    run: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let base = run_dir().join(format!("images-{name}"));
        let s = Scratch {
            home: base.join("home"),
            run: base.join("run"),
        };
        std::fs::create_dir_all(&s.home).unwrap();
        s
    }
    fn lab(&self, args: &[&str]) -> std::process::Output {
        lab()
            .env("LAB_HOME", &self.home)
            .env("LAB_RUN", &self.run)
            .env("LAB_CGROUP_PARENT", CGROUP_PARENT)
            .args(args)
            .output()
            .unwrap()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.home.parent().unwrap().join(name)
    }
    fn layer_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.home.join("layers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.lab(&["clean"]);
        let _ = std::fs::remove_dir_all(self.home.parent().unwrap());
    }
}

/// A tar of the test root filesystem (busybox), as a layer or a rootfs tarball.
fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs()).unwrap();
    b.into_inner().unwrap()
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, &[][..]).unwrap();
}

/// Layer 2 of the test images: a new file, a whiteout, and an opaque directory.
fn second_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "etc/motd", b"from layer 2\n");
    add_file(&mut b, "etc/.wh.lab-rootfs", b""); // deletes /etc/lab-rootfs
    add_dir(&mut b, "opt");
    add_file(&mut b, "opt/.wh..wh..opq", b""); // hides layer 1's /opt/old
    add_file(&mut b, "opt/new", b"new\n");
    b.into_inner().unwrap()
}

fn with_opt_old(base: Vec<u8>) -> Vec<u8> {
    // Layer 1 plus /opt/old, which layer 2 hides.
    extended(base, |b| {
        add_dir(b, "opt");
        add_file(b, "opt/old", b"old\n");
    })
}

/// `base` with more entries. Appending to a finished archive would land after its
/// end blocks, so it is built anew.
fn extended(base: Vec<u8>, more: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    rebuilt(base, |_| true, more)
}

/// `base` with only the entries `keep` keeps, and more.
fn rebuilt(
    base: Vec<u8>,
    keep: impl Fn(&std::path::Path) -> bool,
    more: impl FnOnce(&mut tar::Builder<Vec<u8>>),
) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&base[..]);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        if !keep(&path) {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if h.entry_type() == tar::EntryType::Symlink {
            let target = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &path, &target).unwrap();
        } else {
            b.append_data(&mut h, &path, &data[..]).unwrap();
        }
    }
    more(&mut b);
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(data))
}

fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        add_file(&mut b, name, data);
    }
    b.into_inner().unwrap()
}

/// `docker save` of one image, lab/test:1.
fn docker_save(layers: &[Vec<u8>]) -> Vec<u8> {
    docker_save_of(layers, &[("lab/test:1", layers.len())])
}

/// `docker save` of two images: lab/test:1 with every layer, lab/test:base
/// with the first alone.
fn docker_save_two(layers: &[Vec<u8>]) -> Vec<u8> {
    docker_save_of(
        layers,
        &[("lab/test:1", layers.len()), ("lab/test:base", 1)],
    )
}

/// `docker save` of `images`, each a tag and how many of `layers` (bottom
/// first) it stacks.
fn docker_save_of(layers: &[Vec<u8>], images: &[(&str, usize)]) -> Vec<u8> {
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("layer{i}/layer.tar"))
        .collect();
    let entries: Vec<String> = images
        .iter()
        .map(|(tag, n)| {
            let list: Vec<String> = names[..*n].iter().map(|n| format!("\"{n}\"")).collect();
            format!(
                r#"{{"Config":"config.json","RepoTags":["{tag}"],"Layers":[{}]}}"#,
                list.join(",")
            )
        })
        .collect();
    let manifest = format!("[{}]", entries.join(","));
    let mut files: Vec<(&str, &[u8])> = vec![
        ("manifest.json", manifest.as_bytes()),
        ("config.json", b"{}"),
    ];
    for (n, l) in names.iter().zip(layers) {
        files.push((n, l));
    }
    archive(&files)
}

/// An OCI image layout: gzip-compressed layer blobs, a manifest, an index.
fn oci_layout(dir: &Path, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut descriptors = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let digest = sha256(&gz);
        std::fs::write(blobs.join(&digest), &gz).unwrap();
        descriptors.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{digest}","size":{}}}"#,
            gz.len()
        ));
    }
    let config = b"{}";
    std::fs::write(blobs.join(sha256(config)), config).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":2}},"layers":[{}]}}"#,
        sha256(config),
        descriptors.join(",")
    );
    let m = sha256(manifest.as_bytes());
    std::fs::write(blobs.join(&m), &manifest).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{m}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"oci-test"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
}

/// What a container of `image` sees, proving the layers stack as they should.
fn look_inside(s: &Scratch, image: &str) -> String {
    let out = s.lab(&[
        "step",
        "7",
        "--image",
        image,
        "--",
        "sh",
        "-c",
        "cat /etc/motd; ls /opt; test -e /etc/lab-rootfs || echo lab-rootfs-deleted",
    ]);
    assert!(out.status.success(), "{}\n{}", text(&out), err(&out));
    assert!(!text(&out).contains("FAIL"), "{}", text(&out));
    text(&out)
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_root_filesystem_tarball_imports_and_runs() {
    let _g = privileged!();
    let s = Scratch::new("tarball");
    let file = s.file("busybox-rootfs.tar.gz");
    std::fs::write(&file, gzip(&base_layer())).unwrap();
    let out = s.lab(&["image", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        text(&out).contains("Imported busybox-rootfs (root filesystem tarball), 1 layer(s)"),
        "{}",
        text(&out)
    );
    let ls = text(&s.lab(&["image", "ls"]));
    assert!(
        ls.contains("busybox-rootfs") && ls.contains("default"),
        "{ls}"
    );
    let out = s.lab(&["verify", "7", "--image", "busybox-rootfs", "--json"]);
    assert!(out.status.success(), "{}{}", text(&out), err(&out));
    assert_check_names(7, &text(&out));
    // The image's files keep their kind: busybox's applets are still symlinks.
    let layer = s.home.join("layers").join(&s.layer_dirs()[0]);
    assert!(layer
        .join("bin/sh")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_docker_save_archive_stacks_its_layers_with_whiteouts() {
    let _g = privileged!();
    let s = Scratch::new("docker");
    let file = s.file("saved.tar");
    std::fs::write(
        &file,
        docker_save(&[with_opt_old(base_layer()), second_layer()]),
    )
    .unwrap();
    let out = s.lab(&["image", "import", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        t.contains("Imported lab/test:1 (docker save), 2 layer(s)"),
        "{t}"
    );
    assert!(t.contains("1 whiteouts, 1 opaque directories"), "{t}");
    assert!(
        t.contains("Whiteouts: a layer's .wh.NAME file deletes NAME"),
        "{t}"
    );
    let inside = look_inside(&s, "lab/test:1");
    assert!(inside.contains("from layer 2"), "{inside}");
    assert!(inside.contains("lab-rootfs-deleted"), "{inside}");
    let opt: Vec<&str> = inside
        .lines()
        .filter(|l| *l == "new" || *l == "old")
        .collect();
    assert_eq!(
        opt,
        ["new"],
        "the opaque /opt still shows layer 1: {inside}"
    );
    // In the store, in overlayfs's own spelling.
    let layer2 = s
        .layer_dirs()
        .into_iter()
        .map(|d| s.home.join("layers").join(d))
        .find(|d| d.join("etc/motd").exists())
        .unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = layer2.join("etc/lab-rootfs").symlink_metadata().unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "not a 0/0 whiteout"
    );
    assert!(!layer2.join("etc/.wh.lab-rootfs").exists());
    let xattr = std::process::Command::new("getfattr")
        .args(["-n", "trusted.overlay.opaque", "--only-values"])
        .arg(layer2.join("opt"))
        .output()
        .expect("getfattr: apt-get install attr (test.sh installs it)");
    assert_eq!(text(&xattr), "y", "/opt is not opaque: {}", err(&xattr));

    // The same layers under another name are shared, not unpacked again.
    let out = s.lab(&["image", "import", "--name", "again", file.to_str().unwrap()]);
    assert!(
        text(&out).matches("already in the store: shared").count() == 2,
        "{}",
        text(&out)
    );
    assert_eq!(s.layer_dirs().len(), 2);
    // Not while a container runs from it.
    let mut cmd = lab();
    cmd.env("LAB_HOME", &s.home)
        .env("LAB_RUN", &s.run)
        .env("LAB_CGROUP_PARENT", CGROUP_PARENT);
    cmd.args(["step", "7", "--image", "again", "--", "sleep", "4499"])
        .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    let sleeper = wait_for_process("sleep 4499");
    let out = s.lab(&["image", "rm", "again"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("in use by a running container"),
        "{}",
        err(&out)
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert_eq!(
        running.wait().code(),
        Some(143),
        "lab passes the command's status on"
    );
    let out = s.lab(&["image", "rm", "again"]);
    assert!(text(&out).contains("and 0 layers"), "{}", text(&out));
    let out = s.lab(&["image", "rm", "lab/test:1"]);
    assert!(text(&out).contains("and 2 layers"), "{}", text(&out));
    assert!(s.layer_dirs().is_empty());

    // A docker save of two images: lab lists them, and --ref (or FILE:REF) chooses.
    let two = s.file("two.tar");
    std::fs::write(
        &two,
        docker_save_two(&[with_opt_old(base_layer()), second_layer()]),
    )
    .unwrap();
    let out = s.lab(&["image", "import", two.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("holds 2 images: lab/test:1, lab/test:base. Choose one"),
        "{}",
        err(&out)
    );
    assert!(s.layer_dirs().is_empty());
    let out = s.lab(&[
        "image",
        "import",
        two.to_str().unwrap(),
        "--ref",
        "lab/test:base",
    ]);
    assert!(
        text(&out).contains("Imported lab/test:base (docker save), 1 layer(s)"),
        "{}{}",
        text(&out),
        err(&out)
    );
    let out = s.lab(&["image", "import", &format!("{}:lab/test:1", two.display())]);
    assert!(
        text(&out).contains("Imported lab/test:1 (docker save), 2 layer(s)"),
        "{}{}",
        text(&out),
        err(&out)
    );
    let out = s.lab(&[
        "image",
        "import",
        two.to_str().unwrap(),
        "--ref",
        "lab/test:2",
    ]);
    assert!(
        err(&out).contains("has no image lab/test:2; it holds: lab/test:1, lab/test:base"),
        "{}",
        err(&out)
    );
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn an_oci_layout_imports_as_a_directory_and_as_a_tarball() {
    let _g = privileged!();
    let s = Scratch::new("oci");
    let dir = s.file("oci");
    oci_layout(&dir, &[with_opt_old(base_layer()), second_layer()]);
    let out = s.lab(&["image", "import", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        text(&out).contains("Imported oci-test (OCI image layout), 2 layer(s)"),
        "{}",
        text(&out)
    );
    assert!(look_inside(&s, "oci-test").contains("lab-rootfs-deleted"));
    // The same layout as a tarball.
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", &dir).unwrap();
    let file = s.file("oci.tar");
    std::fs::write(&file, b.into_inner().unwrap()).unwrap();
    let out = s.lab(&[
        "image",
        "import",
        "--name",
        "oci-tar",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        text(&out).matches("already in the store: shared").count() == 2,
        "{}",
        text(&out)
    );
    assert!(look_inside(&s, "oci-tar").contains("from layer 2"));
}

/// Adds the entries of one refused case to an archive.
type Build = dyn Fn(&mut tar::Builder<Vec<u8>>);

/// A tar entry written with raw header bytes, the way an attacker would.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn device_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    major: u32,
    minor: u32,
) {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}

#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn unsafe_tar_entries_are_refused_and_leave_nothing() {
    let _g = privileged!();
    let s = Scratch::new("unsafe");
    let outside = s.file("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim");
    let cases: Vec<(&str, Box<Build>, &str)> = vec![
        (
            "absolute",
            Box::new(|b| raw_entry(b, "/tmp/lab-absolute", tar::EntryType::Regular, "", b"x")),
            "absolute path",
        ),
        (
            "dotdot",
            Box::new(|b| raw_entry(b, "a/../../lab-dotdot", tar::EntryType::Regular, "", b"x")),
            "`..` in the path",
        ),
        (
            "hardlink",
            Box::new(|b| {
                raw_entry(
                    b,
                    "passwd",
                    tar::EntryType::Link,
                    "../../../../etc/passwd",
                    b"",
                )
            }),
            "a hard link must point inside the layer",
        ),
        (
            "whiteout-dotdot",
            Box::new(|b| add_file(b, ".wh...", b"")),
            "a whiteout must name a file",
        ),
        (
            "whiteout-dot",
            Box::new(|b| add_file(b, "etc/.wh..", b"")),
            "a whiteout must name a file",
        ),
        (
            "through-symlink",
            Box::new({
                let outside = outside.clone();
                move |b| {
                    raw_entry(
                        b,
                        "escape",
                        tar::EntryType::Symlink,
                        outside.to_str().unwrap(),
                        b"",
                    );
                    raw_entry(
                        b,
                        "escape/victim",
                        tar::EntryType::Regular,
                        "",
                        b"written through a symlink",
                    );
                }
            }),
            "which is not a directory (a symlink?)",
        ),
    ];
    for (name, build, message) in cases {
        let mut b = tar::Builder::new(Vec::new());
        add_file(&mut b, "etc/ok", b"fine\n");
        build(&mut b);
        let file = s.file(&format!("{name}.tar"));
        std::fs::write(&file, b.into_inner().unwrap()).unwrap();
        let out = s.lab(&["image", "import", "--name", name, file.to_str().unwrap()]);
        let e = err(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {e}");
        assert!(
            e.contains("refusing entry") && e.contains(message),
            "{name}: {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        assert!(
            s.layer_dirs().is_empty(),
            "{name}: a layer was left: {:?}",
            s.layer_dirs()
        );
        assert!(
            !s.home.join("images").join(name).exists(),
            "{name}: the image was registered"
        );
    }
    assert!(!victim.exists(), "a file was written outside the layer");
    assert!(
        s.home.join("layers").is_dir(),
        "the layer store itself was removed"
    );
    assert!(!Path::new("/tmp/lab-absolute").exists() && !s.home.join("lab-dotdot").exists());
}

/// Device nodes of an image (mmdebstrap's tarballs and `docker export` hold
/// /dev/console, /dev/sda...) are skipped and counted, never made: the image is
/// imported and runs. The harmless ones, and FIFOs, are kept.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn device_nodes_are_skipped_with_a_count_and_fifos_kept() {
    let _g = privileged!();
    let s = Scratch::new("devices");
    let tarball = extended(base_layer(), |b| {
        device_entry(b, "dev/sda", tar::EntryType::Block, 8, 0);
        device_entry(b, "dev/mem", tar::EntryType::Char, 1, 1);
        device_entry(b, "dev/console", tar::EntryType::Char, 5, 1);
        device_entry(b, "dev/null", tar::EntryType::Char, 1, 3);
        device_entry(b, "run/lab-fifo", tar::EntryType::Fifo, 0, 0);
    });
    let file = s.file("devices.tar");
    std::fs::write(&file, tarball).unwrap();
    let out = s.lab(&["image", "import", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{}", err(&out));
    assert!(t.contains("3 device nodes skipped"), "{t}");
    assert!(
        t.contains("/dev/sda (b 8:0), /dev/mem (c 1:1), /dev/console (c 5:1)"),
        "{t}"
    );
    let layer = s.home.join("layers").join(&s.layer_dirs()[0]);
    use std::os::unix::fs::FileTypeExt;
    for gone in ["dev/sda", "dev/mem", "dev/console"] {
        assert!(!layer.join(gone).exists(), "{gone} was made");
    }
    let kind = |p: &str| layer.join(p).symlink_metadata().unwrap().file_type();
    assert!(kind("dev/null").is_char_device());
    assert!(kind("run/lab-fifo").is_fifo());
    let out = s.lab(&[
        "step",
        "7",
        "--no-checks",
        "--image",
        "devices",
        "--",
        "sh",
        "-c",
        "echo fine > /dev/null && test -p /run/lab-fifo && echo ran",
    ]);
    assert!(text(&out).contains("ran"), "{}{}", text(&out), err(&out));
}

// ── The image spec's layer application, against umoci ─────────────────────────

/// A tar entry with owner, mode and (PAX) extended attributes of its own.
struct Entry<'a> {
    path: &'a str,
    kind: tar::EntryType,
    mode: u32,
    owner: u64,
    data: &'a [u8],
    link: &'a str,
    xattrs: &'a [(&'a str, &'a [u8])],
}

const FILE: Entry = Entry {
    path: "",
    kind: tar::EntryType::Regular,
    mode: 0o644,
    owner: 0,
    data: b"",
    link: "",
    xattrs: &[],
};

fn put(b: &mut tar::Builder<Vec<u8>>, e: Entry) {
    if !e.xattrs.is_empty() {
        let pax: Vec<(String, &[u8])> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(e.kind);
    h.set_mode(e.mode);
    h.set_uid(e.owner);
    h.set_gid(e.owner);
    h.set_size(e.data.len() as u64);
    h.set_mtime(1_700_000_000);
    if e.kind == tar::EntryType::Symlink || e.kind == tar::EntryType::Link {
        b.append_link(&mut h, e.path, e.link).unwrap();
    } else {
        b.append_data(&mut h, e.path, e.data).unwrap();
    }
}

/// file capabilities v2: cap_net_raw, permitted and effective (as Debian's ping).
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Three layers with every case of the image spec's layer application.
fn spec_layers() -> [Vec<u8>; 3] {
    use tar::EntryType::{Directory as Dir, Fifo, Link, Symlink};
    let dir = |path, mode, owner| Entry {
        path,
        kind: Dir,
        mode,
        owner,
        ..FILE
    };
    let mut a = tar::Builder::new(Vec::new());
    for e in [
        dir("t/", 0o755, 0),
        dir("t/owned/", 0o750, 1000),
        Entry {
            path: "t/owned/f",
            owner: 1000,
            data: b"a\n",
            ..FILE
        },
        Entry {
            path: "t/suid",
            mode: 0o4755,
            data: b"x",
            ..FILE
        },
        dir("t/sticky/", 0o1777, 0),
        Entry {
            path: "t/sym",
            kind: Symlink,
            link: "/etc/passwd",
            mode: 0o777,
            ..FILE
        },
        Entry {
            path: "t/cap",
            mode: 0o755,
            data: b"#!/bin/sh\n",
            xattrs: &[("security.capability", &CAP_NET_RAW), ("user.lab", b"one")],
            ..FILE
        },
        Entry {
            path: "t/fifo",
            kind: Fifo,
            ..FILE
        },
        Entry {
            path: "t/replace",
            data: b"a file\n",
            ..FILE
        },
        dir("t/gone/", 0o755, 0),
        Entry {
            path: "t/gone/old",
            data: b"old\n",
            ..FILE
        },
        Entry {
            path: "t/hl",
            mode: 0o640,
            owner: 7,
            data: b"linked\n",
            ..FILE
        },
        dir("t/opq/", 0o755, 0),
        Entry {
            path: "t/opq/below",
            ..FILE
        },
        // A hard link within the layer: one file, two names.
        Entry {
            path: "t/owned/f-again",
            kind: Link,
            link: "t/owned/f",
            ..FILE
        },
    ] {
        put(&mut a, e);
    }
    // Layer 2: no entry for t/ or t/owned/ (they keep layer 1's owner and mode).
    let mut b = tar::Builder::new(Vec::new());
    for e in [
        Entry {
            path: "t/owned/new",
            data: b"new\n",
            ..FILE
        },
        dir("t/replace/", 0o700, 0),
        Entry {
            path: "t/replace/inside",
            ..FILE
        },
        Entry {
            path: "t/.wh.gone",
            ..FILE
        },
        dir("t/gone/", 0o700, 5),
        Entry {
            path: "t/gone/new",
            data: b"again\n",
            ..FILE
        },
        Entry {
            path: "t/hl2",
            kind: Link,
            link: "t/hl",
            ..FILE
        },
        Entry {
            path: "t/opq/.wh..wh..opq",
            ..FILE
        },
        Entry {
            path: "t/opq/mine",
            data: b"mine\n",
            ..FILE
        },
    ] {
        put(&mut b, e);
    }
    device_entry(&mut b, "t/disk", tar::EntryType::Block, 8, 0);
    // Layer 3: the directory back to a file; a deep path with no parents anywhere.
    let mut c = tar::Builder::new(Vec::new());
    for e in [
        Entry {
            path: "t/replace",
            data: b"a file again\n",
            ..FILE
        },
        Entry {
            path: "t/deep/er/file",
            data: b"deep\n",
            ..FILE
        },
    ] {
        put(&mut c, e);
    }
    [
        a.into_inner().unwrap(),
        b.into_inner().unwrap(),
        c.into_inner().unwrap(),
    ]
}

/// A tree as a list of lines: type, mode, owner, links, size and content hash,
/// link target, extended attributes (user.* and file capabilities).
fn describe(root: &Path) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let m = path.symlink_metadata().unwrap();
        let t = m.file_type();
        let what = if t.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            todo.extend(names.into_iter().map(|n| rel.join(n)));
            "dir".to_string()
        } else if t.is_symlink() {
            format!("-> {}", std::fs::read_link(&path).unwrap().display())
        } else if t.is_file() {
            let data = std::fs::read(&path).unwrap();
            format!("file {} {} links {}", data.len(), sha256(&data), m.nlink())
        } else if t.is_fifo() {
            "fifo".to_string()
        } else {
            format!("other {:o}", m.mode())
        };
        let xattrs = std::process::Command::new("getfattr")
            .args([
                "-h",
                "-d",
                "-e",
                "hex",
                "-m",
                "^(user\\.|security\\.capability)",
            ])
            .arg(&path)
            .output()
            .expect("getfattr: apt-get install attr (test.sh installs it)");
        let xattrs: Vec<String> = text(&xattrs)
            .lines()
            .filter(|l| l.contains('='))
            .map(String::from)
            .collect();
        out.push(format!(
            "/{} {what} mode {:o} owner {}:{} {}",
            rel.display(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            xattrs.join(" ")
        ));
    }
    out.sort();
    out
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e}: apt-get install umoci skopeo (test.sh installs them)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        text(&out),
        err(&out)
    );
    text(&out)
}

/// /t as a container of `image` sees it, from the host through /proc/PID/root.
fn tree_inside(s: &Scratch, image: &str) -> Vec<String> {
    let mut cmd = lab();
    cmd.env("LAB_HOME", &s.home)
        .env("LAB_RUN", &s.run)
        .env("LAB_CGROUP_PARENT", CGROUP_PARENT)
        .args([
            "step",
            "7",
            "--no-checks",
            "--image",
            image,
            "--",
            "sleep",
            "4497",
        ])
        .stdout(std::process::Stdio::null());
    let running = Background::spawn(cmd);
    let sleeper = wait_for_process("sleep 4497");
    let tree = describe(&PathBuf::from(format!("/proc/{sleeper}/root/t")));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGTERM,
    );
    running.wait();
    tree
}

/// The tree lab shows inside step 7 is the tree `umoci unpack` makes of the same
/// image (type, mode, owner, links, content, link targets, xattrs), for an OCI
/// layout, an oci-archive and a docker-archive; an archive of two images asks
/// which; a damaged blob or a truncated archive is refused and leaves nothing.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn layers_apply_as_umoci_unpack_applies_them() {
    let _g = privileged!();
    let s = Scratch::new("umoci");
    let layout = s.file("layout");
    let l = layout.to_str().unwrap();
    let write = |name: &str, data: &[u8]| {
        let f = s.file(name);
        std::fs::write(&f, data).unwrap();
        f.to_str().unwrap().to_string()
    };
    tool("umoci", &["init", "--layout", l]);
    tool("umoci", &["new", "--image", &format!("{l}:base")]);
    let base = write("base.tar", &base_layer());
    tool(
        "umoci",
        &["raw", "add-layer", "--image", &format!("{l}:base"), &base],
    );
    let [a, b, c] = spec_layers();
    let (a, b, c) = (write("a.tar", &a), write("b.tar", &b), write("c.tar", &c));
    let full = format!("{l}:full");
    tool(
        "umoci",
        &[
            "raw",
            "add-layer",
            "--image",
            &format!("{l}:base"),
            "--tag",
            "full",
            &a,
        ],
    );
    tool("umoci", &["raw", "add-layer", "--image", &full, &b]);
    tool("umoci", &["raw", "add-layer", "--image", &full, &c]);
    let bundle = s.file("bundle");
    tool(
        "umoci",
        &["unpack", "--image", &full, bundle.to_str().unwrap()],
    );
    let want = describe(&bundle.join("rootfs/t"));
    // The cases are there (a describe() that saw nothing would prove nothing).
    let has = |line: &str| want.iter().any(|w| w.starts_with(line));
    assert!(has("/owned dir mode 750 owner 1000:1000"), "{want:#?}");
    assert!(
        has("/suid file 1 ") && has("/sticky dir mode 1777"),
        "{want:#?}"
    );
    assert!(
        want.iter()
            .any(|w| w.contains("security.capability=0x01000002")),
        "{want:#?}"
    );
    assert!(
        has("/gone dir mode 700 owner 5:5") && !has("/gone/old"),
        "{want:#?}"
    );
    assert!(has("/opq/mine") && !has("/opq/below"), "{want:#?}");
    assert!(
        want.iter()
            .any(|w| w.starts_with("/hl2 file") && w.contains("links 2")),
        "{want:#?}"
    );
    assert!(
        want.iter()
            .any(|w| w.starts_with("/owned/f-again file") && w.contains("links 2")),
        "{want:#?}"
    );

    // Two images in the layout: lab asks which, and makes nothing.
    let out = s.lab(&["image", "import", l]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err(&out).contains("holds 2 images: base, full. Choose one: sudo lab image import"),
        "{}",
        err(&out)
    );
    assert!(s.layer_dirs().is_empty(), "{:?}", s.layer_dirs());

    // The layout, as FILE:REF.
    let out = s.lab(&["image", "import", &full]);
    assert!(out.status.success(), "{}", err(&out));
    let t = text(&out);
    assert!(
        t.contains("Imported full (OCI image layout), 4 layer(s)"),
        "{t}"
    );
    assert!(t.contains("1 device nodes skipped"), "{t}");
    assert!(
        t.contains("files copied up") && t.contains("directories from below"),
        "{t}"
    );
    assert!(t.contains("Verified: every blob"), "{t}");
    let want: Vec<String> = want
        .into_iter()
        .filter(|w| !w.starts_with("/disk "))
        .collect();
    assert_eq!(tree_inside(&s, "full"), want, "OCI layout");

    // The same image through skopeo, under names with slashes.
    let oci_archive = s.file("app.oci.tar");
    let docker_archive = s.file("app.docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{full}"),
            &format!(
                "oci-archive:{}:registry.example/team/app:1.2",
                oci_archive.display()
            ),
        ],
    );
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{full}"),
            &format!("docker-archive:{}:team/app:1", docker_archive.display()),
        ],
    );
    // skopeo writes the docker-archive's tag in full (docker.io/...); the short
    // name a user knows finds it too, as docker's own names do.
    for (archive, name, short) in [
        (
            &oci_archive,
            "registry.example/team/app:1.2",
            "registry.example/team/app:1.2",
        ),
        (&docker_archive, "docker.io/team/app:1", "team/app:1"),
    ] {
        let out = s.lab(&["image", "import", archive.to_str().unwrap()]);
        assert!(out.status.success(), "{}", err(&out));
        assert!(
            text(&out).contains(&format!("Imported {name} (")),
            "{}",
            text(&out)
        );
        assert_eq!(tree_inside(&s, short), want, "{name}");
    }
    // The same layers compressed with zstd (OCI's +zstd media types).
    let zstd = s.file("zstd");
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            &format!("oci:{full}"),
            &format!("oci:{}:zstd", zstd.display()),
        ],
    );
    let zstd_blobs = std::fs::read_dir(zstd.join("blobs/sha256"))
        .unwrap()
        .filter(|e| {
            let data = std::fs::read(e.as_ref().unwrap().path()).unwrap();
            data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        })
        .count();
    assert_eq!(
        zstd_blobs, 4,
        "skopeo did not compress the layers with zstd"
    );
    let out = s.lab(&["image", "import", &format!("{}:zstd", zstd.display())]);
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(tree_inside(&s, "zstd"), want, "zstd");
    let ls = text(&s.lab(&["image", "ls"]));
    assert!(
        ls.contains("registry.example/team/app:1.2") && ls.contains("docker.io/team/app:1 "),
        "{ls}"
    );

    // A damaged blob, a truncated archive: one clear line, nothing left.
    let layers_before = s.layer_dirs();
    let damaged = s.file("damaged");
    tool("cp", &["-a", l, damaged.to_str().unwrap()]);
    // The largest blob is the busybox layer: one byte of it changed.
    let blob = std::fs::read_dir(damaged.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let out = s.lab(&[
        "image",
        "import",
        "--name",
        "broken",
        &format!("{}:full", damaged.display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err(&out).contains("is damaged: its SHA-256 is"),
        "{}",
        err(&out)
    );
    let truncated = s.file("truncated.tar");
    let whole = std::fs::read(&docker_archive).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() * 2 / 3]).unwrap();
    let out = s.lab(&[
        "image",
        "import",
        "--name",
        "broken",
        truncated.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!err(&out).contains("panicked"), "{}", err(&out));
    assert_eq!(s.layer_dirs(), layers_before, "a failed import left layers");
    let ls = text(&s.lab(&["image", "ls"]));
    assert!(!ls.contains("broken"), "{ls}");
}

/// An image whose /etc/hosts and /etc/resolv.conf are symbolic links (systemd
/// images have `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`):
/// lab's files land where the links lead inside the container, and the host's
/// file of the same path is left alone. An image whose /proc, /dev and /sys are
/// links to paths it does not have runs: what lab mounts there is made where the
/// links lead inside, as runc does, never on the host.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn symbolic_links_of_an_image_resolve_inside_the_container() {
    let _g = privileged!();
    let s = Scratch::new("links");
    let decoy = s.file("decoy-hosts");
    std::fs::write(&decoy, "the host's own file\n").unwrap();
    let tarball = extended(base_layer(), |b| {
        let d = decoy.to_str().unwrap().trim_start_matches('/').to_string();
        raw_entry(
            b,
            "etc/hosts",
            tar::EntryType::Symlink,
            &format!("/{d}"),
            b"",
        );
        raw_entry(
            b,
            "etc/resolv.conf",
            tar::EntryType::Symlink,
            "../run/systemd/resolve/stub-resolv.conf",
            b"",
        );
    });
    let file = s.file("links.tar");
    std::fs::write(&file, tarball).unwrap();
    let out = s.lab(&["image", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", err(&out));
    let out = s.lab(&[
        "step",
        "7",
        "--image",
        "links",
        "--",
        "sh",
        "-c",
        "cat /etc/hosts /run/systemd/resolve/stub-resolv.conf",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}{}", err(&out));
    assert!(t.contains("10.200.0.2 c1"), "{t}");
    assert!(t.contains("nameserver"), "{t}");
    assert!(!t.contains("FAIL"), "{t}");
    assert_eq!(
        std::fs::read_to_string(&decoy).unwrap(),
        "the host's own file\n"
    );

    // /proc, /dev and /sys leading elsewhere: to a path of the host (made here
    // so that following it on the host would show), inside, relative.
    let host_proc = s.file("host-proc");
    std::fs::create_dir_all(&host_proc).unwrap();
    let top = |p: &std::path::Path| {
        let first = p.components().nth(1).map(|c| c.as_os_str().to_owned());
        !["proc", "dev", "sys"]
            .iter()
            .any(|d| first.as_deref() == Some(std::ffi::OsStr::new(d)))
    };
    let tarball = rebuilt(base_layer(), top, |b| {
        raw_entry(
            b,
            "proc",
            tar::EntryType::Symlink,
            host_proc.to_str().unwrap(),
            b"",
        );
        raw_entry(b, "dev", tar::EntryType::Symlink, "/srv/dev", b"");
        raw_entry(b, "sys", tar::EntryType::Symlink, "srv/../srv/sys", b"");
    });
    std::fs::write(&file, tarball).unwrap();
    let out = s.lab(&[
        "image",
        "import",
        "--name",
        "mounts",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", err(&out));
    let out = s.lab(&[
        "step",
        "8",
        "--image",
        "mounts",
        "--",
        "sh",
        "-c",
        "cat /proc/1/comm; echo x > /dev/null && echo null; ls -d /srv/sys/kernel",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}{}", err(&out));
    assert!(t.contains("\nlab-init\nnull\n/srv/sys/kernel\n"), "{t}");
    assert!(!t.contains("FAIL"), "{t}");
    assert_eq!(std::fs::read_dir(&host_proc).unwrap().count(), 0);
}

/// lab names no path of its own in the image's tree: `pivot_root . .`, as runc
/// does, stacks the host's root on the new one, and `umount -l .` detaches it.
/// An image whose /.oldroot is a symbolic link out of it, or a file, runs with
/// every check passing (step 7: the network's /etc files come from the host
/// through `/..` before it is detached), and the link's target on the host stays
/// empty. (lab once made /.oldroot for the host's root, and refused such an image:
/// "`mkdir -p .oldroot` failed: File exists".)
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn an_image_whose_oldroot_is_a_link_or_a_file_runs() {
    let _g = privileged!();
    let s = Scratch::new("oldroot");
    let outside = s.file("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let file = s.file("oldroot.tar");
    let out_of_it = outside.to_str().unwrap().to_string();
    for (name, kind, link, data) in [
        (
            "oldroot-link",
            tar::EntryType::Symlink,
            out_of_it.as_str(),
            &b""[..],
        ),
        (
            "oldroot-file",
            tar::EntryType::Regular,
            "",
            &b"the image's own file\n"[..],
        ),
    ] {
        // (A root filesystem that an older lab entered holds an empty
        // .oldroot directory of its own: left out.)
        let tarball = rebuilt(
            base_layer(),
            |p| p.components().nth(1).map(|c| c.as_os_str()) != Some(".oldroot".as_ref()),
            |b| raw_entry(b, ".oldroot", kind, link, data),
        );
        std::fs::write(&file, tarball).unwrap();
        let out = s.lab(&["image", "import", "--name", name, file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", err(&out));
        let out = s.lab(&[
            "step",
            "7",
            "--image",
            name,
            "--",
            "sh",
            "-c",
            "ls -ld /.oldroot; cat /etc/hostname",
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{name}: {t}{}", err(&out));
        assert!(!t.contains("FAIL"), "{name}: {t}");
        assert!(t.contains("\nc1\n"), "{name}: {t}");
        let listed = match kind {
            tar::EntryType::Symlink => format!("/.oldroot -> {out_of_it}"),
            _ => "/.oldroot\n".into(),
        };
        assert!(t.contains(&listed), "{name}: {t}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{name}");
    }
}

/// The image's config counts, as with docker run: Env, WorkingDir, Entrypoint
/// and Cmd (the command given replaces Cmd; --entrypoint replaces both), and
/// User (looked up in the image's /etc/passwd and /etc/group; --user replaces
/// it), at step 7 and through step 8's bwrap and setpriv.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn the_image_config_gives_environment_directory_and_command() {
    let _g = privileged!();
    let s = Scratch::new("config");
    let layout = s.file("layout");
    let l = layout.to_str().unwrap();
    tool("umoci", &["init", "--layout", l]);
    let image = format!("{l}:app");
    tool("umoci", &["new", "--image", &image]);
    let base = s.file("base.tar");
    // The user app, its own group and a supplementary group staff.
    let users = extended(base_layer(), |b| {
        add_file(
            b,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
        );
        add_file(
            b,
            "etc/group",
            b"root:x:0:\napp:x:1001:\nstaff:x:50:other,app\nwheel:x:10:root\n",
        );
    });
    std::fs::write(&base, users).unwrap();
    tool(
        "umoci",
        &[
            "raw",
            "add-layer",
            "--image",
            &image,
            base.to_str().unwrap(),
        ],
    );
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.env",
            "GREETING=hello there",
            "--config.workingdir",
            "/srv/app",
            "--config.entrypoint",
            "/bin/sh",
            "--config.entrypoint",
            "-c",
            "--config.cmd",
            "echo \"$GREETING from $(pwd)\"",
            "--config.user",
            "app",
        ],
    );
    let out = s.lab(&["image", "import", &image]);
    let t = text(&out);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        t.contains(r#"Entrypoint ["/bin/sh", "-c"]"#) && t.contains("WorkingDir /srv/app"),
        "{t}"
    );
    let run = |args: &[&str]| {
        // (--verbose: the commands of the image's config, read below.)
        let mut all = vec!["step", "7", "--verbose", "--no-checks", "--image", "app"];
        all.extend_from_slice(args);
        let out = s.lab(&all);
        assert!(out.status.success(), "{args:?}: {}", err(&out));
        text(&out)
    };
    let t = run(&[]);
    assert!(t.contains("\nhello there from /srv/app\n"), "{t}");
    assert!(t.contains("export GREETING='hello there'"), "{t}");
    assert!(t.contains("cd /srv/app"), "{t}");
    assert!(
        t.contains("# the command runs as app: uid 1000, gid 1001, groups 50, HOME /home/app"),
        "{t}"
    );
    // The user of the image, with its groups, HOME, and no capabilities.
    let id = "id; echo HOME=$HOME; grep CapEff /proc/self/status";
    let t = run(&["--entrypoint", "", "--", "sh", "-c", id]);
    assert!(
        t.contains("exec setpriv --reuid=1000 --regid=1001 --groups=50 -- sh -c"),
        "{t}"
    );
    assert!(
        t.contains("\nuid=1000(app) gid=1001(app) groups=50(staff)\nHOME=/home/app\nCapEff:\t0000000000000000\n"),
        "{t}"
    );
    // --user replaces it: a number needs no entry (group 0, HOME /); a name must
    // have one, and so must a group's name.
    let t = run(&[
        "--user",
        "4242",
        "--entrypoint",
        "",
        "--",
        "sh",
        "-c",
        "id -u; id -g; echo $HOME",
    ]);
    assert!(t.contains("\n4242\n0\n/\n"), "{t}");
    let t = run(&["--user", "root", "--entrypoint", "", "--", "id"]);
    assert!(
        t.contains("\nuid=0(root) gid=0(root) groups=10(wheel)\n"),
        "{t}"
    );
    for (user, said) in [
        ("ghost", "unable to find user ghost"),
        ("app:ghosts", "unable to find group ghosts"),
        ("app;rm", "give USER or USER:GROUP"),
    ] {
        let out = s.lab(&["step", "7", "--image", "app", "--user", user, "--", "true"]);
        assert_eq!(out.status.code(), Some(1), "{user}: {}", text(&out));
        assert!(err(&out).contains(said), "{user}: {}", err(&out));
    }
    // The command given replaces Cmd and keeps the Entrypoint.
    let t = run(&["--", "echo given $GREETING"]);
    assert!(t.contains("\ngiven hello there\n"), "{t}");
    let t = run(&["--entrypoint", "", "--", "sh", "-c", "echo none; pwd"]);
    assert!(t.contains("\nnone\n/srv/app\n"), "{t}");
    let out = s.lab(&["step", "8", "--no-checks", "--image", "app"]);
    assert!(
        text(&out).contains("\nhello there from /srv/app\n"),
        "{}{}",
        text(&out),
        err(&out)
    );
    // Through step 8's setpriv too, which also cuts the bounding set.
    let out = s.lab(&[
        "step",
        "8",
        "--no-checks",
        "--image",
        "app",
        "--entrypoint",
        "",
        "--",
        "sh",
        "-c",
        id,
    ]);
    let t = text(&out);
    assert!(
        t.contains("setpriv --reuid=1000 --regid=1001 --groups=50 --no-new-privs"),
        "{t}"
    );
    assert!(
        t.contains("\nuid=1000(app) gid=1001(app) groups=50(staff)\nHOME=/home/app\nCapEff:\t0000000000000000\n"),
        "{t}{}",
        err(&out)
    );
}

/// A real distribution, as a user gets one: a Debian made by mmdebstrap (from
/// Debian's package mirror, the one network access of the tests; kept in the
/// target directory). Its /dev/console and /dev/ptmx are skipped and counted;
/// apt-get and dpkg run at step 7, and at step 8 under its restrictions.
#[test]
#[ignore = "needs root: sudo ./test.sh"]
fn a_debian_made_by_mmdebstrap_runs_apt_and_dpkg() {
    // The tarball first, in the machine's own network namespace.
    let Some(_g) = support::root_or_skip() else {
        return;
    };
    let tarball = support::debian_tarball();
    support::own_network_namespace();
    let s = Scratch::new("debian");
    let out = s.lab(&[
        "image",
        "import",
        "--name",
        "debian",
        tarball.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{}", err(&out));
    assert!(t.contains("2 device nodes skipped"), "{t}");
    assert!(t.contains("/dev/console (c 5:1), /dev/ptmx (c 5:2)"), "{t}");
    // Piped: no progress line. On a terminal (script(1) gives it one): a bar.
    assert!(
        !err(&out).contains('\r') && !t.contains('\r'),
        "{}",
        err(&out)
    );
    let typed = format!(
        "LAB_HOME={} LAB_RUN={} {} image import --name debian-again {}",
        s.home.display(),
        s.run.display(),
        env!("CARGO_BIN_EXE_lab"),
        tarball.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &typed, "/dev/null"])
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("\r  unpacking [") && shown.contains("% of ") && shown.contains(" MB"),
        "no progress line on a terminal: {shown:?}"
    );
    assert!(shown.contains("already in the store: shared"), "{shown}");
    for step in ["7", "8"] {
        let out = s.lab(&[
            "step",
            step,
            "--no-checks",
            "--image",
            "debian",
            "--",
            "sh",
            "-c",
            "apt-get --version | head -n 1; dpkg -l | grep -c '^ii'; echo gone > /dev/null && echo null-works",
        ]);
        let t = text(&out);
        assert!(out.status.success(), "step {step}: {t}{}", err(&out));
        let run = t.split("\nRun\n").nth(1).unwrap_or_default();
        assert!(run.contains("\napt 2."), "step {step}: {run}");
        let packages: usize = run.lines().find_map(|l| l.trim().parse().ok()).unwrap_or(0);
        assert!(packages > 50, "step {step}: {packages} packages: {run}");
        assert!(run.contains("null-works"), "step {step}: {run}");
    }
}
