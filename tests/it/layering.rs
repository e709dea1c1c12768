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

// ------------------------------------------------------------------ files

/// A source file's module path (`src/daemon/tell.rs` → `["daemon", "tell"]`; the crate roots → `[]`).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// The file of module `path`, if it has one of its own.
fn file_of(path: &[String]) -> Option<PathBuf> {
    if path.is_empty() {
        return Some(src().join("lib.rs"));
    }
    let base = path.iter().fold(src(), |p, s| p.join(s));
    let flat = base.with_extension("rs");
    let dir = base.join("mod.rs");
    [flat, dir].into_iter().find(|p| p.is_file())
}

/// `(module, name)` → the child module a module's `pub use child::{name, …};` takes `name` from.
type Reexports = BTreeMap<(Vec<String>, String), Vec<String>>;

/// Every `pub use child::…;` of every file: a name a module re-exports is defined in that child.
fn reexports(files: &[PathBuf]) -> Reexports {
    let mut out = Reexports::new();
    for f in files {
        let here = module_path(f);
        let text = code(f);
        for stmt in text.split(';') {
            let t = stmt.trim_start();
            let Some(rest) = ["pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| t.strip_prefix(p))
            else {
                continue;
            };
            let Some((child, names)) = rest.split_once("::") else {
                continue;
            };
            let child_path = [here.clone(), vec![child.trim().to_string()]].concat();
            if file_of(&child_path).is_none() {
                continue;
            }
            for n in names
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .split(',')
            {
                let n = n.rsplit(" as ").next().unwrap_or(n).trim();
                if !n.is_empty() && !n.contains("::") {
                    out.insert((here.clone(), n.to_string()), child_path.clone());
                }
            }
        }
    }
    out
}

/// The file a path names, from module `base`: the deepest module along `segs` that has a file, or the
/// child a module re-exports the name from.
fn resolve(re: &Reexports, base: &[String], segs: &[&str]) -> Option<PathBuf> {
    let mut cur = base.to_vec();
    let mut last = file_of(&cur);
    for s in segs {
        if let Some(f) = file_of(&[cur.clone(), vec![s.to_string()]].concat()) {
            cur.push(s.to_string());
            last = Some(f);
        } else if let Some(child) = re.get(&(cur.clone(), s.to_string())) {
            return file_of(child).or(last);
        } else {
            break;
        }
    }
    last
}

/// The code of a file that is not a test: comment lines and a trailing `#[cfg(test)] mod tests { … }`
/// left out.
fn non_test_code(path: &Path) -> String {
    let text = code(path);
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The files `file` imports: every `crate::…`, `super::…`, `self::…` path, and every path through a
/// child module it declares (`mod tell;` … `tell::X`), resolved to the file of the deepest module named;
/// `use a::{b, c::d}` groups resolved one by one.
fn file_imports(file: &Path, re: &Reexports) -> BTreeSet<PathBuf> {
    // A re-export exposes a child's name; it is not a use of it.
    let text: String = non_test_code(file)
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !["pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .any(|p| t.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let here = module_path(file);
    let children: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("pub ")
                .or_else(|| l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect();
    // Identifiers and `::` are ASCII: byte offsets next to them are char boundaries.
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i])
            || (i > 0 && (ident(bytes[i - 1]) || matches!(bytes[i - 1], b':' | b'$')))
        {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let head = &text[start..i];
        if !text[i..].starts_with("::") {
            continue;
        }
        let base: Vec<String> = match head {
            "crate" => Vec::new(),
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            "self" => here.clone(),
            h if children.contains(h) => [here.clone(), vec![h.to_string()]].concat(),
            _ => continue,
        };
        let rest = &text[i + 2..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for part in body.split(',') {
                let segs: Vec<&str> = part.trim().split("::").filter(|x| !x.is_empty()).collect();
                out.extend(resolve(re, &base, &segs));
            }
        } else {
            let end = rest
                .bytes()
                .position(|b| !(ident(b) || b == b':'))
                .unwrap_or(rest.len());
            let segs: Vec<&str> = rest[..end].split("::").filter(|x| !x.is_empty()).collect();
            out.extend(resolve(re, &base, &segs));
        }
    }
    out.remove(file);
    out
}

/// True when one of `a` and `b` is a module's root file (`mod.rs`, `x.rs` beside a folder `x/`, `lib.rs`)
/// and the other a file of one of its own children: the root declares its children and holds what they
/// share; that pair is the module's structure, not an import between two files.
fn root_and_child(a: &Path, b: &Path) -> bool {
    let is_root =
        |f: &Path| f.ends_with("mod.rs") || f.ends_with("lib.rs") || f.with_extension("").is_dir();
    let (ma, mb) = (module_path(a), module_path(b));
    (is_root(a) && mb.len() == ma.len() + 1 && mb.starts_with(&ma))
        || (is_root(b) && ma.len() == mb.len() + 1 && ma.starts_with(&mb))
}

/// Every library file (not `main.rs`) → the files it imports (a module's root and its own children
/// left out: [`root_and_child`]).
fn file_graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let re = reexports(&files);
    let name = |p: &Path| p.strip_prefix(src()).unwrap().display().to_string();
    files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| {
            let to = file_imports(f, &re)
                .into_iter()
                .filter(|t| !root_and_child(f, t))
                .map(|t| name(&t))
                .collect();
            (name(f), to)
        })
        .collect()
}

/// Files import each other in one direction only: no two files of a folder (or of two folders) need each
/// other, directly or through others. A module's root file and its own children are its structure and
/// are left out; a name a root re-exports counts as its child's.
#[test]
fn files_import_each_other_in_one_direction_only() {
    let g = file_graph();
    assert!(
        g.get("daemon/steps.rs")
            .is_some_and(|d| d.contains("daemon/say.rs")),
        "read the wrong tree: {g:?}"
    );
    let mut cycles: Vec<String> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for f in g.keys() {
        if let Some(c) = cycle_through(&g, f) {
            let key: BTreeSet<String> = c.iter().cloned().collect();
            if seen.insert(key.into_iter().collect::<Vec<_>>().join(" ")) {
                cycles.push(c.join(" → "));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        cycles.join("\n")
    );
}

/// `main.rs` parses the command line and hands over: under 80 lines.
#[test]
fn main_is_thin() {
    let lines = std::fs::read_to_string(src().join("main.rs"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines < 80,
        "src/main.rs has {lines} lines: the commands belong in the `app` layer"
    );
}

/// Functions longer than this are split into named steps.
const LONGEST_FN: usize = 100;

/// Functions allowed to be longer, each with why.
const LONG_FNS: &[(&str, &str)] = &[];

/// Every non-test function of `src/` with its line count (rustfmt's layout: a function ends at the
/// first `}` with its own indentation).
fn function_lengths() -> Vec<(String, usize)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut out = Vec::new();
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = non_test_code(&f);
        let lines: Vec<&str> = text.lines().collect();
        let name_of = |l: &str| -> Option<(usize, String)> {
            let t = l.trim_start();
            let indent = l.len() - t.len();
            let mut t = t;
            for p in [
                "pub(crate) ",
                "pub(super) ",
                "pub ",
                "const ",
                "async ",
                "unsafe ",
            ] {
                t = t.strip_prefix(p).unwrap_or(t);
            }
            let rest = t.strip_prefix("fn ")?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            Some((indent, name))
        };
        for (i, l) in lines.iter().enumerate() {
            let Some((indent, name)) = name_of(l) else {
                continue;
            };
            // A declaration without a body (a trait's) ends in `;` before any `{`.
            let Some(open) = lines[i..]
                .iter()
                .position(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'))
            else {
                continue;
            };
            if lines[i + open].trim_end().ends_with(';') {
                continue;
            }
            let close = format!("{}}}", " ".repeat(indent));
            if let Some(end) = lines[i + open..].iter().position(|l| *l == close) {
                let rel = f.strip_prefix(src()).unwrap().display();
                out.push((format!("{rel}::{name}"), open + end + 1));
            }
        }
    }
    out
}

#[test]
fn no_function_outside_tests_is_longer_than_a_screenful_or_two() {
    let long: Vec<String> = function_lengths()
        .into_iter()
        .filter(|(n, len)| *len >= LONGEST_FN && !LONG_FNS.iter().any(|(x, _)| x == n))
        .map(|(n, len)| format!("{n}: {len} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "functions of {LONGEST_FN} lines or more (split them into named steps, or list one in LONG_FNS with why):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_file_checks_see_what_they_look_for() {
    let g = file_graph();
    // `use super::{Daemon, say}` in a child: its sibling `say.rs` is an import, its root is structure.
    assert!(
        g["daemon/tell.rs"].contains("daemon/say.rs"),
        "{:?}",
        g["daemon/tell.rs"]
    );
    assert!(
        !g["daemon/tell.rs"].contains("daemon/mod.rs"),
        "{:?}",
        g["daemon/tell.rs"]
    );
    // A name a root re-exports is its child's: `super::error::AppError`, `crate::config::ConfigError`.
    assert!(
        g["app/check.rs"].contains("app/error.rs"),
        "{:?}",
        g["app/check.rs"]
    );
    assert!(
        g["config/db.rs"].contains("config/error.rs"),
        "{:?}",
        g["config/db.rs"]
    );
    // `time::ms` is three lines, from `pub fn` to its closing brace.
    let lengths = function_lengths();
    let ms = lengths.iter().find(|(n, _)| n == "time.rs::ms");
    assert_eq!(ms.map(|(_, len)| *len), Some(3), "{lengths:?}");
}
