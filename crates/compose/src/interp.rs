//! Variables the compose way: `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, `$$` for a literal `$`, with
//! defaults that may themselves hold variables (`${A:-${B:-x}}`), and the `.env` file format.
//!
//! As in Docker Compose v2: a `$` followed by anything else stays as written; an unset variable
//! without a default becomes the empty string (and the caller is told, as compose warns); a
//! malformed `${...}` is an error. Values come from the process environment first, then `.env`.

use std::collections::HashMap;
use std::fmt;

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum VarSource {
    /// The process environment of `hostreach`.
    Environment,
    /// A line of an env file (`.env`, `--env-file`).
    EnvFile { file: String, line: usize },
    /// Not set anywhere.
    Unset,
}

impl fmt::Display for VarSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarSource::Environment => f.write_str("the environment"),
            VarSource::EnvFile { file, line } => write!(f, "{file} line {line}"),
            VarSource::Unset => f.write_str("nowhere (unset)"),
        }
    }
}

/// One variable an interpolated string used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VarUse {
    pub name: String,
    /// Its value, None when unset.
    pub value: Option<String>,
    pub source: VarSource,
    /// The `${VAR:-default}` (or `:+`) text was used instead of the value.
    pub default_used: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error(
        "invalid interpolation format {0:?}: write ${{VAR}}, ${{VAR:-default}}, ${{VAR:?error}}, or $$ for a literal $"
    )]
    Invalid(String),
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
}

/// The variables interpolation sees: the process environment, then the env file.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    env: HashMap<String, String>,
    file: HashMap<String, (String, VarSource)>,
}

impl Vars {
    pub fn new(env: HashMap<String, String>) -> Vars {
        Vars {
            env,
            file: HashMap::new(),
        }
    }
    /// Adds the entries of an env file (an entry never hides the process environment).
    pub fn add_env_file(&mut self, file: &str, entries: &[EnvEntry]) {
        for e in entries {
            if let Some(v) = &e.value {
                self.file.insert(
                    e.key.clone(),
                    (
                        v.clone(),
                        VarSource::EnvFile {
                            file: file.to_string(),
                            line: e.line,
                        },
                    ),
                );
            }
        }
    }
    pub fn lookup(&self, name: &str) -> Option<(String, VarSource)> {
        if let Some(v) = self.env.get(name) {
            return Some((v.clone(), VarSource::Environment));
        }
        self.file.get(name).cloned()
    }
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }
}

/// Interpolates `s`. Returns the new text and the variables used, in order.
pub fn interpolate(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<(String, VarSource)>,
) -> Result<(String, Vec<VarUse>), InterpError> {
    let mut uses = Vec::new();
    let out = subst(s, lookup, &mut uses, 0)?;
    Ok((out, uses))
}

const MAX_DEPTH: usize = 32;

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}
fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn subst(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<(String, VarSource)>,
    uses: &mut Vec<VarUse>,
    depth: usize,
) -> Result<String, InterpError> {
    if depth > MAX_DEPTH {
        return Err(InterpError::Invalid(s.to_string()));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = 1;
                let close = closing_brace(&after[body_start..])
                    .ok_or_else(|| InterpError::Invalid(s.to_string()))?;
                let body = &after[body_start..body_start + close];
                out.push_str(&braced(body, s, lookup, uses, depth)?);
                rest = &after[body_start + close + 1..];
            }
            Some(c) if is_name_start(c) => {
                let end = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let name = &after[..end];
                out.push_str(&plain(name, lookup, uses));
                rest = &after[end..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${` whose body starts at `s[0]`, counting nested `${`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'$' if bytes.get(i + 1) == Some(&b'$') => {
                i += 2;
                continue;
            }
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn plain(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<(String, VarSource)>,
    uses: &mut Vec<VarUse>,
) -> String {
    match lookup(name) {
        Some((v, src)) => {
            uses.push(VarUse {
                name: name.into(),
                value: Some(v.clone()),
                source: src,
                default_used: false,
            });
            v
        }
        None => {
            uses.push(VarUse {
                name: name.into(),
                value: None,
                source: VarSource::Unset,
                default_used: false,
            });
            String::new()
        }
    }
}

fn braced(
    body: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<(String, VarSource)>,
    uses: &mut Vec<VarUse>,
    depth: usize,
) -> Result<String, InterpError> {
    let mut chars = body.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return Err(InterpError::Invalid(whole.to_string())),
    }
    let end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..end];
    let op = &body[end..];
    if op.is_empty() {
        return Ok(plain(name, lookup, uses));
    }
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let mut it = op.chars();
    let kind = it
        .next()
        .ok_or_else(|| InterpError::Invalid(whole.to_string()))?;
    if !matches!(kind, '-' | '?' | '+') {
        return Err(InterpError::Invalid(whole.to_string()));
    }
    let arg = &op[1..];
    let found = lookup(name);
    // "set" for the colon forms means set and not empty.
    let set = match &found {
        Some((v, _)) => !colon || !v.is_empty(),
        None => false,
    };
    let record = |uses: &mut Vec<VarUse>, default_used: bool| {
        let (value, source) = match &found {
            Some((v, s)) => (Some(v.clone()), s.clone()),
            None => (None, VarSource::Unset),
        };
        uses.push(VarUse {
            name: name.into(),
            value,
            source,
            default_used,
        });
    };
    match kind {
        '-' => {
            if set {
                record(uses, false);
                Ok(found.map(|f| f.0).unwrap_or_default())
            } else {
                record(uses, true);
                subst(arg, lookup, uses, depth + 1)
            }
        }
        '+' => {
            if set {
                record(uses, true);
                subst(arg, lookup, uses, depth + 1)
            } else {
                record(uses, false);
                Ok(String::new())
            }
        }
        _ => {
            if set {
                record(uses, false);
                Ok(found.map(|f| f.0).unwrap_or_default())
            } else {
                let message = subst(arg, lookup, uses, depth + 1)?;
                Err(InterpError::Required {
                    name: name.into(),
                    message,
                })
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Env files

/// One `KEY=VALUE` of an env file. `value` is None for a bare `KEY` line that names a variable
/// not set in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: Option<String>,
    /// 1-based line where the entry starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// Parses an env file the way compose reads `.env` and `env_file:`: `KEY=VALUE` lines, an
/// optional `export `, `#` comments, blank lines; `'single'` quotes are literal, `"double"`
/// quotes take `\n`, `\t`, `\"`, `\\` escapes and may span lines; unquoted values are trimmed and
/// lose a ` # comment`; variables in unquoted and double-quoted values are expanded from `env`
/// first, then from the entries above. A bare `KEY` takes the value `env` has.
pub fn parse_env_file(
    text: &str,
    env: &HashMap<String, String>,
) -> Result<Vec<EnvEntry>, EnvFileError> {
    let mut entries: Vec<EnvEntry> = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let raw = lines[i].strip_suffix('\r').unwrap_or(lines[i]);
        i += 1;
        let t = raw.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
        let err = |m: String| EnvFileError {
            line: line_no,
            message: m,
        };
        let (key, value_part) = match t.find('=') {
            Some(eq) => (t[..eq].trim(), Some(&t[eq + 1..])),
            None => (t.trim(), None),
        };
        if key.is_empty() {
            return Err(err("a line starts with `=`: write KEY=VALUE".into()));
        }
        if !key.chars().next().is_some_and(is_name_start)
            || !key.chars().all(|c| is_name_char(c) || c == '.' || c == '-')
        {
            return Err(err(format!(
                "{key:?} is not a variable name: write KEY=VALUE"
            )));
        }
        let lookup_env = |entries: &Vec<EnvEntry>| {
            let entries = entries.clone();
            move |n: &str| -> Option<(String, VarSource)> {
                if let Some(v) = env.get(n) {
                    return Some((v.clone(), VarSource::Environment));
                }
                entries
                    .iter()
                    .rev()
                    .find(|e| e.key == n)
                    .and_then(|e| e.value.clone())
                    .map(|v| (v, VarSource::Unset))
            }
        };
        let Some(vp) = value_part else {
            entries.push(EnvEntry {
                key: key.into(),
                value: env.get(key).cloned(),
                line: line_no,
            });
            continue;
        };
        let vp = vp.trim_start();
        let value = if let Some(body) = vp.strip_prefix('\'') {
            // single quotes: literal, may span lines
            let (content, consumed) = quoted(body, '\'', &lines, &mut i)
                .ok_or_else(|| err("unterminated single quote".into()))?;
            let _ = consumed;
            content
        } else if let Some(body) = vp.strip_prefix('"') {
            let (content, _) = quoted(body, '"', &lines, &mut i)
                .ok_or_else(|| err("unterminated double quote".into()))?;
            let unescaped = unescape(&content);
            let l = lookup_env(&entries);
            interpolate(&unescaped, &l)
                .map_err(|e| err(e.to_string()))?
                .0
        } else {
            let mut v = vp;
            if let Some(h) = find_inline_comment(v) {
                v = &v[..h];
            }
            let v = v.trim();
            let l = lookup_env(&entries);
            interpolate(v, &l).map_err(|e| err(e.to_string()))?.0
        };
        entries.push(EnvEntry {
            key: key.into(),
            value: Some(value),
            line: line_no,
        });
    }
    Ok(entries)
}

/// The text up to the closing quote, possibly over the next lines (advancing `next`).
fn quoted(first: &str, q: char, lines: &[&str], next: &mut usize) -> Option<(String, usize)> {
    let mut acc = String::new();
    let mut cur = first.to_string();
    let mut consumed = 0;
    loop {
        if let Some(end) = find_close(&cur, q) {
            acc.push_str(&cur[..end]);
            return Some((acc, consumed));
        }
        acc.push_str(&cur);
        acc.push('\n');
        if *next >= lines.len() {
            return None;
        }
        cur = lines[*next]
            .strip_suffix('\r')
            .unwrap_or(lines[*next])
            .to_string();
        *next += 1;
        consumed += 1;
    }
}

fn find_close(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if q == '"' && escaped {
            escaped = false;
            continue;
        }
        if q == '"' && c == '\\' {
            escaped = true;
            continue;
        }
        if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('$') => out.push_str("$$"),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// ` #` (a `#` after whitespace) starts a comment in an unquoted value.
fn find_inline_comment(v: &str) -> Option<usize> {
    let b = v.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<(String, VarSource)> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| m.get(n).map(|v| (v.clone(), VarSource::Environment))
    }
    fn run(s: &str, pairs: &[(&str, &str)]) -> Result<String, InterpError> {
        interpolate(s, &vars(pairs)).map(|(o, _)| o)
    }

    #[test]
    fn the_forms_compose_knows() {
        let v = [("A", "a"), ("E", ""), ("HOST", "db")];
        assert_eq!(run("${A}", &v).unwrap(), "a");
        assert_eq!(run("$A/x", &v).unwrap(), "a/x");
        assert_eq!(run("x${A}y$A", &v).unwrap(), "xaya");
        assert_eq!(run("${E:-d}", &v).unwrap(), "d");
        assert_eq!(run("${E-d}", &v).unwrap(), "");
        assert_eq!(run("${U-d}", &v).unwrap(), "d");
        assert_eq!(run("${U:-d}", &v).unwrap(), "d");
        assert_eq!(run("${A:-d}", &v).unwrap(), "a");
        assert_eq!(run("${A:+alt}", &v).unwrap(), "alt");
        assert_eq!(run("${E:+alt}", &v).unwrap(), "");
        assert_eq!(run("${E+alt}", &v).unwrap(), "alt");
        assert_eq!(run("${U+alt}", &v).unwrap(), "");
        assert_eq!(run("$$A $${A}", &v).unwrap(), "$A ${A}");
        assert_eq!(run("${U}", &v).unwrap(), "");
        assert_eq!(run("cost: 5$ or $1", &v).unwrap(), "cost: 5$ or $1");
        assert_eq!(
            run("postgres://${HOST:-localhost}:5432/db", &v).unwrap(),
            "postgres://db:5432/db"
        );
        assert_eq!(run("${U:-${A}}", &v).unwrap(), "a");
        assert_eq!(run("${U:-${V:-deep}}-x", &v).unwrap(), "deep-x");
        assert_eq!(run("${U:-a b:c}", &v).unwrap(), "a b:c");
    }

    #[test]
    fn errors() {
        let v = [("E", "")];
        assert_eq!(
            run("${U:?set it}", &v).unwrap_err(),
            InterpError::Required {
                name: "U".into(),
                message: "set it".into()
            }
        );
        assert!(matches!(
            run("${E:?}", &v),
            Err(InterpError::Required { .. })
        ));
        assert_eq!(run("${E?x}", &v).unwrap(), "");
        assert!(matches!(
            run("${U?}", &v),
            Err(InterpError::Required { .. })
        ));
        for bad in ["${", "${A", "${}", "${1A}", "${A%x}", "${A:x}", "${-x}"] {
            assert!(
                matches!(run(bad, &v), Err(InterpError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn uses_are_recorded() {
        let (out, uses) = interpolate("${A}-${U:-d}", &vars(&[("A", "1")])).unwrap();
        assert_eq!(out, "1-d");
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0].value.as_deref(), Some("1"));
        assert!(uses[1].default_used && uses[1].source == VarSource::Unset);
    }

    #[test]
    fn env_files() {
        let env: HashMap<String, String> = [("FROM_ENV".to_string(), "e".to_string())].into();
        let text = "# comment\n\nA=1\nexport B = two words # note\nC='lit ${A} #x'\nD=\"q ${A}\\n${FROM_ENV}\"\nE=${A}${A}\nF=\nFROM_ENV\nM=\"multi\nline\"\nN=a#b\n";
        let e = parse_env_file(text, &env).unwrap();
        let get = |k: &str| e.iter().find(|x| x.key == k).unwrap();
        assert_eq!(get("A").value.as_deref(), Some("1"));
        assert_eq!(get("A").line, 3);
        assert_eq!(get("B").value.as_deref(), Some("two words"));
        assert_eq!(get("C").value.as_deref(), Some("lit ${A} #x"));
        assert_eq!(get("D").value.as_deref(), Some("q 1\ne"));
        assert_eq!(get("E").value.as_deref(), Some("11"));
        assert_eq!(get("F").value.as_deref(), Some(""));
        assert_eq!(get("FROM_ENV").value.as_deref(), Some("e"));
        assert_eq!(get("M").value.as_deref(), Some("multi\nline"));
        assert_eq!(get("M").line, 10);
        assert_eq!(get("N").value.as_deref(), Some("a#b"));
        assert_eq!(parse_env_file("A=1\n=2\n", &env).unwrap_err().line, 2);
        assert_eq!(parse_env_file("A=1\nB=\"open\n", &env).unwrap_err().line, 2);
        assert_eq!(parse_env_file("1A=x\n", &env).unwrap_err().line, 1);
    }

    #[test]
    fn process_environment_wins_over_env_file() {
        let mut v = Vars::new([("A".to_string(), "env".to_string())].into());
        v.add_env_file(
            ".env",
            &[
                EnvEntry {
                    key: "A".into(),
                    value: Some("file".into()),
                    line: 1,
                },
                EnvEntry {
                    key: "B".into(),
                    value: Some("fb".into()),
                    line: 2,
                },
            ],
        );
        assert_eq!(
            v.lookup("A").unwrap(),
            ("env".to_string(), VarSource::Environment)
        );
        assert_eq!(
            v.lookup("B").unwrap(),
            (
                "fb".to_string(),
                VarSource::EnvFile {
                    file: ".env".into(),
                    line: 2
                }
            )
        );
    }

    proptest::proptest! {
        #[test]
        fn interpolation_never_panics(s in "\\PC*") {
            let _ = run(&s, &[("A", "x"), ("B", "")]);
        }

        #[test]
        fn interpolation_of_dollar_heavy_text_never_panics(s in "[${}:?+\\-A-B_a ]{0,40}") {
            let _ = run(&s, &[("A", "x"), ("B", "")]);
        }

        #[test]
        fn text_without_dollar_is_unchanged(s in "[^$]*") {
            proptest::prop_assert_eq!(run(&s, &[]).unwrap(), s);
        }

        #[test]
        fn escaped_dollars_round_trip(s in "[^$]{0,10}", t in "[A-Za-z_{}]{0,10}") {
            let input = format!("{s}$${t}");
            proptest::prop_assert_eq!(run(&input, &[("A", "x")]).unwrap(), format!("{s}${t}"));
        }

        #[test]
        fn env_files_never_panic(s in "\\PC*") {
            let _ = parse_env_file(&s, &HashMap::new());
        }
    }
}
