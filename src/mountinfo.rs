//! `/proc/PID/mountinfo`: the mount table of a process's mount namespace, one
//! mount per line (see proc(5)). Several layers and lab's own cleanup read it.

/// One line of /proc/self/mountinfo, the fields the checks need.
pub struct MountEntry {
    /// The filesystem's device (`major:minor`), and the directory of it that is
    /// mounted here (`/` for the whole filesystem; another for a bind mount).
    pub dev: String,
    pub root: String,
    pub mount_point: String,
    pub optional: String,
    pub fs_type: String,
    pub source: String,
    /// The filesystem's own options (for overlay: lowerdir=...,upperdir=...).
    pub options: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                dev: f.get(2)?.to_string(),
                root: f.get(3)?.to_string(),
                mount_point: f.get(4)?.to_string(),
                optional: f.get(6..).map(|o| o.join(" ")).unwrap_or_default(),
                fs_type: r.first()?.to_string(),
                source: r.get(1)?.to_string(),
                options: r.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
pub fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    30 22 0:5 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/");
        assert_eq!((m[0].dev.as_str(), m[0].root.as_str()), ("8:1", "/"));
        assert_eq!(m[0].optional, "shared:1");
        assert_eq!(m[0].source, "/dev/vda");
        assert_eq!(m[1].optional, "");
        assert_eq!(m[1].source, "proc");
        assert_eq!(m[1].fs_type, "proc");
        assert_eq!(m[1].options, "rw");
    }
}
