//! The lesson site and the slides as a person sees them: built (mdBook for
//! lessons/, Marp for slides/), every asset checked to be on disk (nothing from a
//! CDN: both work offline), opened in headless Chromium, the first page
//! photographed (target/screenshots/, to look at) and each page's title found in
//! the page Chromium rendered. Needs chromium and npm (test.sh installs them);
//! mdBook is built from crates.io into target/tools by scripts/build-lessons.sh.

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(script: &str) {
    let out = Command::new("bash")
        .arg(repo().join(script))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        support::text(&out),
        support::err(&out)
    );
}

/// Chromium, headless, on a local file.
fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,720",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

/// Every stylesheet, script, image and font a page loads is a file next to it
/// (and, for stylesheets, every url() in them): nothing missing, nothing fetched.
fn assets_are_local(page: &Path) {
    let mut to_read = vec![page.to_path_buf()];
    let mut seen = Vec::new();
    while let Some(file) = to_read.pop() {
        if seen.contains(&file) {
            continue;
        }
        seen.push(file.clone());
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let is_css = file.extension().is_some_and(|e| e == "css");
        let mut refs = Vec::new();
        if is_css {
            refs.extend(
                text.split("url(")
                    .skip(1)
                    .filter_map(|r| r.split(')').next()),
            );
        } else {
            for tag in text.split('<').skip(1) {
                let name = tag.split([' ', '>']).next().unwrap_or_default();
                let attr = match name {
                    "script" | "img" => " src=\"",
                    "link" => " href=\"",
                    _ => continue,
                };
                if let Some(v) = tag.split(attr).nth(1).and_then(|r| r.split('"').next()) {
                    refs.push(v);
                }
            }
        }
        for r in refs {
            let r = r.trim_matches(['\'', '"', ' ']);
            if r.is_empty() || r.starts_with("data:") || r.starts_with('#') {
                continue;
            }
            assert!(
                !r.starts_with("http:") && !r.starts_with("https:") && !r.starts_with("//"),
                "{} loads {r} from the network: it would not work offline",
                file.display()
            );
            let path = r.split(['?', '#']).next().unwrap();
            let target: PathBuf = file.parent().unwrap().join(path);
            assert!(
                target.exists(),
                "{} needs {r}, which is missing",
                file.display()
            );
            if target.extension().is_some_and(|e| e == "css") {
                to_read.push(target);
            }
        }
    }
}

/// The page renders in Chromium with `title` in a heading, and a screenshot of it
/// is written (and is not a blank page).
fn renders_with_title(page: &Path, title: &str, shot: &str) {
    let dom = chromium(&["--dump-dom"], page);
    let dom = support::text(&dom);
    assert!(
        dom.split("<h1").skip(1).any(|h| h.contains(title)),
        "{}: no heading {title:?} in the page Chromium rendered",
        page.display()
    );
    let dir = repo().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(shot);
    let _ = std::fs::remove_file(&png);
    let out = chromium(&[&format!("--screenshot={}", png.display())], page);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    // A blank 1280x720 page compresses to a few kilobytes; text does not.
    assert!(
        size > 20_000,
        "{}: screenshot of {} bytes: {}",
        page.display(),
        size,
        support::err(&out)
    );
}

#[test]
fn the_lesson_site_and_the_slides_render_offline() {
    let what = "rendering the lessons and slides";
    if !support::installed_or_skip("chromium", "apt-get install chromium", what)
        || !support::installed_or_skip("npm", "apt-get install npm", what)
    {
        return;
    }
    run("scripts/build-lessons.sh");
    run("slides/build.sh");
    let book = repo().join("target/book");
    let slides = repo().join("slides/dist/index.html");

    assets_are_local(&book.join("index.html"));
    renders_with_title(
        &book.join("index.html"),
        "Introduction: there is no",
        "lessons.png",
    );
    for (file, title) in [
        ("01-chroot.html", "Step 1 · chroot"),
        ("03-pid-namespace.html", "Step 3 · pid namespace and /proc"),
        ("07-overlay.html", "Step 7 · overlay filesystem"),
    ] {
        let dom = support::text(&chromium(&["--dump-dom"], &book.join(file)));
        assert!(dom.contains(title), "{file}: {title:?} not rendered");
    }

    assets_are_local(&slides);
    renders_with_title(&slides, "Containers from first principles", "slides.png");
}
