//! One compose file's YAML, as a tree whose every node knows its file and line.
//!
//! The values come from `serde_norway` (the project's YAML crate: its typing of scalars, its
//! duplicate-key and syntax errors with their location, and `Value::apply_merge` for `<<:` merge
//! keys). `serde_norway` values carry no positions, so the same text is also read by
//! `saphyr-parser`, an event parser whose events carry markers, into a small *marked tree*
//! (aliases expanded to the anchored node, so a value that came through `*alias` keeps the line
//! where it is written). The two trees are then walked together: each mapping key of the
//! serde value is looked up among the marked mapping's own keys first and then in its `<<:`
//! sources, in order — the same precedence as `apply_merge` — and each sequence item by index.
//! Where the two parsers could ever disagree, a node falls back to its parent's position instead
//! of failing.

use saphyr_parser::{Event, Parser, Span};
use std::collections::HashMap;

/// Where a node is written: file index (into the project's sources), 1-based line and column,
/// and the node's extent as character indices into that file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: usize,
    pub line: usize,
    pub col: usize,
    pub start: usize,
    pub end: usize,
}

impl Pos {
    pub fn at_line(file: usize, line: usize) -> Pos {
        Pos {
            file,
            line,
            col: 1,
            start: 0,
            end: 0,
        }
    }
}

/// A YAML node of a compose file: its value, where it is written, its tag (`!reset`,
/// `!override`), and, for a string that `${...}` interpolation changed, the text as written and
/// the variables it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    pub tag: Option<String>,
    pub interp: Option<Box<Interpolated>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A number as YAML wrote it after typing (`1500`, `0.5`).
    Number(String),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// The text of a string before interpolation and what each variable gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpolated {
    pub raw: String,
    pub vars: Vec<crate::interp::VarUse>,
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Node {
        Node {
            value,
            pos,
            tag: None,
            interp: None,
        }
    }
    pub fn string(s: impl Into<String>, pos: Pos) -> Node {
        Node::new(Value::String(s.into()), pos)
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// A scalar as text (strings, numbers, booleans); None for null, sequences and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses one file. `file` is the index recorded in every position.
pub fn parse(text: &str, file: usize) -> Result<Node, YamlError> {
    let mut value: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (mut line, mut col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let message = clean_serde_message(&e.to_string());
            // serde_norway places a duplicate key at its mapping: point at the second key instead
            if message.starts_with("duplicate entry")
                && let Ok(m) = marked_tree(text)
                && let Some(span) = first_duplicate_key(&m)
            {
                line = span.start.line();
                col = span.start.col() + 1;
            }
            return Err(YamlError {
                line: line.max(1),
                col: col.max(1),
                message,
            });
        }
    };
    let marked = marked_tree(text);
    if let Err(e) = value.apply_merge() {
        let line = marked
            .as_ref()
            .ok()
            .and_then(first_merge_key_line)
            .unwrap_or(1);
        return Err(YamlError {
            line,
            col: 1,
            message: format!("merge key `<<`: {e}"),
        });
    }
    let root_pos = Pos {
        file,
        line: 1,
        col: 1,
        start: 0,
        end: 0,
    };
    let m = marked.as_ref().ok();
    Ok(zip(value, m, file, root_pos))
}

/// serde_norway appends " at line L column C" to its messages: the position is reported apart.
fn clean_serde_message(m: &str) -> String {
    match m.find(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

// ------------------------------------------------------------------------------------------
// The marked tree

#[derive(Debug, Clone)]
enum Marked {
    Scalar {
        text: String,
        span: Span,
    },
    Seq {
        items: Vec<Marked>,
        span: Span,
    },
    Map {
        entries: Vec<(Marked, Marked)>,
        span: Span,
    },
}

impl Marked {
    fn span(&self) -> Span {
        match self {
            Marked::Scalar { span, .. } | Marked::Seq { span, .. } | Marked::Map { span, .. } => {
                *span
            }
        }
    }
    fn scalar(&self) -> Option<&str> {
        match self {
            Marked::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

enum Frame {
    Seq(Vec<Marked>, Span, usize),
    Map(Vec<(Marked, Marked)>, Option<Marked>, Span, usize),
}

fn marked_tree(text: &str) -> Result<Marked, String> {
    let mut anchors: HashMap<usize, Marked> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Marked> = None;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| e.to_string())?;
        let done: Option<(Marked, usize)> = match ev {
            Event::Scalar(s, _, anchor, _) => Some((
                Marked::Scalar {
                    text: s.into_owned(),
                    span,
                },
                anchor,
            )),
            Event::Alias(id) => match anchors.get(&id) {
                Some(m) => Some((m.clone(), 0)),
                None => return Err(format!("unknown alias {id}")),
            },
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(Vec::new(), span, anchor));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(Vec::new(), None, span, anchor));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, start, anchor)) => {
                    Some((Marked::Seq { items, span: start }, anchor))
                }
                _ => return Err("unbalanced sequence".into()),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, _, start, anchor)) => Some((
                    Marked::Map {
                        entries,
                        span: start,
                    },
                    anchor,
                )),
                _ => return Err("unbalanced mapping".into()),
            },
            Event::DocumentEnd => {
                if root.is_some() {
                    break;
                }
                None
            }
            _ => None,
        };
        if let Some((node, anchor)) = done {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                Some(Frame::Seq(items, ..)) => items.push(node),
                Some(Frame::Map(entries, pending, ..)) => match pending.take() {
                    None => *pending = Some(node),
                    Some(k) => entries.push((k, node)),
                },
                None => root = Some(node),
            }
        }
    }
    root.ok_or_else(|| "empty document".to_string())
}

fn first_duplicate_key(m: &Marked) -> Option<Span> {
    match m {
        Marked::Scalar { .. } => None,
        Marked::Seq { items, .. } => items.iter().find_map(first_duplicate_key),
        Marked::Map { entries, .. } => {
            for (i, (k, _)) in entries.iter().enumerate() {
                if let Some(text) = k.scalar()
                    && entries[..i].iter().any(|(p, _)| p.scalar() == Some(text))
                {
                    return Some(k.span());
                }
            }
            entries.iter().find_map(|(_, v)| first_duplicate_key(v))
        }
    }
}

fn first_merge_key_line(m: &Marked) -> Option<usize> {
    match m {
        Marked::Scalar { .. } => None,
        Marked::Seq { items, .. } => items.iter().find_map(first_merge_key_line),
        Marked::Map { entries, .. } => entries.iter().find_map(|(k, v)| {
            if k.scalar() == Some("<<") && !matches!(v, Marked::Map { .. }) {
                let all_maps = matches!(v, Marked::Seq { items, .. } if items.iter().all(|i| matches!(i, Marked::Map { .. })));
                if !all_maps {
                    return Some(k.span().start.line());
                }
            }
            first_merge_key_line(v)
        }),
    }
}

/// The entry of `m` for `key`: its own keys first, then its `<<:` sources in order.
fn lookup<'a>(m: &'a Marked, key: &str) -> Option<(&'a Marked, &'a Marked)> {
    let Marked::Map { entries, .. } = m else {
        return None;
    };
    if let Some((k, v)) = entries
        .iter()
        .find(|(k, _)| k.scalar().is_some_and(|s| key_matches(s, key)))
    {
        return Some((k, v));
    }
    for (k, v) in entries {
        if k.scalar() != Some("<<") {
            continue;
        }
        match v {
            Marked::Map { .. } => {
                if let Some(found) = lookup(v, key) {
                    return Some(found);
                }
            }
            Marked::Seq { items, .. } => {
                for item in items {
                    if let Some(found) = lookup(item, key) {
                        return Some(found);
                    }
                }
            }
            Marked::Scalar { .. } => {}
        }
    }
    None
}

fn key_matches(written: &str, key: &str) -> bool {
    written == key
        || (key == "null" && (written == "~" || written.is_empty()))
        || written.eq_ignore_ascii_case(key) && matches!(key, "true" | "false" | "null")
}

fn pos_of(span: Span, file: usize) -> Pos {
    Pos {
        file,
        line: span.start.line(),
        col: span.start.col() + 1,
        start: span.start.index(),
        end: span.end.index(),
    }
}

fn key_string(k: &serde_norway::Value) -> String {
    use serde_norway::Value as V;
    match k {
        V::String(s) => s.clone(),
        V::Number(n) => n.to_string(),
        V::Bool(b) => b.to_string(),
        V::Null => "null".to_string(),
        V::Tagged(t) => key_string(&t.value),
        V::Sequence(_) | V::Mapping(_) => serde_norway::to_string(k)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn zip(v: serde_norway::Value, m: Option<&Marked>, file: usize, fallback: Pos) -> Node {
    use serde_norway::Value as V;
    let pos = m.map(|m| pos_of(m.span(), file)).unwrap_or(fallback);
    match v {
        V::Null => Node::new(Value::Null, pos),
        V::Bool(b) => Node::new(Value::Bool(b), pos),
        V::Number(n) => Node::new(Value::Number(n.to_string()), pos),
        V::String(s) => Node::new(Value::String(s), pos),
        V::Sequence(items) => {
            let marked_items = match m {
                Some(Marked::Seq { items, .. }) => Some(items),
                _ => None,
            };
            let nodes = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| zip(item, marked_items.and_then(|mi| mi.get(i)), file, pos))
                .collect();
            Node::new(Value::Seq(nodes), pos)
        }
        V::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, val) in map {
                let key = key_string(&k);
                let found = m.and_then(|m| lookup(m, &key));
                let key_pos = found.map(|(mk, _)| pos_of(mk.span(), file)).unwrap_or(pos);
                let value = zip(val, found.map(|(_, mv)| mv), file, key_pos);
                entries.push(Entry {
                    key,
                    key_pos,
                    value,
                });
            }
            Node::new(Value::Map(entries), pos)
        }
        V::Tagged(t) => {
            let tag = t.tag.to_string();
            let mut node = zip(t.value, m, file, fallback);
            node.tag = Some(tag.trim_start_matches('!').to_string());
            node
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(root: &Node, path: &[&str]) -> usize {
        let mut n = root;
        for p in path {
            n = match p.parse::<usize>() {
                Ok(i) => &n.as_seq().unwrap()[i],
                Err(_) => n.get(p).unwrap_or_else(|| panic!("no {p}")),
            };
        }
        n.pos.line
    }

    #[test]
    fn every_value_knows_its_line() {
        let src = "services:\n  web:\n    image: x\n    environment:\n      - A=1\n      - B=2\n    command: |\n      run\n      more\n";
        let root = parse(src, 0).unwrap();
        assert_eq!(line_of(&root, &["services", "web"]), 3);
        assert_eq!(
            root.get("services")
                .unwrap()
                .entry("web")
                .unwrap()
                .key_pos
                .line,
            2
        );
        assert_eq!(line_of(&root, &["services", "web", "environment", "1"]), 6);
        assert_eq!(line_of(&root, &["services", "web", "command"]), 8);
        assert_eq!(
            root.get("services")
                .unwrap()
                .get("web")
                .unwrap()
                .get("command")
                .unwrap()
                .as_str(),
            Some("run\nmore\n")
        );
    }

    #[test]
    fn merged_keys_keep_the_line_of_the_anchor() {
        let src = "x-common: &common\n  environment:\n    DB: postgres://localhost/db\n  restart: always\nservices:\n  a:\n    <<: *common\n    image: a\n  b:\n    <<: [*common]\n    restart: never\n";
        let root = parse(src, 0).unwrap();
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.get("environment").unwrap().get("DB").unwrap().pos.line, 3);
        assert_eq!(a.entry("restart").unwrap().key_pos.line, 4);
        assert_eq!(a.entry("image").unwrap().key_pos.line, 8);
        let b = root.get("services").unwrap().get("b").unwrap();
        assert_eq!(b.get("restart").unwrap().as_str(), Some("never"));
        assert_eq!(b.entry("restart").unwrap().key_pos.line, 11);
        assert!(b.get("<<").is_none());
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("services:\n  web:\n    image: [a\n", 0).unwrap_err();
        assert!(e.line >= 3, "{e:?}");
        let e = parse("a: 1\na: 2\n", 0).unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
        assert!(e.message.contains("duplicate"), "{e:?}");
        let e = parse("a:\n  <<: 3\n", 0).unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
    }

    #[test]
    fn tags_are_kept() {
        let root = parse("ports: !reset []\nenv: !override\n  A: 1\n", 0).unwrap();
        assert_eq!(root.get("ports").unwrap().tag.as_deref(), Some("reset"));
        assert_eq!(root.get("env").unwrap().tag.as_deref(), Some("override"));
        assert_eq!(root.get("env").unwrap().get("A").unwrap().pos.line, 3);
    }

    #[test]
    fn non_string_keys_and_values() {
        let root = parse("1: one\ntrue: yes\nmtu: 1400\n", 0).unwrap();
        assert_eq!(root.entry("1").unwrap().key_pos.line, 1);
        assert_eq!(root.entry("true").unwrap().key_pos.line, 2);
        assert_eq!(
            root.get("mtu").unwrap().scalar_text().as_deref(),
            Some("1400")
        );
    }
}
