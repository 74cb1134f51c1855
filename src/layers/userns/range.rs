//! Layer 9, part 2: the range of host IDs the container's IDs map to. Next:
//! `shift.rs`.
//!
//! A user namespace translates user and group IDs: its uid_map says "IDs 0 to
//! 65535 in here are 100000 to 165535 outside". Which host IDs to use is the
//! host's choice; /etc/subuid and /etc/subgid list the ranges handed out to
//! each user (for `newuidmap`, which lets a user write a map of its own). lab
//! takes the range that a `lab` line of those files gives, else 100000-165535,
//! and refuses a range in which a real user of the host has its ID: that user
//! would own the container's files, and the container's root its files.

use anyhow::{bail, Result};

/// A range of host IDs: container IDs 0..count are host IDs base..base+count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u32,
    pub count: u32,
}

/// The default range, when /etc/subuid has no line for lab.
pub const DEFAULT: Range = Range {
    base: 100_000,
    count: 65_536,
};

impl Range {
    /// `0 BASE COUNT`: a line of /proc/PID/uid_map and gid_map.
    pub fn map_line(&self) -> String {
        format!("0 {} {}", self.base, self.count)
    }
    pub fn contains(&self, id: u32) -> bool {
        id >= self.base && id - self.base < self.count
    }
}

/// The range of lab (from /etc/subuid and /etc/subgid, or the default), and where
/// it came from, checked against the host's users and groups.
pub fn lab() -> Result<(Range, String)> {
    let (uids, gids) = (subordinate("/etc/subuid"), subordinate("/etc/subgid"));
    let (range, from) = match (uids, gids) {
        (Some(u), Some(g)) if u == g => (u, "the lab line of /etc/subuid and /etc/subgid"),
        (Some(u), Some(g)) => bail!(
            "/etc/subuid gives lab {}-{} but /etc/subgid gives {}-{}: make them the same range",
            u.base,
            u.base + u.count - 1,
            g.base,
            g.base + g.count - 1
        ),
        (Some(_), None) | (None, Some(_)) => bail!(
            "only one of /etc/subuid and /etc/subgid has a line for lab: add the same range to both (lab:100000:65536)"
        ),
        (None, None) => (DEFAULT, "lab's default (no lab line in /etc/subuid)"),
    };
    check(range)?;
    Ok((range, from.to_string()))
}

/// The `lab:BASE:COUNT` line of a subordinate ID file.
fn subordinate(file: &str) -> Option<Range> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        if f.next()? != "lab" {
            return None;
        }
        Some(Range {
            base: f.next()?.parse().ok()?,
            count: f.next()?.parse().ok()?,
        })
    })
}

/// The maps of the container: user IDs, group IDs, and where they came from.
/// With root: lab's range for both. Without root (rootless): the one ID a user
/// may map without help, its own, to 0 (more needs newuidmap and a range of
/// /etc/subuid).
pub struct Maps {
    pub uid: Range,
    pub gid: Range,
    pub from: String,
}

pub fn maps() -> Result<Maps> {
    if crate::dirs::rootless() {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        return Ok(Maps {
            uid: Range {
                base: uid.as_raw(),
                count: 1,
            },
            gid: Range {
                base: gid.as_raw(),
                count: 1,
            },
            from: format!("without root: your own user {uid} and group {gid}, the one ID a user may map by itself"),
        });
    }
    let (range, from) = lab()?;
    Ok(Maps {
        uid: range,
        gid: range,
        from,
    })
}

/// A range must not hold root or a real user's or group's ID.
pub fn check(range: Range) -> Result<()> {
    if range.base == 0 || range.count == 0 || range.base.checked_add(range.count).is_none() {
        bail!(
            "the ID range {}+{} is not usable: it must start above 0, hold at least one ID and end below 2^32",
            range.base,
            range.count
        );
    }
    for (file, what) in [("/etc/passwd", "user"), ("/etc/group", "group")] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let mut f = line.split(':');
            let (Some(name), _, Some(id)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(id) = id.parse::<u32>() else { continue };
            // nobody and nogroup (65534) are what unmapped IDs look like anyway.
            if range.contains(id) && id != 65_534 {
                bail!(
                    "the ID range {}-{} holds the {what} {name} ({id}) of this host: the container's files would be that {what}'s. Give lab another range in /etc/subuid and /etc/subgid (lab:200000:65536)",
                    range.base,
                    range.base + range.count - 1
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_maps_and_refuses_root() {
        assert_eq!(DEFAULT.map_line(), "0 100000 65536");
        assert!(DEFAULT.contains(100_000) && DEFAULT.contains(165_535));
        assert!(!DEFAULT.contains(165_536) && !DEFAULT.contains(99_999));
        assert!(check(Range { base: 0, count: 10 }).is_err());
        assert!(check(Range {
            base: u32::MAX,
            count: 10
        })
        .is_err());
    }
}
