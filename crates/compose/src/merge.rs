//! One file's tree normalised, then files merged the way compose merges overrides: mappings by
//! key, sequences appended, `command`/`entrypoint`/`healthcheck.test` replaced, `ports`
//! de-duplicated, `volumes`/`secrets`/`configs` merged by target, list-or-mapping attributes
//! (environment, labels, extra_hosts, ...) merged by key, `!reset` and `!override` honoured.

use crate::yaml::{Entry, Node, Value};

/// Attributes that are a list of `KEY=VALUE` or a mapping; normalised to a mapping.
const KEY_VALUE: &[&str] = &["environment", "labels", "annotations", "sysctls"];

/// Normalises list-or-mapping attributes of every service to mappings, so merging and lookup
/// are by key. Each entry keeps the position of the line it came from.
pub fn normalize(root: &mut Node) {
    let Some(services) = get_mut(root, "services") else {
        return;
    };
    let Value::Map(entries) = &mut services.value else {
        return;
    };
    for e in entries.iter_mut() {
        normalize_service(&mut e.value);
    }
}

fn normalize_service(s: &mut Node) {
    let Value::Map(entries) = &mut s.value else {
        return;
    };
    for e in entries.iter_mut() {
        match e.key.as_str() {
            k if KEY_VALUE.contains(&k) => list_to_map(&mut e.value, '=', false),
            "extra_hosts" => list_to_map(&mut e.value, '=', true),
            "networks" | "depends_on" => names_to_map(&mut e.value),
            "build" => {
                if let Value::Map(b) = &mut e.value.value {
                    for be in b.iter_mut() {
                        match be.key.as_str() {
                            "args" | "labels" => list_to_map(&mut be.value, '=', false),
                            "extra_hosts" => list_to_map(&mut be.value, '=', true),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `["A=1", "B"]` -> `{A: "1", B: null}`. For extra_hosts (`host_list`), `host:ip` is accepted
/// too and mapping values that are lists keep their first address.
fn list_to_map(n: &mut Node, sep: char, host_list: bool) {
    match &mut n.value {
        Value::Seq(items) => {
            let mut entries: Vec<Entry> = Vec::new();
            for item in std::mem::take(items) {
                let Some(text) = item.scalar_text() else {
                    continue;
                };
                let split = text.split_once(sep).or_else(|| {
                    if host_list {
                        text.split_once(':')
                    } else {
                        None
                    }
                });
                let (k, v) = match split {
                    Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                    None => (text.trim().to_string(), None),
                };
                let value = match v {
                    Some(v) => Node {
                        value: Value::String(v),
                        pos: item.pos,
                        tag: None,
                        interp: item.interp.clone(),
                    },
                    None => Node::new(Value::Null, item.pos),
                };
                entries.retain(|e| e.key != k);
                entries.push(Entry {
                    key: k,
                    key_pos: item.pos,
                    value,
                });
            }
            n.value = Value::Map(entries);
        }
        Value::Map(entries) if host_list => {
            for e in entries.iter_mut() {
                if let Value::Seq(addrs) = &e.value.value
                    && let Some(first) = addrs.first()
                {
                    e.value = first.clone();
                }
            }
        }
        _ => {}
    }
}

/// `[a, b]` -> `{a: null, b: null}`.
fn names_to_map(n: &mut Node) {
    if let Value::Seq(items) = &mut n.value {
        let entries = std::mem::take(items)
            .into_iter()
            .filter_map(|item| {
                item.scalar_text().map(|k| Entry {
                    key: k,
                    key_pos: item.pos,
                    value: Node::new(Value::Null, item.pos),
                })
            })
            .collect();
        n.value = Value::Map(entries);
    }
}

/// Merges `over` (a later file) into `base`.
pub fn merge_root(base: &mut Node, over: Node) {
    if base.is_null() {
        *base = over;
        return;
    }
    let (Value::Map(b), Value::Map(o)) = (&mut base.value, over.value) else {
        return;
    };
    for oe in o {
        match b.iter_mut().find(|e| e.key == oe.key) {
            Some(be) if oe.key == "services" => {
                merge_sections(&mut be.value, oe.value, merge_service)
            }
            Some(be)
                if matches!(
                    oe.key.as_str(),
                    "networks" | "volumes" | "secrets" | "configs"
                ) =>
            {
                merge_sections(&mut be.value, oe.value, |b, o| merge_node(b, o, ""))
            }
            Some(be) => merge_node(&mut be.value, oe.value, &oe.key),
            None => b.push(oe),
        }
    }
}

fn merge_sections(base: &mut Node, over: Node, item: impl Fn(&mut Node, Node)) {
    if base.is_null() || !matches!(base.value, Value::Map(_)) {
        *base = over;
        return;
    }
    let (Value::Map(b), Value::Map(o)) = (&mut base.value, over.value) else {
        return;
    };
    for oe in o {
        if oe.value.tag.as_deref() == Some("reset") {
            b.retain(|e| e.key != oe.key);
            continue;
        }
        match b.iter_mut().find(|e| e.key == oe.key) {
            Some(be) if be.value.is_null() => be.value = oe.value,
            Some(be) => item(&mut be.value, oe.value),
            None => b.push(oe),
        }
    }
}

fn merge_service(base: &mut Node, over: Node) {
    let Value::Map(b) = &mut base.value else {
        *base = over;
        return;
    };
    let Value::Map(o) = over.value else { return };
    for oe in o {
        if oe.value.tag.as_deref() == Some("reset") {
            b.retain(|e| e.key != oe.key);
            continue;
        }
        let Some(be) = b.iter_mut().find(|e| e.key == oe.key) else {
            b.push(oe);
            continue;
        };
        match oe.key.as_str() {
            _ if oe.value.tag.as_deref() == Some("override") => be.value = oe.value,
            "command" | "entrypoint" => be.value = oe.value,
            "ports" => append_unique(&mut be.value, oe.value, |_| None),
            "volumes" | "secrets" | "configs" => append_unique(&mut be.value, oe.value, target_of),
            "healthcheck" => merge_node(&mut be.value, oe.value, "healthcheck"),
            k => merge_node(&mut be.value, oe.value, k),
        }
    }
}

/// The generic rule: mappings by key, sequences appended (without exact duplicates), scalars
/// replaced. `key` is the attribute name, for the exceptions below it.
fn merge_node(base: &mut Node, over: Node, key: &str) {
    if over.tag.as_deref() == Some("override") {
        *base = over;
        return;
    }
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for oe in o {
                if oe.value.tag.as_deref() == Some("reset") {
                    b.retain(|e| e.key != oe.key);
                    continue;
                }
                match b.iter_mut().find(|e| e.key == oe.key) {
                    // healthcheck.test is a command: replaced, not appended
                    Some(be) if key == "healthcheck" && oe.key == "test" => be.value = oe.value,
                    Some(be) => merge_node(&mut be.value, oe.value, &oe.key),
                    None => b.push(oe),
                }
            }
        }
        (Value::Seq(_), ov @ Value::Seq(_)) => {
            append_unique(
                base,
                Node {
                    value: ov,
                    pos: over.pos,
                    tag: over.tag,
                    interp: over.interp,
                },
                |_| None,
            );
        }
        (_, ov) => {
            *base = Node {
                value: ov,
                pos: over.pos,
                tag: over.tag,
                interp: over.interp,
            };
        }
    }
}

/// Appends the items of `over` to `base`; an item equal to one already there is skipped, and
/// one whose `unique` key matches replaces the earlier item.
fn append_unique(base: &mut Node, over: Node, unique: fn(&Node) -> Option<String>) {
    let Value::Seq(o) = over.value else {
        *base = over;
        return;
    };
    let Value::Seq(b) = &mut base.value else {
        *base = Node {
            value: Value::Seq(o),
            pos: over.pos,
            tag: None,
            interp: None,
        };
        return;
    };
    for item in o {
        if let Some(k) = unique(&item) {
            b.retain(|e| unique(e).as_deref() != Some(k.as_str()));
        } else if b.iter().any(|e| same(e, &item)) {
            continue;
        }
        b.push(item);
    }
}

/// The container path of a volume, secret or config entry.
fn target_of(n: &Node) -> Option<String> {
    match &n.value {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => Some(parts[0].to_string()),
                _ => Some(parts[1].to_string()),
            }
        }
        Value::Map(_) => n
            .get("target")
            .and_then(Node::scalar_text)
            .or_else(|| n.get("source").and_then(Node::scalar_text)),
        _ => None,
    }
}

/// Structural equality, positions ignored.
pub fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|e| y.iter().any(|f| f.key == e.key && same(&e.value, &f.value)))
        }
        (x, y) => x == y,
    }
}

pub fn get_mut<'a>(n: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    match &mut n.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn load(files: &[&str]) -> Node {
        let mut root = Node::new(Value::Null, Default::default());
        for (i, f) in files.iter().enumerate() {
            let mut n = parse(f, i).unwrap();
            normalize(&mut n);
            merge_root(&mut root, n);
        }
        root
    }

    fn texts(n: &Node) -> Vec<String> {
        n.as_seq()
            .unwrap()
            .iter()
            .map(|x| x.scalar_text().unwrap())
            .collect()
    }

    #[test]
    fn services_merge_by_key_lists_append_scalars_replace() {
        let base = "services:\n  web:\n    image: a\n    ports: [\"80:80\"]\n    dns: [1.1.1.1]\n    environment:\n      - A=1\n      - B=2\n    extra_hosts: [\"x:1.2.3.4\"]\n    command: [run, a]\n  db:\n    image: pg\n";
        let over = "services:\n  web:\n    image: b\n    ports: [\"80:80\", \"443:443\"]\n    dns: [8.8.8.8]\n    environment:\n      B: three\n      C: \"4\"\n    extra_hosts:\n      host.docker.internal: host-gateway\n    command: [run, b]\n";
        let root = load(&[base, over]);
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().as_str(), Some("b"));
        assert_eq!(web.get("image").unwrap().pos.file, 1);
        assert_eq!(texts(web.get("ports").unwrap()), vec!["80:80", "443:443"]);
        assert_eq!(texts(web.get("dns").unwrap()), vec!["1.1.1.1", "8.8.8.8"]);
        assert_eq!(texts(web.get("command").unwrap()), vec!["run", "b"]);
        let env = web.get("environment").unwrap();
        assert_eq!(env.get("A").unwrap().as_str(), Some("1"));
        assert_eq!(env.get("A").unwrap().pos.line, 7);
        assert_eq!(env.get("B").unwrap().as_str(), Some("three"));
        assert_eq!(env.get("B").unwrap().pos.file, 1);
        let eh = web.get("extra_hosts").unwrap();
        assert_eq!(eh.get("x").unwrap().as_str(), Some("1.2.3.4"));
        assert_eq!(
            eh.get("host.docker.internal").unwrap().as_str(),
            Some("host-gateway")
        );
        assert!(root.get("services").unwrap().get("db").is_some());
    }

    #[test]
    fn reset_override_and_volumes_by_target() {
        let base = "services:\n  web:\n    image: a\n    ports: [\"80:80\"]\n    volumes: [\"a:/data\", \"b:/logs\"]\n    healthcheck:\n      test: [CMD, a]\n      interval: 5s\n";
        let over = "services:\n  web:\n    ports: !reset []\n    volumes: [\"c:/data\"]\n    healthcheck:\n      test: [CMD, b]\n    environment: !override\n      A: 1\n";
        let root = load(&[base, over]);
        let web = root.get("services").unwrap().get("web").unwrap();
        assert!(web.get("ports").is_none());
        assert_eq!(
            texts(web.get("volumes").unwrap()),
            vec!["b:/logs", "c:/data"]
        );
        assert_eq!(
            texts(web.get("healthcheck").unwrap().get("test").unwrap()),
            vec!["CMD", "b"]
        );
        assert_eq!(
            web.get("healthcheck")
                .unwrap()
                .get("interval")
                .unwrap()
                .as_str(),
            Some("5s")
        );
    }

    #[test]
    fn networks_as_list_or_map() {
        let base =
            "services:\n  web:\n    networks: [front, back]\nnetworks:\n  front: {}\n  back:\n";
        let over = "services:\n  web:\n    networks:\n      back:\n        aliases: [api]\nnetworks:\n  back:\n    driver_opts:\n      com.docker.network.driver.mtu: \"1400\"\n";
        let root = load(&[base, over]);
        let nets = root
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("networks")
            .unwrap();
        let keys: Vec<&str> = nets
            .as_map()
            .unwrap()
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, vec!["front", "back"]);
        assert!(nets.get("back").unwrap().get("aliases").is_some());
        let back = root.get("networks").unwrap().get("back").unwrap();
        assert_eq!(
            back.get("driver_opts")
                .unwrap()
                .get("com.docker.network.driver.mtu")
                .unwrap()
                .as_str(),
            Some("1400")
        );
    }
}
