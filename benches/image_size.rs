//! Does starting a container cost more when its image is bigger?
//!
//! `sudo cargo bench --bench image_size` times `lab step 7 -- /bin/true` on a small
//! image (about 5 MB) and a large one (about 500 MB), beside the approach in which
//! every container gets a full copy of its root filesystem (`cp -a`, then step 6: the
//! same layers but the overlay).
//! Interleaved rounds, medians and ranges, while one other container keeps lab0
//! up. Figures, not a pass/fail test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    if !common::root_in_own_network("image_size") {
        return;
    }
    // Under `cargo test --all-targets` (no --bench): one round on small sizes, to
    // keep the benchmark working, and no figures.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (tmp, home, run, disks) = common::dirs_with_rootfs("bench-images");
    let lab = |args: &[&str]| common::lab(&home, &run, args);
    let rootfs = home.join("rootfs");
    let (small_mb, large_mb) = if smoke { (5, 20) } else { (5, 500) };
    let small = image(&tmp, &rootfs, "small", small_mb);
    let large = image(&tmp, &rootfs, "large", large_mb);
    let copy = tmp.join("copy");
    let rounds = if smoke { 1 } else { 15 };

    let names = [
        format!("lab step 7, {small_mb} MB image"),
        format!("lab step 7, {large_mb} MB image"),
        format!("cp -a of the {large_mb} MB image, then lab step 6 on the copy"),
    ];
    let holder = common::hold_lab0(&lab);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let warmup = if smoke { 0 } else { 1 };
    for round in 0..rounds + warmup {
        for (i, t) in times.iter_mut().enumerate() {
            let start = Instant::now();
            let ok = match i {
                0 => lab(&[
                    "step",
                    "7",
                    "--no-checks",
                    "--rootfs",
                    small.to_str().unwrap(),
                    "--",
                    "/bin/true",
                ])
                .status(),
                1 => lab(&[
                    "step",
                    "7",
                    "--no-checks",
                    "--rootfs",
                    large.to_str().unwrap(),
                    "--",
                    "/bin/true",
                ])
                .status(),
                _ => Command::new("cp")
                    .args(["-a", large.to_str().unwrap(), copy.to_str().unwrap()])
                    .status()
                    .and_then(|_| {
                        lab(&[
                            "step",
                            "6",
                            "--no-checks",
                            "--rootfs",
                            copy.to_str().unwrap(),
                            "--",
                            "/bin/true",
                        ])
                        .status()
                    }),
            };
            if round >= warmup {
                t.push(start.elapsed()); // the first round fills the page cache
            }
            assert!(ok.unwrap().success(), "{} failed", names[i]);
            let _ = std::fs::remove_dir_all(&copy);
        }
    }
    drop(holder);
    let _ = lab(&["clean"]).status();
    let _ = std::fs::remove_dir_all(&tmp);
    if smoke {
        println!("bench image_size: every command ran; `sudo bench/run` prints the figures");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "### Start-up against image size\n\nStart and stop of one container running /bin/true, \
         {rounds} interleaved rounds; one other container keeps lab0 up. Disks: {disks}.\n"
    );
    println!("| approach | median ms | min-max ms |");
    println!("|---|---:|---:|");
    for (name, t) in names.iter().zip(times.iter_mut()) {
        t.sort();
        println!(
            "| {name} | {:.1} | {:.1}-{:.1} |",
            ms(t[t.len() / 2]),
            ms(t[0]),
            ms(t[t.len() - 1])
        );
    }
}

/// The root filesystem plus `mb` megabytes of files (1 MB each) in /data.
fn image(tmp: &Path, rootfs: &Path, name: &str, mb: usize) -> PathBuf {
    let dir = tmp.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(Command::new("cp")
        .args(["-a"])
        .arg(rootfs)
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let block = vec![7u8; 1 << 20];
    let base = 2; // the busybox root filesystem is about 2 MB
    for i in 0..mb.saturating_sub(base) {
        std::fs::write(dir.join(format!("data/{i}")), &block).unwrap();
    }
    dir
}
