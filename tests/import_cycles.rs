//! No two files of `src/` may import each other, directly or around a
//! circle: a circle means neither file can be read, tested or moved
//! without the other. The check reads every `crate::`, `super::` and
//! `self::` path (grouped `use` trees included), resolves it to the
//! deepest module file that exists, and looks for strongly connected
//! files. It runs on synthetic crates too, so it is known to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Module path of a file under `src` (`proxy/api.rs` and
/// `proxy/api/mod.rs` are both `proxy::api`; `lib.rs` is the root).
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("file under src").with_extension("");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(text: &str) -> Vec<Tok> {
    // Comments (doc links included) are not imports.
    let text: String = text
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Tok::Colons);
            i += 2;
            continue;
        }
        if !c.is_whitespace() {
            out.push(match c {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                _ => Tok::Other,
            });
        }
        i += 1;
    }
    out
}

/// Parses the path tree starting at `toks[i]` (an identifier); returns the
/// full paths it names and the index after it.
fn tree(toks: &[Tok], mut i: usize) -> (Vec<Module>, usize) {
    let mut segs: Module = Vec::new();
    while let Some(Tok::Ident(name)) = toks.get(i) {
        segs.push(name.clone());
        if toks.get(i + 1) != Some(&Tok::Colons) {
            return (vec![segs], i + 1);
        }
        match toks.get(i + 2) {
            Some(Tok::Ident(_)) => i += 2,
            Some(Tok::Open) => {
                let mut paths = Vec::new();
                i += 3;
                loop {
                    match toks.get(i) {
                        Some(Tok::Ident(_)) => {
                            let (subs, next) = tree(toks, i);
                            for sub in subs {
                                let mut full = segs.clone();
                                full.extend(sub.into_iter().filter(|s| s != "self"));
                                paths.push(full);
                            }
                            i = next;
                            // `x as y`: the alias is no path.
                            if toks.get(i) == Some(&Tok::Ident("as".into())) {
                                i += 2;
                            }
                        }
                        Some(Tok::Close) | None => return (paths, i + 1),
                        Some(_) => i += 1,
                    }
                }
            }
            _ => return (vec![segs], i + 2),
        }
    }
    (vec![segs], i)
}

/// The module paths (absolute, from the crate root) that `text`, the
/// source of module `here`, refers to.
fn references(here: &Module, text: &str) -> Vec<Module> {
    let toks = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let starts = matches!(&toks[i], Tok::Ident(k) if k == "crate" || k == "super" || k == "self")
            && toks.get(i + 1) == Some(&Tok::Colons)
            && (i == 0 || toks[i - 1] != Tok::Colons);
        if !starts {
            i += 1;
            continue;
        }
        let (paths, next) = tree(&toks, i);
        for mut segs in paths {
            // A bare `super::*` is almost always an inline `mod tests`
            // reaching its own file; a glob names no module here.
            if segs.len() < 2 {
                continue;
            }
            let mut base = match segs[0].as_str() {
                "crate" => Vec::new(),
                _ => here.clone(),
            };
            if segs[0] == "super" {
                base.pop();
            }
            segs.remove(0);
            while segs.first().is_some_and(|s| s == "super") {
                base.pop();
                segs.remove(0);
            }
            base.extend(segs);
            out.push(base);
        }
        i = next.max(i + 1);
    }
    out
}

/// Edges between the files of `src`, each file to the files it imports.
fn edges(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mods: BTreeMap<Module, PathBuf> = files.iter().map(|f| (module_of(src, f), f.clone())).collect();
    let mut edges = BTreeMap::new();
    for f in &files {
        let here = module_of(src, f);
        let text = std::fs::read_to_string(f).expect("readable source");
        let mut to = BTreeSet::new();
        for path in references(&here, &text) {
            // The deepest module the path names (the rest is an item).
            let target = (0..=path.len()).rev().find_map(|n| mods.get(&path[..n]));
            if let Some(t) = target.filter(|t| *t != f) {
                to.insert(t.clone());
            }
        }
        edges.insert(f.clone(), to);
    }
    edges
}

fn reachable(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>, from: &Path) -> BTreeSet<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_path_buf()];
    while let Some(f) = todo.pop() {
        for t in edges.get(&f).into_iter().flatten() {
            if seen.insert(t.clone()) {
                todo.push(t.clone());
            }
        }
    }
    seen
}

/// The circles: sets of two or more files that all reach each other.
fn cycles(src: &Path) -> Vec<Vec<String>> {
    let edges = edges(src);
    let reach: BTreeMap<_, _> = edges.keys().map(|f| (f.clone(), reachable(&edges, f))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for f in edges.keys() {
        if done.contains(f) {
            continue;
        }
        let circle: Vec<&PathBuf> = reach[f].iter().filter(|g| *g != f && reach[*g].contains(f)).collect();
        if circle.is_empty() {
            continue;
        }
        let mut names = vec![f.strip_prefix(src).unwrap_or(f).display().to_string()];
        for g in circle {
            done.insert(g.clone());
            names.push(g.strip_prefix(src).unwrap_or(g).display().to_string());
        }
        names.sort();
        out.push(names);
    }
    out
}

#[test]
fn no_file_of_src_is_in_an_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = cycles(&src);
    assert!(found.is_empty(), "import circles between files of src/: {found:#?}");
    // The check saw the crate's real imports, not an empty graph.
    let edges = edges(&src);
    let api = src.join("proxy/api.rs");
    assert!(
        edges[&api].contains(&src.join("proxy/approvals.rs")),
        "{:?}",
        edges[&api]
    );
}

/// A scratch crate under the target dir (never outside the checkout).
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("import_cycles").join(name);
    let _ = std::fs::remove_dir_all(&root);
    for (path, text) in files {
        let p = root.join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("scratch dir");
        std::fs::write(&p, text).expect("scratch file");
    }
    root.join("src")
}

#[test]
fn a_two_file_circle_through_a_grouped_use_is_found() {
    let src = scratch(
        "grouped",
        &[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::Thing;\npub struct Other;\n"),
            ("b.rs", "use super::{a::{self, Other as O}, c};\npub struct Thing;\n"),
        ],
    );
    assert_eq!(cycles(&src), vec![vec!["a.rs".to_owned(), "b.rs".to_owned()]]);
}

#[test]
fn a_circle_through_a_nested_module_and_super_super_is_found() {
    let src = scratch(
        "nested",
        &[
            ("lib.rs", "mod a;\nmod c;\n"),
            ("a.rs", "fn f() { crate::c::d::g(); }\n"),
            ("c.rs", "pub mod d;\n"),
            ("c/d.rs", "use super::super::a;\npub fn g() {}\n"),
        ],
    );
    assert_eq!(cycles(&src), vec![vec!["a.rs".to_owned(), "c/d.rs".to_owned()]]);
}

#[test]
fn a_chain_and_commented_imports_are_no_circle() {
    let src = scratch(
        "chain",
        &[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::X;\n"),
            ("b.rs", "use crate::c::Y;\n/// See [`crate::a`].\npub struct X;\n"),
            (
                "c.rs",
                "// use crate::a;\npub struct Y;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
            ),
        ],
    );
    assert!(cycles(&src).is_empty(), "{:?}", cycles(&src));
    assert_eq!(edges(&src)[&src.join("a.rs")].len(), 1);
}
