//! The house's order, checked: every module is one step of the flow and
//! imports only the steps below it (see the module map in `lib.rs`). This
//! test reads the sources, so a new backward `use crate::...`, a module
//! missing from the order, or a file grown past the size the house keeps
//! fails `cargo test` rather than waiting for a reviewer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The steps from the bottom up: a module may use only those before it.
const ORDER: &[&str] = &[
    "hash",
    "text",
    "fs",
    "error",
    "manifest",
    "policy",
    "secrets",
    "audit",
    "arguments",
    "provenance",
    "egress",
    "sandbox",
    "plugin",
    "approval",
    "descriptor",
    "formats",
    "host",
    "mcp",
];

/// Longest source file the house keeps (tests included): past it, make a
/// folder with one file per concern.
const MAX_LINES: usize = 650;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the crate
/// roots, this test and the binary's `cli`).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" | "layering" | "cli" => None,
        _ => Some(name.to_string()),
    }
}

/// The modules `line` names as `crate::NAME`, outside comments; grouped
/// imports (`crate::{a, b}`) are named too.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let code = code.split(" //").next().unwrap_or(code);
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // e.g. `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
}

#[test]
fn imports_point_only_down_the_flow() {
    let rank: BTreeMap<&str, usize> = ORDER.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut backward = Vec::new();
    for file in files() {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let Some(&own) = rank.get(module.as_str()) else {
            panic!("module `{module}` is not in the order of layering.rs: place it");
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        for (n, line) in text.lines().enumerate() {
            for used in crate_paths(line) {
                if let Some(&other) = rank.get(used.as_str())
                    && other > own
                {
                    backward.push(format!(
                        "{}:{}: `{module}` uses `{used}`, a later step",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        backward.is_empty(),
        "backward imports:\n{}",
        backward.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_its_place() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches("pub ");
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .filter(|m| *m != "layering")
        .collect();
    assert!(!declared.is_empty(), "no modules found in lib.rs");
    for module in &declared {
        assert!(
            ORDER.contains(module),
            "module `{module}` is not in the order of layering.rs"
        );
    }
    for module in ORDER {
        assert!(
            declared.contains(module),
            "`{module}` is in the order but not a module of lib.rs"
        );
    }
}

#[test]
fn the_binary_uses_only_the_library_api() {
    let main = std::fs::read_to_string(src().join("main.rs")).expect("main.rs");
    assert!(
        !main.contains("#[path"),
        "main.rs compiles a library file a second time"
    );
    for file in files() {
        let relative = file.strip_prefix(src()).expect("under src");
        if relative.starts_with("cli") {
            let text = std::fs::read_to_string(&file).expect("readable");
            for (n, line) in text.lines().enumerate() {
                for used in crate_paths(line) {
                    assert_eq!(
                        used,
                        "cli",
                        "{}:{}: the CLI reaches `crate::{used}` instead of the library API",
                        file.display(),
                        n + 1
                    );
                }
            }
        }
    }
}

#[test]
fn no_source_file_outgrows_the_house() {
    let mut long = Vec::new();
    for file in files() {
        let lines = std::fs::read_to_string(&file)
            .expect("readable")
            .lines()
            .count();
        if lines > MAX_LINES {
            long.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

#[test]
fn crate_paths_are_found_in_code_not_comments() {
    assert_eq!(crate_paths("use crate::policy::Limits;"), ["policy"]);
    assert_eq!(
        crate_paths("use crate::{audit, egress::Tls};"),
        ["audit", "egress"]
    );
    assert_eq!(crate_paths("    let x = crate::text::cut(a, 1);"), ["text"]);
    assert!(crate_paths("/// See [`crate::host`].").is_empty());
    assert!(crate_paths("use mycrate::host;").is_empty());
}
