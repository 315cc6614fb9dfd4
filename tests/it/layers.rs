//! The house as drawn: DESIGN.md's layer table, checked against every `use crate::...`
//! in `src/`. A module may import only from its own layer or below, and the top-level
//! modules form no circle; `main.rs` stays a thin command line, no file grows past what
//! a newcomer can read, and library code names its errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// DESIGN.md, "The pieces, in layers": each top-level module of `src/` and its layer.
/// The command line (`main.rs`, `cli/`) is the binary's, at layer 4, above all of these.
const LAYERS: &[(&str, u8)] = &[
    // 3: services and tools, the jobs users run. `serve` assembles intake and admin
    // into the running server.
    ("serve", 3),
    ("intake", 3),
    ("admin", 3),
    ("attestation", 3),
    ("replication", 3),
    ("fieldkit", 3),
    ("review", 3),
    ("witness", 3),
    // 2: durable state and the files that travel.
    ("store", 2),
    ("bundle", 2),
    // 1: bytes that must never change meaning.
    ("envelope", 1),
    ("log", 1),
    ("keys", 1),
    // 0: plain types and rules everyone shares.
    ("record", 0),
    ("durable", 0),
    ("config", 0),
    ("i18n", 0),
    ("form", 0),
    ("codename", 0),
    ("process", 0),
];

const MAX_MAIN_LINES: usize = 250;
const MAX_FILE_LINES: usize = 700;

/// One import arrow between top-level modules, and the files that draw it.
#[derive(Debug, Default)]
struct Graph {
    arrows: BTreeMap<(String, String), BTreeSet<String>>,
}

/// Source text without comments, so a comment that names `crate::x` draws no arrow.
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a source file names through `crate::`, including those in
/// `use crate::{a::X, b}` groups.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let source = strip_comments(source);
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
    };
    let mut rest = source.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        rest = after;
        let Some(group) = after.strip_prefix('{') else {
            let name = ident(after);
            if !name.is_empty() {
                found.insert(name);
            }
            continue;
        };
        // `crate::{a, b::{c, d}, e}`: the first name of each top-level item.
        let mut depth = 0usize;
        let mut start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    rest = &group[i..];
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                _ if start && (c.is_ascii_alphabetic() || c == '_') => {
                    found.insert(ident(&group[i..]));
                    start = false;
                }
                _ => {}
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file of `src/` belongs to: `store/index.rs` is `store`, `keys.rs` is
/// `keys`; `None` for the crate roots and the command line.
fn module_of(relative: &str) -> Option<String> {
    let top = relative.split('/').next()?;
    let name = top.strip_suffix(".rs").unwrap_or(top);
    match name {
        "lib" | "main" | "cli" => None,
        _ => Some(name.to_string()),
    }
}

/// The arrows drawn by `(relative path, source)` pairs.
fn graph_of(files: &[(String, String)]) -> Graph {
    let mut graph = Graph::default();
    for (relative, source) in files {
        let Some(from) = module_of(relative) else { continue };
        for to in imported_modules(source) {
            if to != from {
                graph.arrows.entry((from.clone(), to)).or_default().insert(relative.clone());
            }
        }
    }
    graph
}

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|&(_, layer)| layer)
}

/// Arrows from a lower layer up to a higher one, and to modules the table lacks.
fn back_up_arrows(graph: &Graph) -> Vec<String> {
    let mut wrong = Vec::new();
    for ((from, to), files) in &graph.arrows {
        match (layer(from), layer(to)) {
            (Some(a), Some(b)) if a >= b => {}
            (a, b) => wrong.push(format!(
                "{from} (layer {}) imports {to} (layer {}) in {files:?}",
                a.map_or("none".into(), |l| l.to_string()),
                b.map_or("none".into(), |l| l.to_string()),
            )),
        }
    }
    wrong
}

/// Circles between top-level modules (strongly connected groups of more than one).
fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    let modules: BTreeSet<&String> = graph.arrows.keys().flat_map(|(a, b)| [a, b]).collect();
    let reaches = |start: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(m) = todo.pop() {
            for (from, to) in graph.arrows.keys() {
                if *from == m && seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        modules.iter().map(|m| (*m, reaches(m))).collect();
    let mut circles: Vec<BTreeSet<String>> = Vec::new();
    for m in &modules {
        let circle: BTreeSet<String> = modules
            .iter()
            .filter(|o| reach[*m].contains(**o) && reach[**o].contains(*m))
            .map(|o| (*o).clone())
            .collect();
        if circle.len() > 1 && !circles.contains(&circle) {
            circles.push(circle);
        }
    }
    circles
}

fn source_tree() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let relative = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (relative, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn every_import_keeps_to_the_layers_of_the_design_and_no_module_circles_back() {
    let tree = source_tree();
    let graph = graph_of(&tree);
    assert!(graph.arrows.len() > 20, "the scan found too few imports to be reading src/");
    let wrong = back_up_arrows(&graph);
    assert!(wrong.is_empty(), "imports that break DESIGN.md's layers:\n{}", wrong.join("\n"));
    let circles = cycles(&graph);
    assert!(circles.is_empty(), "top-level modules that import each other: {circles:?}");
    // Every top-level module is in the table, so a new one has to be placed on purpose.
    for (relative, _) in &tree {
        if let Some(module) = module_of(relative) {
            assert!(layer(&module).is_some(), "{relative}: module {module} has no layer");
        }
    }
}

#[test]
fn the_checker_catches_an_import_up_a_layer_and_a_circle() {
    let file = |path: &str, source: &str| (path.to_string(), source.to_string());
    let tree = [
        // Ground floor reaching up into storage, through a group and a path.
        file("record.rs", "use crate::{config::Limits, store::{Store, Usage}};\n"),
        file("keys.rs", "fn f() { crate::envelope::seal(); }\n// crate::intake::x in a comment\n"),
        file("envelope/mod.rs", "use crate::keys::Recipients;\n"),
        file("store/mod.rs", "use crate::record::Hour;\n"),
    ];
    let graph = graph_of(&tree);
    let wrong = back_up_arrows(&graph);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].starts_with("record (layer 0) imports store (layer 2)"), "{wrong:?}");
    let circles = cycles(&graph);
    assert_eq!(circles.len(), 2, "{circles:?}");
    assert!(circles.iter().any(|c| c.contains("keys") && c.contains("envelope")));
    assert!(circles.iter().any(|c| c.contains("record") && c.contains("store")));
    assert!(!graph.arrows.contains_key(&("keys".into(), "intake".into())));
}

#[test]
fn the_command_line_is_thin_and_no_file_is_too_long_to_read() {
    let tree = source_tree();
    let mut long = Vec::new();
    for (relative, source) in &tree {
        let lines = source.lines().count();
        let max = if relative == "main.rs" { MAX_MAIN_LINES } else { MAX_FILE_LINES };
        if lines > max {
            long.push(format!("{relative}: {lines} lines (at most {max})"));
        }
    }
    assert!(long.is_empty(), "files to split:\n{}", long.join("\n"));
}

#[test]
fn library_code_names_its_errors_instead_of_returning_strings() {
    let mut found = Vec::new();
    for (relative, source) in source_tree() {
        if relative == "main.rs" || relative.starts_with("cli/") {
            continue;
        }
        let code = strip_comments(&source);
        for (n, line) in code.lines().enumerate() {
            let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if squeezed.contains(",String>") && squeezed.contains("Result<") {
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "Result<_, String> in library code:\n{}", found.join("\n"));
}
