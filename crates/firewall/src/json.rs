//! One read-only view of a JSON value for the nft reader, over two representations: a
//! `serde_json::Value` tree (documents handed over as trees, named sets) and a simd-json tape
//! (each rule of `nft -j` output, parsed into a reused flat buffer: no allocation per node, which
//! was most of the time on 50,000 rules). Both answer the same way, down to the order of keys when
//! a value is printed as JSON (sorted, as `serde_json::Value` prints them) and a key written twice
//! (the last one counts, as in a `serde_json::Value`), so a rule reads the same whichever way it
//! came. Where simd-json reads a text differently from serde_json (see [`simd_reads_as_serde`]),
//! the text is read as a tree.

use serde_json::Value;
use simd_json::prelude::ValueAsScalar;

pub(crate) type Tape<'a> = simd_json::tape::Value<'a, 'a>;

pub(crate) trait J<'a>: Copy + 'a {
    /// JSON's null (what a missing key reads as where nft's own printer would print `null`).
    fn null() -> Self;
    fn as_str(self) -> Option<&'a str>;
    fn as_u64(self) -> Option<u64>;
    fn as_i64(self) -> Option<i64>;
    fn as_bool(self) -> Option<bool>;
    fn is_number(self) -> bool;
    fn is_array(self) -> bool;
    fn is_object(self) -> bool;
    fn get(self, key: &str) -> Option<Self>;
    /// An object's entries, in no particular order.
    fn entries(self) -> impl Iterator<Item = (&'a str, Self)>;
    /// An array's items (none for anything else).
    fn items(self) -> impl Iterator<Item = Self>;
    /// An array's length.
    fn arr_len(self) -> Option<usize>;
    /// An object's number of keys.
    fn obj_len(self) -> Option<usize>;
    /// Prints a number as serde_json does.
    fn write_number(self, out: &mut String);

    /// The object's first key and its value, as `serde_json::Value` orders keys (sorted; of a key
    /// written twice, the last): the statement or expression an nft object stands for (nft writes
    /// one key).
    fn entry(self) -> Option<(&'a str, Self)> {
        self.entries().fold(None, |m: Option<(&'a str, Self)>, e| match m {
            Some(m) if m.0 < e.0 => Some(m),
            _ => Some(e),
        })
    }
    /// The values of `keys` in an object, found in one pass over its entries (of a key written
    /// twice, the last, as [`J::get`] finds it).
    fn fields<const N: usize>(self, keys: [&str; N]) -> [Option<Self>; N] {
        let mut out = [None; N];
        for (k, v) in self.entries() {
            if let Some(i) = keys.iter().position(|x| *x == k) {
                out[i] = Some(v);
            }
        }
        out
    }
    /// `[a, b]`.
    fn pair(self) -> Option<(Self, Self)> {
        if self.arr_len() != Some(2) {
            return None;
        }
        let mut it = self.items();
        Some((it.next()?, it.next()?))
    }
}

static NULL: Value = Value::Null;

impl<'a> J<'a> for &'a Value {
    fn null() -> Self {
        &NULL
    }
    fn as_str(self) -> Option<&'a str> {
        Value::as_str(self)
    }
    fn as_u64(self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_i64(self) -> Option<i64> {
        Value::as_i64(self)
    }
    fn as_bool(self) -> Option<bool> {
        Value::as_bool(self)
    }
    fn is_number(self) -> bool {
        Value::is_number(self)
    }
    fn is_array(self) -> bool {
        Value::is_array(self)
    }
    fn is_object(self) -> bool {
        Value::is_object(self)
    }
    fn get(self, key: &str) -> Option<Self> {
        self.as_object()?.get(key)
    }
    fn entries(self) -> impl Iterator<Item = (&'a str, Self)> {
        self.as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v))
    }
    fn items(self) -> impl Iterator<Item = Self> {
        self.as_array().into_iter().flatten()
    }
    fn arr_len(self) -> Option<usize> {
        self.as_array().map(Vec::len)
    }
    fn obj_len(self) -> Option<usize> {
        self.as_object().map(serde_json::Map::len)
    }
    fn write_number(self, out: &mut String) {
        if let Value::Number(n) = self {
            use std::fmt::Write as _;
            let _ = write!(out, "{n}");
        }
    }
    fn entry(self) -> Option<(&'a str, Self)> {
        self.as_object()?.iter().next().map(|(k, v)| (k.as_str(), v))
    }
    fn fields<const N: usize>(self, keys: [&str; N]) -> [Option<Self>; N] {
        keys.map(|k| J::get(self, k))
    }
}

impl<'a> J<'a> for Tape<'a> {
    fn null() -> Self {
        simd_json::tape::Value::null()
    }
    fn as_str(self) -> Option<&'a str> {
        simd_json::prelude::ValueIntoString::into_string(self)
    }
    fn as_u64(self) -> Option<u64> {
        ValueAsScalar::as_u64(&self)
    }
    fn as_i64(self) -> Option<i64> {
        ValueAsScalar::as_i64(&self)
    }
    fn as_bool(self) -> Option<bool> {
        ValueAsScalar::as_bool(&self)
    }
    fn is_number(self) -> bool {
        self.as_i64().is_some() || self.as_u64().is_some() || ValueAsScalar::as_f64(&self).is_some()
    }
    fn is_array(self) -> bool {
        Tape::is_array(&self)
    }
    fn is_object(self) -> bool {
        Tape::is_object(&self)
    }
    fn get(self, key: &str) -> Option<Self> {
        // the last of a key written twice, as serde_json keeps it
        self.entries().filter(|(k, _)| *k == key).last().map(|(_, v)| v)
    }
    fn entries(self) -> impl Iterator<Item = (&'a str, Self)> {
        self.as_object().into_iter().flat_map(|o| o.iter())
    }
    fn items(self) -> impl Iterator<Item = Self> {
        self.as_array().into_iter().flat_map(|a| a.iter())
    }
    fn arr_len(self) -> Option<usize> {
        self.as_array().map(|a| a.len())
    }
    fn obj_len(self) -> Option<usize> {
        // keys, not entries: a key written twice is one
        let o = self.as_object()?;
        if o.len() < 2 {
            return Some(o.len());
        }
        let mut keys: smallvec::SmallVec<[&str; 8]> = o.keys().collect();
        keys.sort_unstable();
        keys.dedup();
        Some(keys.len())
    }
    fn entry(self) -> Option<(&'a str, Self)> {
        let o = self.as_object()?;
        let mut it = o.iter();
        let first = it.next()?;
        if o.len() == 1 {
            return Some(first);
        }
        Some(it.fold(first, |m, e| if e.0 <= m.0 { e } else { m }))
    }
    fn write_number(self, out: &mut String) {
        use std::fmt::Write as _;
        if let Some(n) = ValueAsScalar::as_u64(&self) {
            let _ = write!(out, "{n}");
        } else if let Some(n) = ValueAsScalar::as_i64(&self) {
            let _ = write!(out, "{n}");
        } else if let Some(n) = ValueAsScalar::as_f64(&self).and_then(serde_json::Number::from_f64) {
            let _ = write!(out, "{n}");
        }
    }
}

/// Whether simd-json's tape of `text` reads as serde_json reads the text. It does not when a
/// string holds a surrogate escape (simd-json reads a lone `\ud800` as U+0000, serde_json refuses
/// it), a number is `-0` (an integer for simd-json, a float for serde_json) or any other float
/// (rounded otherwise in the last digit), or values nest deeper than 64 (serde_json stops at
/// 128, simd-json does not, and what reads the tape recurses). All found by reviewing and
/// fuzzing the two readers against each other; nft writes none of them, and a text that has one
/// is read as a tree.
/// `texts`: the pieces the tape was parsed from.
pub(crate) fn simd_reads_as_serde(texts: &[&str], tape: &simd_json::tape::Tape<'_>) -> bool {
    texts.iter().all(|t| text_reads_as_serde(t)) && tape_reads_as_serde(tape)
}

/// Surrogate escapes and `-0`, from the text.
fn text_reads_as_serde(text: &str) -> bool {
    let b = text.as_bytes();
    for i in memchr::memmem::find_iter(b, b"\\u") {
        if b.get(i + 2).is_some_and(|d| d.eq_ignore_ascii_case(&b'd')) && matches!(b.get(i + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')) {
            return false;
        }
    }
    for i in memchr::memmem::find_iter(b, b"-0") {
        let starts_value = i == 0 || matches!(b[i - 1], b':' | b'[' | b',' | b' ' | b'\t' | b'\n' | b'\r');
        if starts_value && !matches!(b.get(i + 2), Some(b'.' | b'e' | b'E')) {
            return false;
        }
    }
    true
}

/// Floats and depth, from the tape.
fn tape_reads_as_serde(tape: &simd_json::tape::Tape<'_>) -> bool {
    use simd_json::{StaticNode, tape::Node};
    // where each open array or object ends, innermost last
    const DEEPEST: usize = 64;
    let mut ends = [0usize; DEEPEST];
    let mut depth = 0;
    for (i, n) in tape.0.iter().enumerate() {
        while depth > 0 && ends[depth - 1] <= i {
            depth -= 1;
        }
        match n {
            Node::Static(StaticNode::F64(_)) => return false,
            Node::Array { count, .. } | Node::Object { count, .. } => {
                if depth == DEEPEST {
                    return false;
                }
                ends[depth] = i + 1 + count;
                depth += 1;
            }
            _ => {}
        }
    }
    true
}

/// Compact JSON, keys sorted (as `serde_json::to_string` prints a `Value`).
pub(crate) fn write_json<'a, V: J<'a>>(v: V, out: &mut String) {
    if let Some(s) = v.as_str() {
        write_json_str(s, out);
    } else if let Some(b) = v.as_bool() {
        out.push_str(if b { "true" } else { "false" });
    } else if v.is_number() {
        v.write_number(out);
    } else if v.is_array() {
        out.push('[');
        for (i, x) in v.items().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json(x, out);
        }
        out.push(']');
    } else if v.is_object() {
        let mut es: smallvec::SmallVec<[(&str, V); 4]> = v.entries().collect();
        es.sort_by(|a, b| a.0.cmp(b.0));
        // of a key written twice, the last (the sort is stable)
        let last_of_key: smallvec::SmallVec<[bool; 4]> = (0..es.len()).map(|j| es.get(j + 1).is_none_or(|n| n.0 != es[j].0)).collect();
        out.push('{');
        let mut first = true;
        for ((k, x), keep) in es.into_iter().zip(last_of_key) {
            if !keep {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            write_json_str(k, out);
            out.push(':');
            write_json(x, out);
        }
        out.push('}');
    } else {
        out.push_str("null");
    }
}

pub(crate) fn json_string<'a, V: J<'a>>(v: V) -> String {
    let mut s = String::new();
    write_json(v, &mut s);
    s
}

/// A JSON string as serde_json writes it (so both representations print alike): `"` and `\`
/// escaped, control characters as `\n`-style escapes or `\u00XX`, everything else as is.
fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        } else {
            out.push_str(esc);
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(doc: &str, f: impl Fn(&str, &str)) {
        let tree: Value = serde_json::from_str(doc).unwrap();
        let mut buf = doc.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        f(&json_string(&tree), &json_string(tape.as_value()));
    }

    #[test]
    fn prints_alike() {
        for doc in [
            r#"{"b": 1, "a": [1, -2, 18446744073709551615, 1.5, 1e100, "x\"y\\z\u00e9\n"], "c": {"z": null, "y": true, "x": false}}"#,
            r#"[]"#,
            r#"{}"#,
            r#""\u0001""#,
            r#""\u0000\u001f\b\f\r\t\u007f \" \\ / \ud83d\ude00 end""#,
            r#"-9223372036854775808"#,
        ] {
            both(doc, |a, b| assert_eq!(a, b, "{doc}"));
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_escape_as_serde_json_does(s in "\\PC*|[\\x00-\\x20\"\\\\\\x7f]*") {
            let mut out = String::new();
            write_json_str(&s, &mut out);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn reads_alike() {
        let doc = r#"{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [22, 80, -1]}}, "a": 1}"#;
        let tree: Value = serde_json::from_str(doc).unwrap();
        let mut buf = doc.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut buf).unwrap();
        let t = tape.as_value();
        assert_eq!(J::entry(&tree).map(|(k, _)| k), Some("a"));
        assert_eq!(J::entry(t).map(|(k, _)| k), Some("a"));
        let set_t: Vec<Option<u64>> = J::get(t, "match").unwrap().get("right").unwrap().get("set").unwrap().items().map(J::as_u64).collect();
        let set_v: Vec<Option<u64>> = J::get(&tree, "match").unwrap().get("right").unwrap().get("set").unwrap().items().map(J::as_u64).collect();
        assert_eq!(set_t, vec![Some(22), Some(80), None]);
        assert_eq!(set_t, set_v);
        assert_eq!(J::get(t, "match").unwrap().get("right").unwrap().get("set").unwrap().pair(), None);
        assert_eq!(J::get(t, "match").unwrap().obj_len(), Some(3));
        assert!(J::get(t, "nope").is_none());
        let m = J::get(t, "match").unwrap();
        let [op, right, nope] = m.fields(["op", "right", "nope"]);
        assert_eq!((op.and_then(J::as_str), right.map(json_string), nope.is_none()), (Some("=="), Some(r#"{"set":[22,80,-1]}"#.to_string()), true));
        let mv = J::get(&tree, "match").unwrap();
        let [op, right, nope] = mv.fields(["op", "right", "nope"]);
        assert_eq!((op.and_then(J::as_str), right.map(json_string), nope.is_none()), (Some("=="), Some(r#"{"set":[22,80,-1]}"#.to_string()), true));
    }
}
