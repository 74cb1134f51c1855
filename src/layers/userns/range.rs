//! Layer 9, part 2: the range of host IDs the container's IDs map to. Next:
//! `shift.rs`.
//!
//! A user namespace translates user and group IDs: its uid_map says "IDs 0 to
//! 65535 in here are 100000 to 165535 outside". Which host IDs to use is the
//! host's choice, and they must be nobody else's: whoever holds a host ID of the
//! range owns the container's files that carry it, and the container's root owns
//! that one's files. /etc/subuid and /etc/subgid list the ranges handed out to
//! users (for `newuidmap`, with which a user writes a map of its own, as rootless
//! Podman does); `useradd` gives each new user the next free range from 100000
//! up: the first user gets 100000-165535 (vagrant on the classroom VM).
//!
//! lab takes the range of the `lab` line of those files, and refuses it when it
//! overlaps another line or holds a user's or group's ID. Without a `lab` line it
//! takes the first of 100000, 200000, 300000, ... (65536 IDs from there) that
//! overlaps no line of them and holds no user's or group's ID, and says which.
//! useradd does not know of that choice: a `lab` line keeps the range for lab.

use anyhow::{bail, Result};

/// A range of host IDs: container IDs 0..count are host IDs base..base+count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u32,
    pub count: u32,
}

/// How many IDs lab maps without a `lab` line: 0-65535, as useradd hands out.
pub const COUNT: u32 = 65_536;

/// Without a `lab` line, lab looks at ranges from here up, a step apart.
pub const FIRST: u32 = 100_000;
const STEP: u32 = 100_000;

impl Range {
    /// `0 BASE COUNT`: a line of /proc/PID/uid_map and gid_map.
    pub fn map_line(&self) -> String {
        format!("0 {} {}", self.base, self.count)
    }
    /// The last ID of the range (`base + count - 1`).
    pub fn last(&self) -> u32 {
        self.base + (self.count - 1)
    }
    /// `100000-165535`
    pub fn span(&self) -> String {
        format!("{}-{}", self.base, self.last())
    }
    /// `lab:100000:65536`: the line of /etc/subuid and /etc/subgid that gives it to lab.
    pub fn lab_line(&self) -> String {
        format!("lab:{}:{}", self.base, self.count)
    }
    fn overlaps(&self, other: &Range) -> bool {
        let end = |r: &Range| u64::from(r.base) + u64::from(r.count);
        u64::from(self.base) < end(other) && u64::from(other.base) < end(self)
    }
    /// `BASE:COUNT`, as --id-range takes it.
    pub fn parse(s: &str) -> Result<Range> {
        let parsed = s
            .split_once(':')
            .and_then(|(b, c)| Some((b.parse().ok()?, c.parse().ok()?)));
        let Some((base, count)) = parsed else {
            bail!("{s:?} is not BASE:COUNT (e.g. 200000:65536)");
        };
        let range = Range { base, count };
        usable(range)?;
        Ok(range)
    }
}

/// A range starts above root, holds an ID and ends below 2^32.
fn usable(range: Range) -> Result<()> {
    if range.base == 0 || range.count == 0 || range.base.checked_add(range.count).is_none() {
        bail!(
            "the ID range {}+{} is not usable: it must start above 0, hold at least one ID and end below 2^32",
            range.base,
            range.count
        );
    }
    Ok(())
}

/// What lab reads on the host to choose a range: the text of /etc/subuid,
/// /etc/subgid, /etc/passwd and /etc/group (text, so that a test gives its own).
#[derive(Clone, Debug, Default)]
pub struct HostIds {
    pub subuid: String,
    pub subgid: String,
    pub passwd: String,
    pub group: String,
}

impl HostIds {
    pub fn read() -> HostIds {
        let read = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
        HostIds {
            subuid: read("/etc/subuid"),
            subgid: read("/etc/subgid"),
            passwd: read("/etc/passwd"),
            group: read("/etc/group"),
        }
    }

    /// Who holds IDs here, but lab: each line of /etc/subuid and /etc/subgid (a
    /// range), each user and group (one ID).
    fn holders(&self) -> Vec<Holder> {
        let mut all = Vec::new();
        for (text, file) in [(&self.subuid, "/etc/subuid"), (&self.subgid, "/etc/subgid")] {
            for (name, ids) in subordinates(text).filter(|(n, _)| *n != "lab") {
                all.push(Holder {
                    ids,
                    who: format!("{name}'s range {} in {file}", ids.span()),
                    subordinate: true,
                });
            }
        }
        for (text, what) in [(&self.passwd, "user"), (&self.group, "group")] {
            for line in text.lines() {
                let mut f = line.split(':');
                let (Some(name), _, Some(id)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                let Ok(id) = id.parse::<u32>() else { continue };
                // nobody and nogroup (65534) are what unmapped IDs look like anyway.
                if id != 65_534 {
                    all.push(Holder {
                        ids: Range { base: id, count: 1 },
                        who: format!("the {what} {name} ({id}) of this host"),
                        subordinate: false,
                    });
                }
            }
        }
        all
    }

    /// The first holder of an ID of `range`.
    fn held(&self, range: Range) -> Option<Holder> {
        self.holders().into_iter().find(|h| h.ids.overlaps(&range))
    }

    /// The first of 100000, 200000, ... (65536 IDs each) that nobody holds, and
    /// those before it, each with who holds it.
    fn first_free(&self) -> (Option<Range>, Vec<(Range, String)>) {
        let (holders, mut held) = (self.holders(), Vec::new());
        let mut base = FIRST;
        while base.checked_add(COUNT).is_some() {
            let range = Range { base, count: COUNT };
            match holders.iter().find(|h| h.ids.overlaps(&range)) {
                None => return (Some(range), held),
                Some(h) => held.push((range, h.who.clone())),
            }
            base = match base.checked_add(STEP) {
                Some(b) => b,
                None => break,
            };
        }
        (None, held)
    }

    /// What to tell someone whose range is refused: a free one to give lab.
    fn suggestion(&self) -> String {
        match self.first_free().0 {
            Some(free) => format!("{} is free here", free.lab_line()),
            None => "a range no line, user or group holds".into(),
        }
    }
}

/// A line of /etc/subuid or /etc/subgid, a user or a group: what it holds, as
/// a message names it.
struct Holder {
    ids: Range,
    who: String,
    /// A line of /etc/subuid or /etc/subgid: a user's range for its own containers.
    subordinate: bool,
}

/// The `NAME:START:COUNT` lines of /etc/subuid or /etc/subgid (others are
/// skipped, as newuidmap skips them).
fn subordinates(text: &str) -> impl Iterator<Item = (&str, Range)> {
    text.lines().filter_map(|l| {
        let mut f = l.trim().split(':');
        let name = f.next()?;
        let range = Range {
            base: f.next()?.parse().ok()?,
            count: f.next()?.parse().ok()?,
        };
        (f.next().is_none() && range.count > 0).then_some((name, range))
    })
}

/// The range of lab on a host with these files, and where it came from: the
/// `lab` line of /etc/subuid and /etc/subgid, checked, or the first free one.
pub fn choose(host: &HostIds) -> Result<(Range, String)> {
    let lab = |text| subordinates(text).find_map(|(n, r)| (n == "lab").then_some(r));
    match (lab(&host.subuid), lab(&host.subgid)) {
        (Some(u), Some(g)) if u == g => {
            check(u, host)?;
            Ok((u, "the lab line of /etc/subuid and /etc/subgid".into()))
        }
        (Some(u), Some(g)) => bail!(
            "/etc/subuid gives lab {} but /etc/subgid gives {}: make them the same range",
            u.span(),
            g.span()
        ),
        (Some(_), None) | (None, Some(_)) => bail!(
            "only one of /etc/subuid and /etc/subgid has a line for lab: add the same range to both ({})",
            host.suggestion()
        ),
        (None, None) => {
            let (free, held) = host.first_free();
            let Some(free) = free else {
                bail!("no range of {COUNT} IDs from {FIRST} up is free of the lines of /etc/subuid and /etc/subgid and of this host's users and groups: give lab a range of its own there (lab:BASE:COUNT, in both)");
            };
            let from = match held.split_first() {
                None => "lab's first choice, free here: no line of /etc/subuid or /etc/subgid, no user or group holds an ID of it".to_string(),
                Some(((first, who), more)) => format!(
                    "the first free one of {FIRST}, {}, ...: {} overlaps {who}{}; {} in /etc/subuid and /etc/subgid would keep it for lab",
                    FIRST + STEP,
                    first.span(),
                    match more.len() {
                        0 => String::new(),
                        n => format!(", and {n} more after it are held too"),
                    },
                    free.lab_line()
                ),
            };
            Ok((free, from))
        }
    }
}

/// The range of lab (from /etc/subuid and /etc/subgid, or the first free one),
/// and where it came from.
pub fn lab() -> Result<(Range, String)> {
    choose(&HostIds::read())
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

/// The maps for a container of this machine; `asked`: the range --id-range
/// gives `lab explain` and `lab script`, what another machine would take (not
/// checked against this one's files).
pub fn maps(asked: Option<Range>) -> Result<Maps> {
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
    let (range, from) = match asked {
        Some(range) => (range, "as --id-range asks".to_string()),
        None => lab()?,
    };
    Ok(Maps {
        uid: range,
        gid: range,
        from,
    })
}

/// A range must not hold root, a line of /etc/subuid or /etc/subgid other than
/// lab's, or a user's or group's ID.
pub fn check(range: Range, host: &HostIds) -> Result<()> {
    usable(range)?;
    let Some(h) = host.held(range) else {
        return Ok(());
    };
    let (verb, consequence) = match h.subordinate {
        true => ("overlaps", "that user's own containers (rootless, through newuidmap) would share these IDs with lab's: their files would be the container's root's, and the container's theirs"),
        false => ("holds", "the container's files would be theirs, and theirs the container's root's"),
    };
    bail!(
        "the ID range {} {verb} {}: {consequence}. Give lab a range of its own in /etc/subuid and /etc/subgid ({}), or remove its lines there: lab then takes a free one itself",
        range.span(),
        h.who,
        host.suggestion()
    )
}

/// The classroom VM's files (the lessons show what lab prints there): vagrant,
/// made by useradd, has the first range of /etc/subuid and /etc/subgid.
#[cfg(test)]
pub fn classroom() -> HostIds {
    HostIds {
        subuid: "vagrant:100000:65536\n".into(),
        subgid: "vagrant:100000:65536\n".into(),
        passwd: [
            "root:x:0:0:root:/root:/bin/bash",
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
            "vagrant:x:1000:1000:vagrant,,,:/home/vagrant:/bin/bash\n",
        ]
        .join("\n"),
        group: "root:x:0:\nnogroup:x:65534:\nvagrant:x:1000:\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_maps_and_refuses_root() {
        let r = Range {
            base: 100_000,
            count: COUNT,
        };
        assert_eq!(r.map_line(), "0 100000 65536");
        assert_eq!(r.span(), "100000-165535");
        let one = |base| Range { base, count: 1 };
        assert!(r.overlaps(&one(100_000)) && r.overlaps(&one(165_535)));
        assert!(!r.overlaps(&one(165_536)) && !r.overlaps(&one(99_999)));
        let host = HostIds::default();
        assert!(check(Range { base: 0, count: 10 }, &host).is_err());
        assert!(check(
            Range {
                base: u32::MAX,
                count: 10
            },
            &host
        )
        .is_err());
        assert_eq!(
            Range::parse("200000:65536").unwrap().span(),
            "200000-265535"
        );
        for bad in ["200000", "0:10", "1:0", "4294967295:2", "a:b"] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_a_lab_line_the_first_free_range_is_taken_and_said_why() {
        // Nothing held: 100000-165535.
        let (range, from) = choose(&HostIds::default()).unwrap();
        assert_eq!(range.span(), "100000-165535");
        assert!(from.contains("lab's first choice, free here"), "{from}");
        // The classroom VM: 100000-165535 is vagrant's, in /etc/subuid only (no
        // user of /etc/passwd has an ID in it).
        let (range, from) = choose(&classroom()).unwrap();
        assert_eq!(range.map_line(), "0 200000 65536");
        assert!(
            from.contains("100000-165535 overlaps vagrant's range 100000-165535 in /etc/subuid")
                && from.contains("lab:200000:65536 in /etc/subuid and /etc/subgid"),
            "{from}"
        );
        // A second and third user (165536-231071, 231072-296607) hold 200000 too,
        // and a group 300000; a range in /etc/subgid alone counts as well.
        let mut host = classroom();
        host.subuid += "alice:165536:65536\nbob:231072:65536\n";
        host.group += "odd:x:300005:\n";
        host.subgid += "carol:400000:10\n";
        let (range, from) = choose(&host).unwrap();
        assert_eq!(range.span(), "500000-565535");
        assert!(
            from.contains(", and 3 more after it are held too"),
            "{from}"
        );
        // A range reaches its end exactly: 165536 is free of vagrant's.
        let edge = Range {
            base: 165_536,
            count: COUNT,
        };
        assert!(check(edge, &classroom()).is_ok());
    }

    #[test]
    fn a_lab_line_is_taken_unless_another_holds_its_ids() {
        let mut host = classroom();
        host.subuid += "lab:300000:65536\n";
        host.subgid += "lab:300000:65536\n";
        assert_eq!(
            choose(&host).unwrap(),
            (
                Range {
                    base: 300_000,
                    count: COUNT
                },
                "the lab line of /etc/subuid and /etc/subgid".to_string()
            )
        );
        // lab's line on vagrant's range: refused, saying what to do.
        let mut host = classroom();
        host.subuid += "lab:120000:65536\n";
        host.subgid += "lab:120000:65536\n";
        let e = choose(&host).unwrap_err().to_string();
        assert!(
            e.starts_with("the ID range 120000-185535 overlaps vagrant's range 100000-165535 in /etc/subuid: ")
                && e.contains("lab:200000:65536 is free here")
                && e.contains("remove its lines there"),
            "{e}"
        );
        // A user's ID in the range, as the old check had it.
        let mut host = classroom();
        host.subuid = "lab:1:100\n".into();
        host.subgid = "lab:1:100\n".into();
        let e = choose(&host).unwrap_err().to_string();
        assert!(
            e.starts_with("the ID range 1-100 holds the user daemon (1) of this host"),
            "{e}"
        );
        // The two files must agree, and hold both.
        let mut host = classroom();
        host.subuid += "lab:300000:65536\n";
        let e = choose(&host).unwrap_err().to_string();
        assert!(
            e.contains("add the same range to both (lab:200000:65536 is free here)"),
            "{e}"
        );
        host.subgid += "lab:400000:65536\n";
        assert!(choose(&host).is_err());
    }
}
