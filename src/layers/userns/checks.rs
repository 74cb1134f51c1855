//! Layer 9, part 5: the checks.
//!
//! From the host, the container's process is the mapped user; inside, it is
//! root, and the image's files are root's; what it writes lands in its own layer
//! owned by the mapped user. A host file of the host's root that reaches the
//! container is no longer root's to touch: that escape is checked with the others
//! (escapes.rs).

use super::range::{self, Range};

use crate::engine::check::{Check, Kind, Outcome, Probe};
use anyhow::{Context, Result};
use std::fs::File;
use std::os::fd::AsFd;

pub(super) fn checks(_step: u8) -> Vec<Check> {
    vec![
        super::LAYER.check(
            "on the host, the container's root is the first user of the range",
            "The container's process runs as user 0 of the host: it is not in a user namespace, or the maps were not written. Look at the Uid line of /proc/PID/status and at /proc/PID/uid_map on the host.",
            Kind::Host(mapped_outside),
        ),
        super::LAYER.check(
            "inside, the container's processes are root (user 0)",
            "Inside the process is not user 0: the maps are written, but nobody became root of the namespace (`setpriv --reuid 0 --regid 0 --clear-groups`). Try `id` inside.",
            Kind::Confined(root_inside),
        ),
        super::LAYER.check(
            "the image's files are root's inside; what root writes is the range's first user's on the host",
            "Inside, the image's files show as nobody, or a new file is not the mapped user's in the upper directory: the overlay needs the shifted copies as lower layers and upper owned by the range's first user. Compare `ls -ln /` inside with `ls -ln UPPER` on the host.",
            Kind::Confined(files_shifted),
        ),
    ]
}

/// What the checks compare with: lab's range, and the container's upper
/// directory, opened on the host.
pub(super) struct Ids {
    /// lab's range, for its own containers and the recipe's; None for another
    /// runtime's, which is graded on its own map.
    range: Option<Range>,
    upper: Option<File>,
}

pub(super) fn gather(p: &Probe) -> Result<Ids> {
    // A running container of lab's: its range on this machine (--id-range only
    // prints).
    let range = match p.maker.is_other() {
        true => None,
        false => Some(range::maps(None)?.uid),
    };
    let upper = crate::layers::overlay::layers_of(&p.target.to_string())
        .ok()
        .map(|(upper, _)| File::open(&upper).with_context(|| format!("opening {upper}")))
        .transpose()?;
    Ok(Ids { range, upper })
}

fn ids(p: &Probe) -> Result<&Ids, Outcome> {
    p.data(super::LAYER.number)
}

fn mapped_outside(p: &Probe) -> Outcome {
    let ids = match ids(p) {
        Ok(i) => i,
        Err(o) => return o,
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.target)).unwrap_or_default();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", p.target)).unwrap_or_default();
    let map_words: Vec<&str> = map.split_whitespace().collect();
    let Some(range) = &ids.range else {
        // Another runtime's container: whatever its map, root must not be root.
        let root = host_id_of_root(&map);
        return Outcome::from(
            root.is_some_and(|r| r != 0) && !uids.is_empty() && !uids.contains(&0),
            format!(
                "process {}: Uid {:?} on the host; uid_map \"{}\": {}",
                p.target,
                uids,
                map_words.join(" "),
                match root {
                    Some(0) => "root inside is the host's root".to_string(),
                    Some(r) => format!("root inside is user {r} on the host"),
                    None => "root inside is mapped to no user of the host".to_string(),
                }
            ),
        );
    };
    let expected = range.map_line();
    let ok = !uids.is_empty()
        && uids.iter().all(|u| *u == range.base)
        && map_words == expected.split_whitespace().collect::<Vec<_>>();
    Outcome::from(
        ok,
        format!(
            "process {}: Uid {:?} on the host; uid_map \"{}\" (lab's range: {expected})",
            p.target,
            uids,
            map_words.join(" ")
        ),
    )
}

/// The host's user that user 0 of a namespace is, by its uid_map (lines of
/// "first-inside first-outside count").
fn host_id_of_root(map: &str) -> Option<u32> {
    map.lines().find_map(|l| {
        let w: Vec<u64> = l
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        match w[..] {
            [inside, outside, count] if inside == 0 && count > 0 => u32::try_from(outside).ok(),
            _ => None,
        }
    })
}

fn root_inside(_p: &Probe) -> Outcome {
    let (uid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    Outcome::from(
        uid.is_root() && euid.is_root() && host_id_of_root(&map).is_some_and(|r| r != 0),
        format!(
            "uid {uid}, euid {euid} inside; /proc/self/uid_map: {}",
            map.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    )
}

fn files_shifted(p: &Probe) -> Outcome {
    use std::os::unix::fs::MetadataExt;
    let ids = match ids(p) {
        Ok(i) => i,
        Err(o) => return o,
    };
    let Some(upper) = &ids.upper else {
        return Outcome::Fail("the container's / is not an overlay".into());
    };
    let image = ["/bin", "/etc", "/"]
        .iter()
        .filter_map(|d| std::fs::symlink_metadata(d).ok().map(|m| (*d, m.uid())))
        .collect::<Vec<_>>();
    let name = format!(".lab-owner-{}", std::process::id());
    if let Err(e) = std::fs::write(format!("/{name}"), "written by root inside\n") {
        return Outcome::Fail(format!("writing /{name} inside: {e}"));
    }
    let outside = nix::sys::stat::fstatat(
        upper.as_fd(),
        name.as_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map(|st| st.st_uid);
    let _ = std::fs::remove_file(format!("/{name}"));
    // The kernel shows owners through this namespace's map: 0 here is the
    // range's first user on the host, and the host's root (unmapped) would show
    // as 65534, nobody.
    let image_root = !image.is_empty() && image.iter().all(|(_, u)| *u == 0);
    let written = outside.as_ref().ok().copied();
    // The owner on the host, through this namespace's own map (read here,
    // inside it: never lab's range, which another runtime does not use).
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let root = host_id_of_root(&map);
    Outcome::from(
        image_root && written == Some(0) && root.is_some_and(|r| r != 0),
        format!(
            "inside, {}; /{name} written inside is user {} in the upper directory, seen from here: through the map \"{}\", user {} on the host",
            image
                .iter()
                .map(|(d, u)| format!("{d} is user {u}'s"))
                .collect::<Vec<_>>()
                .join(", "),
            written.map_or("?".into(), |u| u.to_string()),
            map.split_whitespace().collect::<Vec<_>>().join(" "),
            match (written, root) {
                (Some(w), Some(r)) => (u64::from(w) + u64::from(r)).to_string(),
                _ => "?".into(),
            }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::host_id_of_root;

    #[test]
    fn the_hosts_user_for_root_comes_from_the_map() {
        assert_eq!(
            host_id_of_root("         0          0 4294967295\n"),
            Some(0)
        );
        assert_eq!(host_id_of_root("0 100000 65536\n"), Some(100000));
        assert_eq!(host_id_of_root("1 100000 65535\n0 1000 1\n"), Some(1000));
        assert_eq!(host_id_of_root("1 100000 65535\n"), None);
    }
}
