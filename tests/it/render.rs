//! The lesson site and the slides as a person sees them: built (mdBook for
//! lessons/, Marp for slides/), every asset checked to be on disk (nothing from a
//! CDN: both work offline), opened in headless Chromium, the first page
//! photographed (target/screenshots/, to look at) and each page's title found in
//! the page Chromium rendered. Needs chromium and npm (test.sh installs them);
//! mdBook is built from crates.io into target/tools by scripts/build-lessons.sh.

use crate::support;
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
        || !support::installed_or_skip("dot", "apt-get install graphviz", what)
    {
        return;
    }
    // mdBook may still be building in the background (test.sh starts it): wait
    // for it first, then render alone (support::serial), Chromium being heavy.
    let tools = Command::new("bash")
        .arg(repo().join("scripts/build-lessons.sh"))
        .arg("--tools")
        .output()
        .unwrap();
    assert!(
        tools.status.success(),
        "scripts/build-lessons.sh --tools: {}",
        support::err(&tools)
    );
    let _alone = support::serial();
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

    // Every diagram is drawn, in its lesson and on the slides.
    let diagrams: Vec<String> = std::fs::read_dir(repo().join("lessons/diagrams"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".dot")
                .map(String::from)
        })
        .collect();
    assert!(diagrams.len() >= 9, "{diagrams:?}");
    let deck_html = std::fs::read_to_string(&slides).unwrap();
    for d in &diagrams {
        let svg = std::fs::read_to_string(book.join(format!("diagrams/{d}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<text"), "{d}.svg");
        let lesson = std::fs::read_dir(&book)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".html"))
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains(&format!("diagrams/{d}.svg"))
            });
        assert!(lesson, "no lesson shows {d}.svg");
        assert!(
            deck_html.contains(&format!("src=\"diagrams/{d}.svg\"")),
            "no slide shows {d}.svg"
        );
    }
    let dom = support::text(&chromium(&["--dump-dom"], &book.join("05-network.html")));
    assert!(
        dom.contains("<img src=\"diagrams/05-network.svg\""),
        "the diagram of step 5"
    );

    assets_are_local(&slides);
    renders_with_title(&slides, "Containers from first principles", "slides.png");
    nothing_overflows(&slides);
    // Inner slides, to look at: a diagram, and a command slide of step 5.
    let deck = std::fs::read_to_string(repo().join("slides/deck.md")).unwrap();
    for (heading, shot) in [
        ("# Step 5 · network namespace", "slide-diagram.png"),
        ("# Step 5 by hand · a second terminal", "slide-commands.png"),
        (
            "# Step 8 by hand · in the container: more masks",
            "slide-small.png",
        ),
    ] {
        let n = slide_number(&deck, heading);
        photographed(&slides, n, shot);
    }
}

/// The number of the slide (from 1) whose text holds `heading`.
fn slide_number(deck: &str, heading: &str) -> usize {
    // The front matter sits between the first two `---` lines.
    let body = deck.splitn(3, "---\n").nth(2).unwrap();
    body.split("\n---\n")
        .position(|s| s.contains(heading))
        .unwrap_or_else(|| panic!("no slide {heading:?}"))
        + 1
}

/// A slide of the deck, photographed as a projector shows it.
fn photographed(deck: &Path, n: usize, shot: &str) {
    let png = repo().join("target/screenshots").join(shot);
    let _ = std::fs::remove_file(&png);
    let url = format!("{}#{n}", deck.display());
    let out = chromium(
        &[&format!("--screenshot={}", png.display())],
        Path::new(&url),
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "slide {n}: screenshot of {size} bytes: {}",
        support::err(&out)
    );
}

/// No slide's content runs past its edges: every element inside its section,
/// no block of code wider than itself (its lines would be cut, or Marp would
/// shrink them), and no code smaller than 14 px (unreadable when projected).
/// Measured by a script in a copy of the deck, which writes what it found into
/// the page. (Marp turns `pre` into its own `marp-pre` element.)
fn nothing_overflows(deck: &Path) {
    let html = std::fs::read_to_string(deck).unwrap();
    let probe = r#"<script>
window.addEventListener('load', () => {
  const over = [];
  // Marp can shrink a block of code that is too wide to fit (a transform its
  // font size does not show): its first letter is then smaller than its font.
  const shrunk = code => {
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    const text = walker.nextNode();
    if (!text || text.length === 0) return false;
    const range = document.createRange();
    range.setStart(text, 0);
    range.setEnd(text, 1);
    const glyph = range.getBoundingClientRect().height;
    return glyph < parseFloat(getComputedStyle(code).fontSize) * 0.95;
  };
  document.querySelectorAll('section').forEach((s, i) => {
    const r = s.getBoundingClientRect();
    const bad = [...s.querySelectorAll('*')].some(el => {
      const e = el.getBoundingClientRect();
      if (e.width === 0 && e.height === 0) return false;
      const block = el.tagName === 'PRE' || el.tagName === 'MARP-PRE';
      return e.bottom > r.bottom + 1 || e.right > r.right + 1
        || (block && el.scrollWidth > el.clientWidth + 1)
        || (el.tagName === 'CODE' && el.closest('pre, marp-pre')
            && (parseFloat(getComputedStyle(el).fontSize) < 14 || shrunk(el)));
    });
    if (bad) over.push(i + 1);
  });
  document.body.setAttribute('data-sections', document.querySelectorAll('section').length);
  document.body.setAttribute('data-overflow', over.join(','));
});
</script></body>"#;
    let copy = deck.with_file_name("overflow-check.html");
    std::fs::write(&copy, html.replacen("</body>", probe, 1)).unwrap();
    let dom = support::text(&chromium(
        &["--dump-dom", "--virtual-time-budget=3000"],
        &copy,
    ));
    let _ = std::fs::remove_file(&copy);
    let attr = |name: &str| {
        dom.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(String::from)
    };
    let sections: usize = attr("data-sections")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        sections >= 40,
        "the deck has {sections} slides: a day needs more"
    );
    assert_eq!(
        attr("data-overflow").as_deref(),
        Some(""),
        "these slides overflow (the deck is laid out for Arial's widths: is fonts-liberation installed? fc-match Arial says which font stands in)"
    );
}
