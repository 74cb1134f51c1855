//! The shape of lab's code, as a test: which part of `src/` may use which.
//!
//! From the top: the command line, the curriculum (the layers), the engine the
//! layers plug into, and what the engine and the layers build on (the kernel's
//! interfaces, images, root filesystems). A part may use the parts below it and
//! never one above: the engine runs whatever curriculum it is handed and names no
//! layer. The test reads the `crate::` paths of every file under `src/`, so a
//! new file or folder is in the graph the moment it exists, and must be given a
//! level here before the test passes.

/// Each top-level module of `src/` (a file, or a folder with its mod.rs), by level.
const LEVELS: &[(&str, &[&str])] = &[
    (
        "the command line",
        &[
            "main",
            "cli",
            "commands",
            "options",
            "exec",
            "show",
            "inspect",
            "doctor",
            "tutor",
            "progress",
            "dependencies",
        ],
    ),
    ("the curriculum", &["layers"]),
    ("the engine", &["engine"]),
    (
        "what the engine and the layers build on",
        &[
            "output",
            "sys",
            "netlink",
            "mountinfo",
            "dirs",
            "devices",
            "image",
            "rootfs",
            "lesson",
        ],
    ),
];

/// The `crate::NAME` paths a file uses, outside its unit tests (a test may
/// build a real curriculum).
fn uses(text: &str) -> Vec<String> {
    // The unit tests' module, to its closing brace (braces in its strings come
    // in pairs, as format strings do).
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(start) => {
            let mut depth = 0;
            let mut end = text.len();
            for (i, c) in text[start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => {
                        end = start + i + 1;
                        break;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.to_string(),
    };
    let code = code.as_str();
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a::B, c};
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = item.trim().split("::").next().unwrap_or("");
                found.push(name.to_string());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found.retain(|n| !n.is_empty());
    found
}

fn level_of(module: &str) -> Option<usize> {
    LEVELS.iter().position(|(_, ms)| ms.contains(&module))
}

/// Every file of src/ with the top-level module it belongs to.
fn files() -> Vec<(String, String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
            let text = std::fs::read_to_string(&p).unwrap();
            (rel.clone(), top.to_string(), text)
        })
        .collect()
}

#[test]
fn every_part_uses_only_the_parts_below_it() {
    let mut wrong = Vec::new();
    for (file, module, text) in files() {
        if file == "dependencies.rs" {
            continue; // this test, whose text holds paths as examples
        }
        let Some(level) = level_of(&module) else {
            wrong.push(format!(
                "src/{file}: its module `{module}` has no level in src/dependencies.rs: say where it goes"
            ));
            continue;
        };
        for used in uses(&text) {
            if used == module {
                continue;
            }
            match level_of(&used) {
                Some(l) if l > level => {}
                // The command line's parts use each other; so do those at the
                // bottom, in no circle (the next test).
                Some(l) if l == level && (level == 0 || level == LEVELS.len() - 1) => {}
                Some(l) => wrong.push(format!(
                    "src/{file} ({}) uses crate::{used} ({})",
                    LEVELS[level].0, LEVELS[l].0
                )),
                None => wrong.push(format!("src/{file} uses crate::{used}, which has no level")),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Within the bottom level, parts may use each other, but in no circle.
#[test]
fn the_parts_below_the_engine_use_each_other_in_no_circle() {
    let bottom = LEVELS.len() - 1;
    let mut edges: Vec<(String, String)> = Vec::new();
    for (_, module, text) in files() {
        if level_of(&module) != Some(bottom) {
            continue;
        }
        for used in uses(&text) {
            if used != module && level_of(&used) == Some(bottom) {
                edges.push((module.clone(), used));
            }
        }
    }
    edges.sort();
    edges.dedup();
    // Remove modules that use nobody until none is left; what stays is a circle.
    let mut left = edges.clone();
    loop {
        let users: Vec<String> = left.iter().map(|(a, _)| a.clone()).collect();
        let before = left.len();
        left.retain(|(_, b)| users.contains(b));
        if left.len() == before {
            break;
        }
    }
    assert!(left.is_empty(), "a circle among {left:?}");
}

#[test]
fn uses_reads_both_forms_of_path_and_skips_only_the_unit_tests() {
    assert_eq!(
        uses("use crate::{a::B, c};\nlet x = crate::d::f();"),
        ["a", "c", "d"]
    );
    let text = "fn a() { crate::x::y(); }\n#[cfg(test)]\nmod tests {\n    fn t() { crate::layers::z(); format!(\"{n}\"); }\n}\nfn b() { crate::w::v(); }\n";
    assert_eq!(uses(text), ["x", "w"]);
}

/// A file a student opens next to a lesson reads in one sitting: none of src/
/// runs past 600 lines (a long layer is a folder, a chapter per file).
#[test]
fn no_file_of_src_is_longer_than_600_lines() {
    let long: Vec<String> = files()
        .into_iter()
        .filter(|(_, _, text)| text.lines().count() > 600)
        .map(|(file, _, text)| format!("src/{file}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
