//! The crate's layers import only downward, and no files (or folders) import each other in a circle.
//!
//! Read from the source, not the compiler: every `crate::…`, `super::…` and `self::…` path in a file's code, and in
//! a parent every path through one of its children (`plan::merge`, `pub use train::Train`), is an import of the
//! module it names; comments and a file's unit tests (`#[cfg(test)] mod tests` at its end) are skipped. A parent
//! is no exception: a `mod.rs` that re-exports a child which imports the `mod.rs` back is a circle, so a front door
//! holds only `mod` items and re-exports, and children import the sibling that defines what they use. The layer table is the one in `src/lib.rs` and
//! `ARCHITECTURE.md`; keep the three in step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;

/// Top to bottom: a module may import its own layer (without cycles) and the ones below it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["app"],
    &["runs"],
    &["exec"],
    &["spec"],
    &["stages"],
    &["store"],
    &["fingerprint"],
    &["music"],
    &["artifact"],
    &["nn"],
    &["problem", "paths", "interrupt", "exit", "stats"],
];

/// A source file as a module path (`exec::slurm` for `src/exec/slurm/mod.rs`), with its text.
struct File {
    module: Vec<String>,
    text: String,
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn layer_of(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|l| l.contains(&top.as_str()))
}

/// The code of a file: without `//` comments (a `//` inside a string literal is rare enough in this crate not to
/// matter; a false import would fail loudly, never hide one).
fn code(text: &str) -> String {
    // A file's unit tests (an inline `mod tests` at its end) are not part of the module's design, and their
    // `super::` is the file itself.
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |end| &text[..end]);
    text.lines()
        .map(|line| line.find("//").map_or(line, |i| &line[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn skip_space(s: &[char], mut pos: usize) -> usize {
    while pos < s.len() && s[pos].is_whitespace() {
        pos += 1;
    }
    pos
}

/// The paths of a use tree at `pos` (`a::b`, `a::{b, c::d}`, `{self, x}`), each prefixed with `prefix`; and where it
/// ends.
fn use_tree(s: &[char], pos: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut pos = skip_space(s, pos);
    if s.get(pos) == Some(&'{') {
        let mut out = Vec::new();
        pos += 1;
        loop {
            pos = skip_space(s, pos);
            match s.get(pos) {
                None => return (out, pos),
                Some('}') => return (out, pos + 1),
                Some(',') => pos += 1,
                Some(_) => {
                    let (paths, end) = use_tree(s, pos, prefix.clone());
                    out.extend(paths);
                    // Past anything the tree did not read (`as name`).
                    pos = end;
                    while pos < s.len() && !matches!(s[pos], ',' | '}') {
                        pos += 1;
                    }
                }
            }
        }
    }
    let start = pos;
    while pos < s.len() && (s[pos].is_alphanumeric() || s[pos] == '_') {
        pos += 1;
    }
    let segment: String = s[start..pos].iter().collect();
    let mut path = prefix;
    if !segment.is_empty() && segment != "self" {
        path.push(segment);
    }
    if s.get(pos) == Some(&':') && s.get(pos + 1) == Some(&':') {
        return use_tree(s, pos + 2, path);
    }
    (vec![path], pos)
}

/// The modules a file names with `crate::` or `super::` (in `use` items and in paths), each the longest known
/// module the path begins with.
fn imports(file: &File, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let text: Vec<char> = code(&file.text).chars().collect();
    let parent = file.module[..file.module.len().saturating_sub(1)].to_vec();
    let children: Vec<&String> = modules
        .iter()
        .filter(|m| m.len() == file.module.len() + 1 && m.starts_with(&file.module))
        .map(|m| &m[m.len() - 1])
        .collect();
    let inline = inline_modules(&text);
    let mut out = BTreeSet::new();
    let mut pos = 0;
    while pos < text.len() {
        let at = |word: &str| {
            text[pos..]
                .iter()
                .take(word.len())
                .copied()
                .eq(word.chars())
        };
        // Not the tail of a longer name (`my_crate::`).
        let after_name = pos > 0 && (text[pos - 1].is_alphanumeric() || text[pos - 1] == '_');
        // After `::` a name is the middle of a longer path, read from its start.
        let after_path = pos > 1 && text[pos - 1] == ':' && text[pos - 2] == ':';
        let base = if after_name || after_path {
            None
        } else if at("crate::") {
            Some((7, Vec::new()))
        } else if at("super::") {
            // Inside an inline module (`mod defaults { … }`) `super` is this file's own module.
            Some((
                7,
                if inline[pos] {
                    file.module.clone()
                } else {
                    parent.clone()
                },
            ))
        } else if at("self::") {
            Some((6, file.module.clone()))
        } else {
            // A child of this module named by a relative path (`plan::merge`, `pub use train::Train`): a parent
            // using its children imports them like anyone else.
            children
                .iter()
                .find(|c| at(&format!("{c}::")))
                .map(|_| (0, file.module.clone()))
        };
        let Some((len, base)) = base else {
            pos += 1;
            continue;
        };
        let (paths, end) = use_tree(&text, pos + len, base);
        for path in paths {
            let mut best = Vec::new();
            for n in 0..=path.len() {
                if modules.contains(&path[..n].to_vec()) {
                    best = path[..n].to_vec();
                }
            }
            out.insert(best);
        }
        pos = end.max(pos + 1);
    }
    out.remove(&file.module);
    out
}

/// For each character of `text`, whether it is inside an inline module (`mod name { … }`).
fn inline_modules(text: &[char]) -> Vec<bool> {
    let mut inside = vec![false; text.len()];
    let mut pos = 0;
    while pos < text.len() {
        let starts_mod = text[pos..].starts_with(&['m', 'o', 'd', ' '])
            && (pos == 0 || !(text[pos - 1].is_alphanumeric() || text[pos - 1] == '_'));
        if !starts_mod {
            pos += 1;
            continue;
        }
        // `mod name {`: mark up to the matching brace; `mod name;` is a file of its own.
        let mut at = pos + 4;
        while at < text.len() && (text[at].is_alphanumeric() || text[at] == '_' || text[at] == ' ')
        {
            at += 1;
        }
        if at < text.len() && text[at] == '{' {
            let mut depth = 0;
            let mut end = at;
            while end < text.len() {
                match text[end] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                end += 1;
            }
            inside[at..end.min(text.len())].fill(true);
            pos = end;
        } else {
            pos = at;
        }
    }
    inside
}

/// Every problem: an import upward, a module in no layer, a circle of files or of folders.
fn problems(files: &[File]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in files {
        let targets = imports(file, &modules);
        let Some(from) = layer_of(&file.module) else {
            problems.push(format!(
                "`{}` is in no layer: add it to the table in tests/it/layers.rs, src/lib.rs and ARCHITECTURE.md",
                file.module.join("::")
            ));
            continue;
        };
        for target in &targets {
            match layer_of(target) {
                Some(to) if to < from => problems.push(format!(
                    "`{}` (layer {}) imports `{}` (layer {}), which is above it",
                    file.module.join("::"),
                    LAYERS[from].join("/"),
                    target.join("::"),
                    LAYERS[to].join("/"),
                )),
                Some(_) => {}
                None if target.is_empty() => {}
                None => problems.push(format!(
                    "`{}` imports `{}`, which is in no layer",
                    file.module.join("::"),
                    target.join("::")
                )),
            }
        }
        edges.insert(file.module.clone(), targets);
    }
    problems.extend(circles(&edges, "files"));
    // Folders: each module is in the folder of its file (`exec::slurm` for both files under `src/exec/slurm/`).
    let folder = |m: &Vec<String>| -> Vec<String> {
        if modules
            .iter()
            .any(|o| o.len() > m.len() && o.starts_with(m))
        {
            m.clone()
        } else {
            m[..m.len().saturating_sub(1)].to_vec()
        }
    };
    let mut folders: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, targets) in &edges {
        let f = folder(from);
        let entry = folders.entry(f.clone()).or_default();
        for t in targets {
            let t = folder(t);
            // A folder importing its parent's front door is an import; the parent's of its own children is not.
            if t != f && !(t.len() > f.len() && t.starts_with(&f)) {
                entry.insert(t);
            }
        }
    }
    problems.extend(circles(&folders, "folders"));
    problems
}

/// One problem per circle in `edges`.
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>, what: &str) -> Vec<String> {
    let mut graph = DiGraph::<String, ()>::new();
    let mut index = BTreeMap::new();
    for (from, targets) in edges {
        for m in std::iter::once(from).chain(targets) {
            index
                .entry(m.clone())
                .or_insert_with(|| graph.add_node(show(m)));
        }
    }
    for (from, targets) in edges {
        for t in targets {
            graph.add_edge(index[from], index[t], ());
        }
    }
    tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            let mut names: Vec<&str> = scc.iter().map(|&i| graph[i].as_str()).collect();
            names.sort();
            format!(
                "these {what} import each other in a circle: {}",
                names.join(", ")
            )
        })
        .collect()
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_string()
    } else {
        m.join("::")
    }
}

fn source_files() -> Vec<File> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap();
        // The binary's root and the library's root hold no logic of their own.
        if rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        files.push(File {
            module: module_of(rel),
            text: std::fs::read_to_string(path).unwrap(),
        });
    }
    files
}

#[test]
fn layers_import_only_downward_and_nothing_imports_in_a_circle() {
    let files = source_files();
    assert!(
        files.len() > 40,
        "found only {} source files under src/",
        files.len()
    );
    let problems = problems(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn file(module: &str, text: &str) -> File {
    File {
        module: module.split("::").map(str::to_string).collect(),
        text: text.to_string(),
    }
}

/// The check itself can fail: on made-up files it finds an upward import, circles (a parent and the child it
/// re-exports, which imports the parent back, included), an import inside a nested `use` group and a module outside
/// the table; it ignores comments, a file's unit tests, `super` inside an inline module, and a front door whose
/// children import only each other.
#[test]
fn the_layer_check_finds_upward_imports_and_circles() {
    let files = [
        file("store", "use crate::runs::manifest::Manifest;\n"),
        file("runs::manifest", "// use crate::cli::main;\n"),
        file("music::a", "use crate::music::b::X;\n"),
        file("music::b", "fn f() { crate::music::a::y(); }\n"),
        file("stages", "mod train;\npub use train::Train;\n"),
        file("stages::train", "use super::Stage;\n"),
        file(
            "nn",
            "use crate::{\n    paths,\n    stages::{Stage as S, self},\n};\n",
        ),
        file("widgets", "use crate::paths::write_atomic;\n"),
        file("exec", "mod plan;\nmod request;\npub use plan::merge;\n"),
        file(
            "exec::plan",
            "use super::request::Options;\nmod defaults {\n    use super::Hidden;\n}\n\
             #[cfg(test)]\nmod tests {\n    use crate::exec::Anything;\n}\n",
        ),
        file("exec::request", "pub struct Options;\n"),
    ];
    let found = problems(&files);
    let has = |needle: &str| found.iter().any(|p| p.contains(needle));
    assert!(
        has("`store` (layer store) imports `runs::manifest` (layer runs)"),
        "{found:#?}"
    );
    assert!(
        has("these files import each other in a circle: music::a, music::b"),
        "{found:#?}"
    );
    assert!(
        has("these files import each other in a circle: stages, stages::train"),
        "a parent re-exporting a child that imports it back is a circle: {found:#?}"
    );
    assert!(
        has("`nn` (layer nn) imports `stages` (layer stages)"),
        "{found:#?}"
    );
    assert!(has("`widgets` is in no layer"), "{found:#?}");
    assert!(!has("cli"), "a comment is not an import: {found:#?}");
    assert!(
        !has("exec"),
        "a front door over children that import each other is no circle: {found:#?}"
    );
    assert_eq!(found.len(), 5, "{found:#?}");
}
