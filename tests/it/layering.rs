//! The direction of dependencies, checked on the source: no import cycle between the crate's modules, a
//! pure engine, and the layers that must not reach up (`scheduler` and `ops` never import `daemon`; `time`
//! imports nothing of the crate, `cli` only the table of config keys). Reads `src/` as text: `crate::<module>` in code (comments
//! ignored) is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comment lines.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::<name>` in `text`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .filter(|(i, _)| {
            // `dirwatcher::` or `$crate::` are not ours; a preceding identifier character means another path.
            !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`engine/agenda.rs` → `engine`); `None` for the crate roots.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

fn graph() -> (Graph, BTreeMap<String, Vec<PathBuf>>) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let (mut g, mut by_module) = (Graph::new(), BTreeMap::<String, Vec<PathBuf>>::new());
    for f in files {
        let Some(m) = module_of(&f) else { continue };
        let refs = crate_refs(&code(&f));
        let deps = g.entry(m.clone()).or_default();
        deps.extend(refs.into_iter().filter(|r| *r != m));
        by_module.entry(m).or_default().push(f);
    }
    (g, by_module)
}

/// A cycle through `start`, if there is one (depth-first search for a path back to it).
fn cycle_through(g: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        g: &Graph,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(g, start, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_string());
        path
    })
}

#[test]
fn modules_import_each_other_in_one_direction_only() {
    let (g, _) = graph();
    assert!(
        g.contains_key("engine") && g.contains_key("daemon"),
        "read the wrong tree: {g:?}"
    );
    let cycles: Vec<String> = g
        .keys()
        .filter_map(|m| cycle_through(&g, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_engine_is_pure() {
    let (g, files) = graph();
    let allowed: BTreeSet<String> = ["time"].map(String::from).into();
    let bad: Vec<&String> = g["engine"].difference(&allowed).collect();
    assert!(
        bad.is_empty(),
        "the engine imports {bad:?}: it must decide, not do"
    );
    for f in &files["engine"] {
        let text = code(f);
        for io in [
            "std::fs",
            "std::process",
            "std::net",
            "std::env",
            "SystemTime",
            "Instant",
            "Clock",
        ] {
            assert!(
                !text.contains(io),
                "{} uses `{io}`: the engine must not touch the outside world",
                f.display()
            );
        }
    }
}

#[test]
fn lower_layers_do_not_reach_up() {
    let (g, _) = graph();
    for low in [
        "scheduler",
        "ops",
        "engine",
        "ledger",
        "scan",
        "process",
        "outcome",
        "config",
        "metrics",
    ] {
        assert!(!g[low].contains("daemon"), "`{low}` imports `daemon`");
    }
    assert!(
        g["time"].is_empty(),
        "`time` must import nothing of the crate, imports {:?}",
        g["time"]
    );
    // The command line is a leaf too, except for the table of config keys its help text is built from.
    let cli: Vec<&String> = g["cli"].iter().filter(|m| *m != "config").collect();
    assert!(
        cli.is_empty(),
        "`cli` must import nothing of the crate but `config`, imports {cli:?}"
    );
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle_through(&g, "a"), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle_through(&g, "a").unwrap().join(" → "), "a → b → c → a");
    assert_eq!(
        crate_refs("use crate::engine::X; dirwatcher::ledger; $crate::y; crate::time::ms()"),
        ["engine", "time"].map(String::from).into()
    );
}
