//! A compose project as compose reads it: its files, its `.env`, interpolation, the per-file
//! checks, normalisation and the override merge. Every read goes through the caller's [`Fs`].

use crate::files;
use crate::finding::{LintError, LintNote};
use crate::interp::{self, EnvEntry, VarSource, Vars};
use crate::merge;
use crate::schema;
use crate::yaml::{self, Interpolated, Node, Pos, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The caller's file system: the only way this crate reads anything.
pub trait Fs {
    fn read(&self, path: &Path) -> std::io::Result<String>;
    fn exists(&self, path: &Path) -> bool;
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Compose files in merge order (`-f`); empty: the ones compose picks.
    pub files: Vec<PathBuf>,
    /// `--project-directory`; default: the folder of the first file.
    pub project_directory: Option<PathBuf>,
    /// `--env-file`; default: `.env` in the project directory, if there is one.
    pub env_files: Vec<PathBuf>,
    /// The process environment.
    pub env: HashMap<String, String>,
}

/// A file read for the project: compose files first, then env files. `Pos::file` indexes this.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
    /// Byte offset of each character index (computed on demand for literal lookups).
    char_starts: std::sync::OnceLock<Vec<usize>>,
}

impl Source {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
            char_starts: std::sync::OnceLock::new(),
        }
    }
    /// The text of line `line` (1-based), without its newline.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        self.text
            .split('\n')
            .nth(line.checked_sub(1)?)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }
    /// The line where `needle` (ASCII case-insensitive) is written inside the node at `pos`, or
    /// the node's own line when it is not written there literally (it came from a variable).
    pub fn line_of(&self, pos: Pos, needle: &str) -> usize {
        let starts = self.char_starts.get_or_init(|| {
            self.text
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(self.text.len()))
                .collect()
        });
        let byte = |ci: usize| starts.get(ci).copied().unwrap_or(self.text.len());
        let (s, e) = (byte(pos.start), byte(pos.end.max(pos.start)));
        if s >= e || needle.is_empty() {
            return pos.line;
        }
        let hay = &self.text[s..e];
        match find_ci(hay, needle) {
            Some(off) => pos.line + hay[..off].matches('\n').count(),
            None => pos.line,
        }
    }
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// One env file of a service (`env_file:`), read and parsed.
#[derive(Debug, Clone)]
pub struct ServiceEnvFile {
    /// Index into [`Project::sources`].
    pub source: usize,
    pub entries: Vec<EnvEntry>,
}

/// The loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub sources: Vec<Source>,
    /// How many of `sources` are compose files (the rest are env files).
    pub compose_files: usize,
    /// The merged, interpolated, normalised tree.
    pub root: Node,
    pub project_dir: PathBuf,
    pub env_file: Option<String>,
    /// `env_file:` contents per service.
    pub service_env_files: HashMap<String, Vec<ServiceEnvFile>>,
    pub errors: Vec<LintError>,
    pub notes: Vec<LintNote>,
}

impl Project {
    pub fn path(&self, pos: Pos) -> &str {
        self.sources
            .get(pos.file)
            .map(|s| s.path.as_str())
            .unwrap_or("?")
    }
    pub fn source(&self, pos: Pos) -> Option<&Source> {
        self.sources.get(pos.file)
    }
    pub fn services(&self) -> impl Iterator<Item = (&str, &crate::yaml::Entry)> {
        self.root
            .get("services")
            .and_then(Node::as_map)
            .unwrap_or(&[])
            .iter()
            .map(|e| (e.key.as_str(), e))
    }
    pub fn files(&self) -> Vec<String> {
        self.sources[..self.compose_files]
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }
}

fn show(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.strip_prefix("./")
        .map(str::to_string)
        .unwrap_or_else(|| s.into_owned())
}

/// Loads the project. Nothing here fails as a whole: each problem becomes an error with its
/// file and line, and everything else is still loaded. No compose file at all is the one error
/// without a line.
pub fn load(opts: &Options, fs: &dyn Fs) -> Project {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut paths = opts.files.clone();
    let start_dir = opts
        .project_directory
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    if paths.is_empty() {
        if let Some(v) = opts
            .env
            .get("COMPOSE_FILE")
            .filter(|v| !v.trim().is_empty())
        {
            let sep = opts.env.get("COMPOSE_PATH_SEPARATOR").map(String::as_str);
            paths = files::from_compose_file_var(v, sep)
                .into_iter()
                .map(|p| {
                    if p.is_relative() {
                        start_dir.join(p)
                    } else {
                        p
                    }
                })
                .collect();
            notes.push(LintNote {
                file: None,
                line: None,
                message: format!("files from COMPOSE_FILE={v}"),
            });
        } else {
            match files::pick(&start_dir, &|p| fs.exists(p)) {
                Some(picked) => {
                    for ig in &picked.ignored {
                        notes.push(LintNote { file: Some(show(ig)), line: None, message: "ignored: compose uses only the first file it finds of each kind, as here".into() });
                    }
                    paths = picked.files;
                }
                None => {
                    errors.push(LintError {
                        file: show(&start_dir),
                        line: 0,
                        message: format!(
                            "no compose file here or in a parent folder (looked for {})",
                            files::DEFAULT_FILES.join(", ")
                        ),
                    });
                }
            }
        }
    }
    let project_dir = opts
        .project_directory
        .clone()
        .or_else(|| {
            paths
                .first()
                .and_then(|p| p.parent())
                .map(Path::to_path_buf)
        })
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));

    // The variables: process environment, then the env file(s).
    let mut vars = Vars::new(opts.env.clone());
    let mut env_file_shown = None;
    let mut env_sources: Vec<Source> = Vec::new();
    let env_files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(join(&project_dir, ".env"), false)]
    } else {
        opts.env_files.iter().map(|p| (p.clone(), true)).collect()
    };
    for (path, required) in env_files {
        if !required && !fs.exists(&path) {
            continue;
        }
        let shown = show(&path);
        match fs.read(&path) {
            Ok(text) => {
                match interp::parse_env_file(&text, &opts.env) {
                    Ok(entries) => vars.add_env_file(&shown, &entries),
                    Err(e) => errors.push(LintError {
                        file: shown.clone(),
                        line: e.line,
                        message: e.message.clone(),
                    }),
                }
                env_sources.push(Source::new(shown.clone(), text));
            }
            Err(e) => errors.push(LintError {
                file: shown.clone(),
                line: 0,
                message: format!("cannot read the env file: {e}"),
            }),
        }
        env_file_shown = Some(shown);
    }

    let mut sources: Vec<Source> = Vec::new();
    let mut root = Node::new(Value::Null, Pos::default());
    let mut unset_reported: BTreeSet<String> = BTreeSet::new();
    for path in &paths {
        let shown = show(path);
        let idx = sources.len();
        let text = match fs.read(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(LintError {
                    file: shown.clone(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                });
                sources.push(Source::new(shown, String::new()));
                continue;
            }
        };
        sources.push(Source::new(shown.clone(), text));
        let mut tree = match yaml::parse(&sources[idx].text, idx) {
            Ok(t) => t,
            Err(e) => {
                errors.push(LintError {
                    file: shown.clone(),
                    line: e.line,
                    message: format!("unreadable YAML: {}", e.message),
                });
                continue;
            }
        };
        interpolate_tree(
            &mut tree,
            &vars,
            &shown,
            &mut errors,
            &mut notes,
            &mut unset_reported,
        );
        for e in schema::check(&mut tree) {
            errors.push(LintError {
                file: shown.clone(),
                line: e.line,
                message: e.message,
            });
        }
        merge::normalize(&mut tree);
        merge::merge_root(&mut root, tree);
    }
    let compose_files = sources.len();
    // env file sources go after the compose files so compose positions stay valid
    sources.extend(env_sources);

    let mut project = Project {
        sources,
        compose_files,
        root,
        project_dir: project_dir.clone(),
        env_file: env_file_shown,
        service_env_files: HashMap::new(),
        errors,
        notes,
    };
    load_service_env_files(&mut project, opts, fs);
    note_unfollowed(&mut project);
    project
}

fn join(dir: &Path, name: &str) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

fn interpolate_tree(
    n: &mut Node,
    vars: &Vars,
    file: &str,
    errors: &mut Vec<crate::finding::LintError>,
    notes: &mut Vec<LintNote>,
    unset: &mut BTreeSet<String>,
) {
    match &mut n.value {
        Value::String(s) if s.contains('$') => {
            let lookup = |name: &str| vars.lookup(name);
            match interp::interpolate(s, &lookup) {
                Ok((out, uses)) => {
                    for u in &uses {
                        if u.source == VarSource::Unset
                            && !u.default_used
                            && unset.insert(u.name.clone())
                        {
                            notes.push(LintNote {
                                file: Some(file.to_string()),
                                line: Some(n.pos.line),
                                message: format!(
                                    "the variable {} is not set: compose uses an empty string",
                                    u.name
                                ),
                            });
                        }
                    }
                    n.interp = Some(Box::new(Interpolated {
                        raw: s.clone(),
                        vars: uses,
                    }));
                    *s = out;
                }
                Err(e) => errors.push(LintError {
                    file: file.to_string(),
                    line: n.pos.line,
                    message: e.to_string(),
                }),
            }
        }
        Value::Seq(items) => {
            for i in items {
                interpolate_tree(i, vars, file, errors, notes, unset);
            }
        }
        Value::Map(entries) => {
            for e in entries {
                interpolate_tree(&mut e.value, vars, file, errors, notes, unset);
            }
        }
        _ => {}
    }
}

fn load_service_env_files(p: &mut Project, opts: &Options, fs: &dyn Fs) {
    // per service: (path as written, required, where it is written)
    type Wanted = Vec<(String, Vec<(String, bool, Pos)>)>;
    let mut wanted: Wanted = Vec::new();
    for (name, e) in p.services() {
        let Some(ef) = e.value.get("env_file") else {
            continue;
        };
        let items: Vec<&Node> = match &ef.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![ef],
        };
        let mut list = Vec::new();
        for it in items {
            match &it.value {
                Value::String(s) => list.push((s.clone(), true, it.pos)),
                Value::Map(_) => {
                    if let Some(path) = it.get("path").and_then(Node::scalar_text) {
                        let required = !matches!(
                            it.get("required").map(|r| &r.value),
                            Some(Value::Bool(false))
                        ) && it.get("required").and_then(Node::as_str)
                            != Some("false");
                        list.push((path, required, it.pos));
                    }
                }
                _ => {}
            }
        }
        wanted.push((name.to_string(), list));
    }
    let mut cache: HashMap<PathBuf, Option<usize>> = HashMap::new();
    for (service, list) in wanted {
        for (rel, required, pos) in list {
            let path = if Path::new(&rel).is_absolute() {
                PathBuf::from(&rel)
            } else {
                join(&p.project_dir, &rel)
            };
            let compose_file = p.path(pos).to_string();
            let idx = match cache.get(&path) {
                Some(i) => *i,
                None => {
                    let idx = if !fs.exists(&path) {
                        if required {
                            p.errors.push(LintError {
                                file: compose_file.clone(),
                                line: pos.line,
                                message: format!("env_file {} does not exist", show(&path)),
                            });
                        }
                        None
                    } else {
                        match fs.read(&path) {
                            Ok(text) => {
                                p.sources.push(Source::new(show(&path), text));
                                Some(p.sources.len() - 1)
                            }
                            Err(e) => {
                                p.errors.push(LintError {
                                    file: compose_file.clone(),
                                    line: pos.line,
                                    message: format!("cannot read env_file {}: {e}", show(&path)),
                                });
                                None
                            }
                        }
                    };
                    cache.insert(path.clone(), idx);
                    idx
                }
            };
            let Some(idx) = idx else { continue };
            match interp::parse_env_file(&p.sources[idx].text, &opts.env) {
                Ok(entries) => p
                    .service_env_files
                    .entry(service.clone())
                    .or_default()
                    .push(ServiceEnvFile {
                        source: idx,
                        entries,
                    }),
                Err(e) => {
                    let file = p.sources[idx].path.clone();
                    if !p.errors.iter().any(|x| x.file == file && x.line == e.line) {
                        p.errors.push(LintError {
                            file,
                            line: e.line,
                            message: e.message,
                        });
                    }
                }
            }
        }
    }
}

/// Compose features whose effect lint does not reproduce: said once, not guessed.
fn note_unfollowed(p: &mut Project) {
    let mut notes = Vec::new();
    if let Some(inc) = p.root.entry("include") {
        notes.push(LintNote {
            file: Some(p.path(inc.key_pos).to_string()),
            line: Some(inc.key_pos.line),
            message: "include: is not followed: lint the included projects on their own".into(),
        });
    }
    for (name, e) in p.services() {
        if let Some(x) = e.value.entry("extends") {
            notes.push(LintNote {
                file: Some(p.path(x.key_pos).to_string()),
                line: Some(x.key_pos.line),
                message: format!(
                    "service {name}: extends is not followed: what it inherits is not linted here"
                ),
            });
        }
    }
    p.notes.extend(notes);
}

#[cfg(test)]
pub(crate) mod memfs {
    use super::Fs;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    /// An in-memory file system for tests.
    #[derive(Default)]
    pub struct MemFs(pub HashMap<PathBuf, String>);

    impl MemFs {
        pub fn new(files: &[(&str, &str)]) -> MemFs {
            MemFs(
                files
                    .iter()
                    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                    .collect(),
            )
        }
    }

    impl Fs for MemFs {
        fn read(&self, path: &Path) -> std::io::Result<String> {
            self.0.get(path).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
            })
        }
        fn exists(&self, path: &Path) -> bool {
            self.0.contains_key(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memfs::MemFs;
    use super::*;

    #[test]
    fn picks_merges_and_interpolates() {
        let fs = MemFs::new(&[
            (
                "compose.yaml",
                "services:\n  web:\n    image: app:${TAG:-latest}\n    environment:\n      DB: postgres://${DB_HOST}:5432/app\n",
            ),
            (
                "compose.override.yml",
                "services:\n  web:\n    environment:\n      EXTRA: \"1\"\n",
            ),
            (".env", "# the db\nDB_HOST=db.internal\nTAG=fromfile\n"),
        ]);
        let opts = Options {
            env: [("TAG".to_string(), "fromenv".to_string())].into(),
            ..Default::default()
        };
        let p = load(&opts, &fs);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.files(), vec!["compose.yaml", "compose.override.yml"]);
        assert_eq!(p.env_file.as_deref(), Some(".env"));
        let web = p.root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().as_str(), Some("app:fromenv"));
        let db = web.get("environment").unwrap().get("DB").unwrap();
        assert_eq!(db.as_str(), Some("postgres://db.internal:5432/app"));
        let i = db.interp.as_ref().unwrap();
        assert_eq!(i.raw, "postgres://${DB_HOST}:5432/app");
        assert_eq!(
            i.vars[0].source,
            VarSource::EnvFile {
                file: ".env".into(),
                line: 2
            }
        );
        assert!(web.get("environment").unwrap().get("EXTRA").is_some());
    }

    #[test]
    fn a_broken_override_loses_nothing_else() {
        let fs = MemFs::new(&[
            (
                "compose.yaml",
                "services:\n  web:\n    image: a\n    environment:\n      A: ${NEED:?set NEED}\n",
            ),
            (
                "compose.override.yaml",
                "services:\n  web:\n    image: [b\n",
            ),
        ]);
        let p = load(&Options::default(), &fs);
        assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
        assert_eq!(
            (p.errors[0].file.as_str(), p.errors[0].line),
            ("compose.yaml", 5)
        );
        assert!(p.errors[0].message.contains("NEED"));
        assert_eq!(p.errors[1].file, "compose.override.yaml");
        assert!(
            p.errors[1].message.starts_with("unreadable YAML"),
            "{:?}",
            p.errors[1]
        );
        assert_eq!(
            p.root
                .get("services")
                .unwrap()
                .get("web")
                .unwrap()
                .get("image")
                .unwrap()
                .as_str(),
            Some("a")
        );
    }

    #[test]
    fn explicit_files_project_directory_and_env_file() {
        let fs = MemFs::new(&[
            (
                "deploy/base.yml",
                "services:\n  a:\n    image: x\n    env_file: [app.env, {path: missing.env, required: false}]\n",
            ),
            ("deploy/app.env", "URL=http://localhost:8080\n"),
            ("conf/custom.env", "X=1\n"),
        ]);
        let opts = Options {
            files: vec!["deploy/base.yml".into()],
            env_files: vec!["conf/custom.env".into()],
            ..Default::default()
        };
        let p = load(&opts, &fs);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.project_dir, PathBuf::from("deploy"));
        assert_eq!(p.env_file.as_deref(), Some("conf/custom.env"));
        let ef = &p.service_env_files["a"];
        assert_eq!(ef.len(), 1);
        assert_eq!(p.sources[ef[0].source].path, "deploy/app.env");
        assert_eq!(
            ef[0].entries[0].value.as_deref(),
            Some("http://localhost:8080")
        );
    }

    #[test]
    fn no_compose_file() {
        let p = load(&Options::default(), &MemFs::default());
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].message.contains("no compose file"));
    }

    #[test]
    fn literal_lines_inside_block_scalars() {
        let src = Source::new("f", "a: |\n  one\n  two host.docker.internal\n");
        let root = yaml::parse(&src.text, 0).unwrap();
        let a = root.get("a").unwrap();
        assert_eq!(a.pos.line, 2);
        assert_eq!(src.line_of(a.pos, "HOST.docker.internal"), 3);
        assert_eq!(src.line_of(a.pos, "absent"), 2);
    }
}
