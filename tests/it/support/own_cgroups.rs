//! The calling process's own cgroup in every hierarchy it belongs to: what tests
//! and benchmarks make their cgroups below (never elsewhere). Shared by
//! tests/it/support and benches/common.

use std::path::{Path, PathBuf};

/// (the hierarchy's mount point, this process's cgroup in it), from
/// /proc/self/cgroup and the mount table: each v1 hierarchy by its controller
/// (or `name=`), the cgroup2 one by its filesystem type.
#[allow(dead_code)] // a bench that shares benches/common may not need it
pub fn own_cgroups() -> Vec<(PathBuf, PathBuf)> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let key = controllers.split(',').next().unwrap_or("");
        let mount = mounts.lines().find_map(|m| {
            let (left, right) = m.split_once(" - ")?;
            let mut r = right.split(' ');
            let (fs, _, opts) = (r.next()?, r.next()?, r.next()?);
            let ok = if key.is_empty() {
                fs == "cgroup2"
            } else {
                fs == "cgroup" && opts.split(',').any(|o| o == key)
            };
            ok.then(|| left.split(' ').nth(4).map(String::from))?
        });
        if let Some(m) = mount {
            let hierarchy = PathBuf::from(m);
            let own = hierarchy.join(path.trim_start_matches('/'));
            dirs.push((hierarchy, own));
        }
    }
    dirs
}

/// Is something mounted at `path`?
#[allow(dead_code)] // the tests do not need it
pub fn is_mount(path: &Path) -> bool {
    let path = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path))
}
