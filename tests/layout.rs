//! The layout rules of ARCHITECTURE.md, checked on the source itself:
//!
//! - no import cycle between files (file A uses file B, B uses … A), at any length;
//! - no source file over 600 lines;
//! - the layer rules: `common/` and `config/` use nothing of server, pipeline, endpoints,
//!   proxy, providers, session or tools; `session/` uses no providers, endpoints, pipeline or
//!   proxy; `proxy/` uses no session, endpoints, pipeline, providers or server; nothing outside `tools/`
//!   and `main.rs` uses `tools`.
//!
//! "Uses" is read from the code (comments and string literals left out): every `use` (with
//! `crate::`, `self::`, `super::`, or a child module's name) and every inline `crate::…`,
//! `self::…`, `super::…` path, and paths through a name a `use` brought in. A path goes to the
//! file of the longest module prefix it names; a name that file re-exports (`pub use`) is
//! followed to the file that defines it. `super` inside an inline `mod tests { … }` is the file
//! itself. `mod x;` declarations are not uses, nor is importing a module's name by itself
//! (`use crate::session;`): the paths used through that name are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// A module path from the crate root, e.g. `["pipeline", "app"]`.
type ModPath = Vec<String>;

struct SourceFile {
    /// Relative to `src/`, e.g. `pipeline/app.rs`.
    name: String,
    module: ModPath,
    lines: usize,
    /// The code with comments and string/char literals blanked (same length, same newlines).
    code: String,
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Comments and literals blanked with spaces, newlines kept.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && at(i + 1) == 'r')) && !prev_is_ident(&c, i) && {
            let mut k = i + if c[i] == 'b' { 2 } else { 1 };
            while at(k) == '#' {
                k += 1;
            }
            at(k) == '"'
        } {
            // Raw string: r"…", r#"…"#, br"…".
            let mut k = i + if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(k) == '#' {
                hashes += 1;
                k += 1;
            }
            k += 1;
            loop {
                if k >= c.len() {
                    break;
                }
                if c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            for ch in &c[i..k.min(c.len())] {
                out.push(blank(*ch));
            }
            i = k;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a) kept as it is.
            if at(i + 1) == '\\' {
                let mut k = i + 2;
                while k < c.len() && c[k] != '\'' {
                    k += 1;
                }
                for ch in &c[i..=k.min(c.len() - 1)] {
                    out.push(blank(*ch));
                }
                i = k + 1;
            } else if at(i + 2) == '\'' {
                out.push_str("   ");
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(c: &[char], i: usize) -> bool {
    i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')
}

fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

/// One `use` leaf: the path it names (as written) and the name it brings into scope.
#[derive(Debug, Clone)]
struct Leaf {
    path: Vec<String>,
    alias: Option<String>,
}

/// Expand a use tree (`a::b::{c, d::{e as f}, self}`) into its leaves.
fn use_leaves(tree: &str) -> Vec<Leaf> {
    let toks = tokenize(tree);
    let mut pos = 0;
    let mut out = Vec::new();
    parse_tree(&toks, &mut pos, &[], &mut out);
    out
}

fn tokenize(s: &str) -> Vec<String> {
    let mut toks = Vec::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            toks.push("::".into());
            i += 2;
        } else if "{},*".contains(ch) {
            toks.push(ch.to_string());
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            toks.push(c[start..i].iter().collect());
        } else {
            i += 1;
        }
    }
    toks
}

fn parse_tree(toks: &[String], pos: &mut usize, prefix: &[String], out: &mut Vec<Leaf>) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*pos).map(String::as_str) {
            Some("{") => {
                *pos += 1;
                loop {
                    match toks.get(*pos).map(String::as_str) {
                        Some("}") => {
                            *pos += 1;
                            return;
                        }
                        Some(",") => *pos += 1,
                        None => return,
                        _ => parse_tree(toks, pos, &path, out),
                    }
                }
            }
            Some("*") => {
                *pos += 1;
                out.push(Leaf { path, alias: None });
                return;
            }
            Some(t) if t != "," && t != "}" && t != "::" => {
                path.push(t.to_string());
                *pos += 1;
                match toks.get(*pos).map(String::as_str) {
                    Some("::") => *pos += 1,
                    Some("as") => {
                        *pos += 1;
                        let alias = toks.get(*pos).cloned();
                        *pos += 1;
                        out.push(Leaf { path, alias });
                        return;
                    }
                    _ => {
                        out.push(Leaf { path, alias: None });
                        return;
                    }
                }
            }
            _ => return,
        }
    }
}

struct Crate {
    files: Vec<SourceFile>,
    by_module: HashMap<ModPath, usize>,
}

impl Crate {
    fn load() -> Crate {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        collect(&src, &mut paths);
        paths.sort();
        let mut files = Vec::new();
        for p in paths {
            let rel = p.strip_prefix(&src).unwrap();
            let text = std::fs::read_to_string(&p).unwrap();
            files.push(SourceFile {
                name: rel.to_string_lossy().replace('\\', "/"),
                module: module_of(rel),
                lines: text.lines().count(),
                code: strip(&text),
            });
        }
        let by_module = files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name != "main.rs")
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        Crate { files, by_module }
    }

    fn is_module(&self, m: &[String]) -> bool {
        self.by_module.contains_key(m)
    }

    /// The absolute module path of `path` as written in module `at` (None: another crate).
    fn absolute(&self, at: &[String], path: &[String], main: bool) -> Option<ModPath> {
        let first = path.first()?;
        let mut base: ModPath;
        let mut rest = &path[1..];
        match first.as_str() {
            "crate" => base = vec![],
            "wxgate" if main => base = vec![],
            "self" => base = at.to_vec(),
            "super" => {
                base = at.to_vec();
                base.pop();
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            // A child module named without `self::` (2018 uniform paths).
            name => {
                let mut child = at.to_vec();
                child.push(name.to_string());
                if main || !self.is_module(&child) {
                    return None;
                }
                base = child;
            }
        }
        base.extend(rest.iter().filter(|s| *s != "self").cloned());
        Some(base)
    }

    /// The file a path goes to: its longest module prefix, re-exports followed.
    fn file_of(&self, path: &[String], reexports: &[HashMap<String, ModPath>]) -> Option<usize> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let mut n = path.len();
            let file = loop {
                if let Some(&i) = self.by_module.get(&path[..n]) {
                    break i;
                }
                if n == 0 {
                    return None;
                }
                n -= 1;
            };
            match path.get(n).and_then(|name| reexports[file].get(name)) {
                Some(target) if !target.starts_with(&path[..=n]) => {
                    let mut next = target.clone();
                    next.extend(path[n + 1..].iter().cloned());
                    path = next;
                }
                _ => return Some(file),
            }
        }
        None
    }
}

/// Every use statement of a file: (byte offset, tree text, is a re-export).
fn use_statements(code: &str) -> Vec<(usize, String, bool)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(k) = code[i..].find("use ") {
        let at = i + k;
        i = at + 4;
        let before_ok = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        if !before_ok {
            continue;
        }
        // `pub use`, `pub(crate) use`, `pub(super) use`.
        let line_start = code[..at].rfind(['\n', ';', '{', '}']).map_or(0, |p| p + 1);
        let head = code[line_start..at].trim();
        let head = head.rsplit(']').next().unwrap_or("").trim();
        if !(head.is_empty() || head.starts_with("pub")) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        out.push((
            at,
            code[at + 4..at + end].to_string(),
            head.starts_with("pub"),
        ));
        i = at + end;
    }
    out
}

/// For each byte offset of interest, the inline modules (`mod x { … }`) it sits in.
fn inline_modules(code: &str, offsets: &[usize]) -> Vec<Vec<String>> {
    let mut sorted: Vec<(usize, usize)> = offsets
        .iter()
        .copied()
        .enumerate()
        .map(|(i, o)| (o, i))
        .collect();
    sorted.sort();
    let mut result = vec![Vec::new(); offsets.len()];
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let b = code.as_bytes();
    let mut next = 0;
    let mut pending: Option<String> = None;
    let mut i = 0;
    while i <= b.len() {
        while next < sorted.len() && sorted[next].0 <= i {
            result[sorted[next].1] = stack.iter().map(|(n, _)| n.clone()).collect();
            next += 1;
        }
        if i == b.len() {
            break;
        }
        match b[i] {
            b'{' => {
                if let Some(name) = pending.take() {
                    stack.push((name, depth));
                }
                depth += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
            }
            b';' => pending = None,
            b'm' if code[i..].starts_with("mod ")
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let rest = &code[i + 4..];
                let name: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                pending = Some(name);
            }
            _ => {}
        }
        i += 1;
    }
    result
}

/// Inline paths `crate::a::b`, `super::x`, `self::y`, and `alias::z` for the file's aliases:
/// (byte offset, segments).
fn inline_paths(code: &str, aliases: &BTreeSet<String>) -> Vec<(usize, Vec<String>)> {
    let c: Vec<(usize, char)> = code.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let (off, ch) = c[i];
        let starts = (ch.is_alphabetic() || ch == '_')
            && (i == 0
                || !(c[i - 1].1.is_alphanumeric() || c[i - 1].1 == '_' || c[i - 1].1 == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut k = i;
        loop {
            let s = k;
            while k < c.len() && (c[k].1.is_alphanumeric() || c[k].1 == '_') {
                k += 1;
            }
            segs.push(c[s..k].iter().map(|x| x.1).collect::<String>());
            let mut j = k;
            while j < c.len() && c[j].1 == ' ' {
                j += 1;
            }
            if j + 1 < c.len() && c[j].1 == ':' && c[j + 1].1 == ':' {
                j += 2;
                while j < c.len() && c[j].1 == ' ' {
                    j += 1;
                }
                if j < c.len() && (c[j].1.is_alphabetic() || c[j].1 == '_') {
                    k = j;
                    continue;
                }
            }
            break;
        }
        let first = segs[0].as_str();
        if segs.len() > 1
            && (matches!(first, "crate" | "self" | "super") || aliases.contains(first))
        {
            out.push((off, segs));
        }
        i = k.max(i + 1);
    }
    out
}

/// The file graph: for each file, the files it uses, with the names it uses them by.
struct Graph {
    edges: Vec<BTreeMap<usize, BTreeSet<String>>>,
}

fn graph(krate: &Crate) -> Graph {
    let n = krate.files.len();
    // Pass 1: each file's re-exports, as absolute paths.
    let mut reexports: Vec<HashMap<String, ModPath>> = vec![HashMap::new(); n];
    for (i, f) in krate.files.iter().enumerate() {
        let main = f.name == "main.rs";
        for (_, tree, is_pub) in use_statements(&f.code) {
            if !is_pub {
                continue;
            }
            for leaf in use_leaves(&tree) {
                let Some(name) = leaf.alias.clone().or_else(|| leaf.path.last().cloned()) else {
                    continue;
                };
                if name == "self" || name == "*" {
                    continue;
                }
                if let Some(abs) = krate.absolute(&f.module, &leaf.path, main) {
                    reexports[i].insert(name, abs);
                }
            }
        }
    }
    // Pass 2: the uses.
    let mut edges = vec![BTreeMap::new(); n];
    for (i, f) in krate.files.iter().enumerate() {
        let main = f.name == "main.rs";
        let uses = use_statements(&f.code);
        let mut offsets: Vec<usize> = uses.iter().map(|u| u.0).collect();
        let mut found: Vec<(usize, Vec<String>, String)> = Vec::new();
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (off, tree, _) in &uses {
            for leaf in use_leaves(tree) {
                let shown = leaf.path.join("::");
                let name = leaf.alias.clone().or_else(|| {
                    let last = leaf.path.last()?;
                    if last == "self" {
                        leaf.path.len().checked_sub(2).map(|k| leaf.path[k].clone())
                    } else {
                        Some(last.clone())
                    }
                });
                if let Some(name) = name.filter(|n| n != "*") {
                    aliases.insert(name, leaf.path.clone());
                }
                found.push((*off, leaf.path, shown));
            }
        }
        let alias_names: BTreeSet<String> = aliases.keys().cloned().collect();
        let inline = inline_paths(&f.code, &alias_names);
        for (off, segs) in &inline {
            offsets.push(*off);
            let shown = segs.join("::");
            let path = match aliases.get(&segs[0]) {
                Some(p) if !matches!(segs[0].as_str(), "crate" | "self" | "super") => {
                    let mut p = p.clone();
                    if p.last().is_some_and(|s| s == "self") {
                        p.pop();
                    }
                    p.extend(segs[1..].iter().cloned());
                    p
                }
                _ => segs.clone(),
            };
            found.push((*off, path, shown));
        }
        let offs: Vec<usize> = found.iter().map(|x| x.0).collect();
        let scopes = inline_modules(&f.code, &offs);
        for ((_, path, shown), scope) in found.iter().zip(scopes) {
            let mut at = f.module.clone();
            at.extend(scope);
            let Some(abs) = krate.absolute(&at, path, main) else {
                continue;
            };
            // `use crate::session;` alone: the uses through the name count, not the import.
            if krate.is_module(&abs) {
                continue;
            }
            if let Some(j) = krate.file_of(&abs, &reexports) {
                if j != i && krate.files[j].name != "lib.rs" {
                    edges[i]
                        .entry(j)
                        .or_insert_with(BTreeSet::new)
                        .insert(shown.clone());
                }
            }
        }
    }
    Graph { edges }
}

fn top(name: &str) -> &str {
    name.split('/')
        .next()
        .unwrap_or(name)
        .trim_end_matches(".rs")
}

#[test]
fn no_import_cycles() {
    let krate = Crate::load();
    let g = graph(&krate);
    let name = |i: usize| krate.files[i].name.as_str();
    let uses = |a: usize, b: usize| {
        g.edges[a][&b]
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Files that reach each other (by DFS from every file) form a cycle together.
    let n = krate.files.len();
    let reach: Vec<Vec<bool>> = (0..n)
        .map(|s| {
            let mut seen = vec![false; n];
            let mut todo: Vec<usize> = g.edges[s].keys().copied().collect();
            while let Some(v) = todo.pop() {
                if !seen[v] {
                    seen[v] = true;
                    todo.extend(g.edges[v].keys().copied());
                }
            }
            seen
        })
        .collect();
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let mut placed = vec![false; n];
    for v in 0..n {
        if placed[v] || !reach[v][v] {
            continue;
        }
        let comp: Vec<usize> = (0..n).filter(|&w| reach[v][w] && reach[w][v]).collect();
        for &w in &comp {
            placed[w] = true;
        }
        comps.push(comp);
    }
    let mut report = Vec::new();
    for comp in comps.iter().filter(|c| c.len() > 1) {
        let members: BTreeSet<usize> = comp.iter().copied().collect();
        let mut lines = vec![format!(
            "cycle among {} files: {}",
            comp.len(),
            members
                .iter()
                .map(|&i| name(i))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        for &a in &members {
            for &b in g.edges[a].keys().filter(|b| members.contains(b)) {
                lines.push(format!("    {} → {}  ({})", name(a), name(b), uses(a, b)));
            }
        }
        report.push(lines.join("\n"));
    }
    assert!(
        report.is_empty(),
        "import cycles between files (each edge: the file, the file it uses, what it uses):\n{}",
        report.join("\n")
    );
}

#[test]
fn no_file_over_600_lines() {
    let krate = Crate::load();
    let long: Vec<String> = krate
        .files
        .iter()
        .filter(|f| f.lines > MAX_LINES)
        .map(|f| format!("    src/{}: {} lines", f.name, f.lines))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them, or move a long `mod tests` to a sibling tests.rs):\n{}",
        long.join("\n")
    );
}

#[test]
fn layers_point_down() {
    let krate = Crate::load();
    let g = graph(&krate);
    // (layer of the using file, layers it may not use, why)
    let rules: &[(&[&str], &[&str], &str)] = &[
        (
            &["common", "config"],
            &[
                "server",
                "pipeline",
                "endpoints",
                "proxy",
                "providers",
                "session",
                "tools",
            ],
            "common and config name nothing above them",
        ),
        (
            &["session"],
            &["providers", "endpoints", "pipeline", "proxy"],
            "stores know no provider, no endpoint, no request path",
        ),
        (
            &["proxy"],
            &["session", "endpoints", "pipeline", "providers", "server"],
            "forwarding knows no sessions, no login and no listener",
        ),
    ];
    let mut report = Vec::new();
    for (i, f) in krate.files.iter().enumerate() {
        let from = top(&f.name);
        for (&j, names) in &g.edges[i] {
            let to = top(&krate.files[j].name);
            let shown = names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
            for (layers, banned, why) in rules {
                if layers.contains(&from) && banned.contains(&to) {
                    report.push(format!(
                        "    src/{} → src/{}  ({shown}): {why}",
                        f.name, krate.files[j].name
                    ));
                }
            }
            if to == "tools" && from != "tools" && f.name != "main.rs" {
                report.push(format!(
                    "    src/{} → src/{}  ({shown}): the product never imports the tools",
                    f.name, krate.files[j].name
                ));
            }
        }
    }
    assert!(
        report.is_empty(),
        "layer rules broken:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_checker_reads_uses() {
    let leaves = use_leaves("crate::a::{b, c::{self, d as e}, f::*}");
    let shown: Vec<String> = leaves
        .iter()
        .map(|l| {
            format!(
                "{}{}",
                l.path.join("::"),
                l.alias
                    .as_ref()
                    .map(|a| format!(" as {a}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "crate::a::b",
            "crate::a::c::self",
            "crate::a::c::d as e",
            "crate::a::f"
        ]
    );
    let code = strip("let s = \"crate::x::y\"; // crate::z\nlet c = '\"'; crate::real::thing(); r#\"crate::q\"#;");
    let found: Vec<String> = inline_paths(&code, &BTreeSet::new())
        .into_iter()
        .map(|(_, s)| s.join("::"))
        .collect();
    assert_eq!(found, ["crate::real::thing"]);
    let code = "use super::x;\nmod tests {\n    use super::*;\n}\nfn f() {}";
    let scopes = inline_modules(
        code,
        &[
            0,
            code.find("use super::*").unwrap(),
            code.find("fn f").unwrap(),
        ],
    );
    assert_eq!(scopes, [vec![], vec!["tests".to_string()], vec![]]);
}
