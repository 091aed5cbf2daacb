//! Every relative link in the repository's Markdown resolves: the file (or
//! directory) exists, and a `#fragment` names a heading of the target the
//! way GitHub derives heading anchors. The README is a front page that
//! points into docs/, so a moved or renamed section must not leave a dead
//! link behind.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Directories that hold no documentation of ours (build output, installed
/// packages, caches, the demo's scratch state).
const SKIP_DIRS: &[&str] = &[".git", "target", "node_modules", ".venv", ".cache", "stepgate-demo"];

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !SKIP_DIRS.contains(&name.as_ref()) {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks and inline code spans: a `[x](y)`
/// inside code is an example, not a link.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (code
/// spans keep their text), spaces become hyphens; repeats get `-1`, `-2`.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(if *n == 0 { slug.clone() } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// Dead relative links in the Markdown files under `root`, as
/// `file: target (why)`.
fn dead_links(root: &Path) -> Vec<String> {
    let link = regex::Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).expect("regex");
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    files.sort();
    let mut dead = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read markdown");
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        for cap in link.captures_iter(&prose(&text)) {
            let target = &cap[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target, None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a file has a parent").join(path)
            };
            if !resolved.exists() {
                dead.push(format!("{shown}: {target} (no such file)"));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            let is_markdown = resolved.extension().is_some_and(|e| e == "md");
            if !is_markdown {
                dead.push(format!("{shown}: {target} (fragment into a non-Markdown file)"));
                continue;
            }
            let body = fs::read_to_string(&resolved).expect("read link target");
            if !anchors(&body).iter().any(|a| a == fragment) {
                dead.push(format!("{shown}: {target} (no such heading)"));
            }
        }
    }
    dead
}

#[test]
fn every_relative_markdown_link_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dead = dead_links(root);
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn the_readme_links_to_every_docs_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let mut pages = Vec::new();
    markdown_files(&root.join("docs"), &mut pages);
    assert!(!pages.is_empty(), "docs/ has no pages");
    for page in pages {
        let rel = page.strip_prefix(root).expect("under root");
        let rel = rel.to_string_lossy();
        assert!(
            readme.contains(&format!("]({rel})")),
            "README.md does not link to {rel}"
        );
    }
}

/// The checker itself: it must find a missing file, a missing heading and
/// a fragment into a non-Markdown file, and accept what GitHub accepts.
#[test]
fn the_checker_catches_dead_links() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("doc_links_fixture");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("docs")).expect("mkdir");
    fs::write(
        dir.join("docs/guide.md"),
        "# Guide\n\n## Gateway endpoints (prefix `/.stepup/`, never forwarded)\n\n## Notes\n\n## Notes\n",
    )
    .expect("write");
    fs::write(dir.join("notes.txt"), "x").expect("write");
    fs::write(
        dir.join("README.md"),
        "[ok](docs/guide.md) [ok](docs/guide.md#gateway-endpoints-prefix-stepup-never-forwarded) \
         [ok](docs/guide.md#notes-1) [ok](#readme) [ok](https://example.com/x.md#y) \
         `[code](missing.md)`\n\n# Readme\n\n\
         [dead](docs/missing.md) [dead](docs/guide.md#no-such) [dead](notes.txt#x) [dead](#nowhere)\n\
         ```\n[fenced](gone.md)\n```\n",
    )
    .expect("write");
    let dead = dead_links(&dir);
    assert_eq!(
        dead,
        vec![
            "README.md: docs/missing.md (no such file)",
            "README.md: docs/guide.md#no-such (no such heading)",
            "README.md: notes.txt#x (fragment into a non-Markdown file)",
            "README.md: #nowhere (no such heading)",
        ],
    );
}

/// The systemd unit's `Documentation=` pages are the repository's own docs
/// under the directory its install comment copies them to, so
/// `systemctl help stepgate` opens pages that exist.
#[test]
fn the_systemd_unit_names_docs_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = fs::read_to_string(root.join("deploy/stepgate.service")).expect("deploy/stepgate.service");
    assert!(
        unit.contains("install -D -m 0644 -t /usr/share/doc/stepgate README.md docs/*.md"),
        "the unit says how its docs are installed"
    );
    let uris: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(uris.len() >= 2, "README and the operations page: {uris:?}");
    for uri in &uris {
        let name = uri
            .strip_prefix("file:///usr/share/doc/stepgate/")
            .unwrap_or_else(|| panic!("{uri} is not one of the installed docs"));
        let source = if name == "README.md" {
            root.join(name)
        } else {
            root.join("docs").join(name)
        };
        assert!(source.is_file(), "{uri}: {} does not exist", source.display());
    }
    assert!(uris.iter().any(|u| u.ends_with("/operations.md")), "{uris:?}");
}
