//! The compose keys hostreach knows (the Compose Specification's), checked per file so an
//! unknown key is reported at its own line; the key is then dropped and the rest is linted.
//! `x-` extension keys are allowed wherever the specification allows them.

use crate::yaml::{Node, Value};

const TOP: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

const SERVICE: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

const BUILD: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "entitlements",
    "args",
    "ssh",
    "labels",
    "cache_from",
    "cache_to",
    "no_cache",
    "additional_contexts",
    "network",
    "pull",
    "target",
    "shm_size",
    "extra_hosts",
    "isolation",
    "privileged",
    "secrets",
    "tags",
    "ulimits",
    "platforms",
];

const HEALTHCHECK: &[&str] = &[
    "disable",
    "interval",
    "retries",
    "test",
    "timeout",
    "start_period",
    "start_interval",
];
const LOGGING: &[&str] = &["driver", "options"];
const DEPLOY: &[&str] = &[
    "mode",
    "endpoint_mode",
    "replicas",
    "labels",
    "rollback_config",
    "update_config",
    "resources",
    "restart_policy",
    "placement",
];
const SERVICE_NETWORK: &[&str] = &[
    "aliases",
    "interface_name",
    "ipv4_address",
    "ipv6_address",
    "link_local_ips",
    "mac_address",
    "driver_opts",
    "priority",
    "gw_priority",
];
const DEPENDS_ON: &[&str] = &["restart", "required", "condition"];
const PORT: &[&str] = &[
    "name",
    "mode",
    "host_ip",
    "target",
    "published",
    "protocol",
    "app_protocol",
];
const MOUNT: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "consistency",
    "bind",
    "volume",
    "tmpfs",
    "image",
];
const NETWORK: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "ipam",
    "external",
    "internal",
    "enable_ipv4",
    "enable_ipv6",
    "attachable",
    "labels",
];
const IPAM: &[&str] = &["driver", "config", "options"];
const IPAM_CONFIG: &[&str] = &["subnet", "ip_range", "gateway", "aux_addresses"];
const VOLUME: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];
const SECRET: &[&str] = &[
    "name",
    "environment",
    "file",
    "external",
    "labels",
    "driver",
    "driver_opts",
    "template_driver",
];
const CONFIG: &[&str] = &[
    "name",
    "content",
    "environment",
    "file",
    "external",
    "labels",
    "template_driver",
];

/// A problem in one file: line and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub line: usize,
    pub message: String,
}

/// Checks one file's tree, removing what is unknown or of the wrong type so the rest can be
/// linted. Returns what was wrong.
pub fn check(root: &mut Node) -> Vec<SchemaError> {
    let mut errs = Vec::new();
    if root.is_null() {
        return errs;
    }
    if !matches!(root.value, Value::Map(_)) {
        errs.push(SchemaError {
            line: root.pos.line,
            message: format!(
                "a compose file is a mapping (services:, networks:, ...), not {}",
                root.kind_name()
            ),
        });
        root.value = Value::Map(Vec::new());
        return errs;
    }
    known_keys(root, TOP, "top-level", &mut errs);
    if let Value::Map(entries) = &mut root.value {
        for e in entries.iter_mut() {
            match e.key.as_str() {
                "services" => each_item(&mut e.value, "services", &mut errs, check_service),
                "networks" => each_item(&mut e.value, "networks", &mut errs, |n, name, errs| {
                    known_keys(n, NETWORK, &format!("network {name:?}"), errs);
                    if let Some(ipam) = get_mut(n, "ipam") {
                        known_keys(ipam, IPAM, &format!("network {name:?} ipam"), errs);
                        if let Some(Value::Seq(items)) =
                            get_mut(ipam, "config").map(|c| &mut c.value)
                        {
                            for item in items.iter_mut() {
                                known_keys(
                                    item,
                                    IPAM_CONFIG,
                                    &format!("network {name:?} ipam config"),
                                    errs,
                                );
                            }
                        }
                    }
                    expect_map(n, "driver_opts", errs);
                }),
                "volumes" => each_item(&mut e.value, "volumes", &mut errs, |n, name, errs| {
                    known_keys(n, VOLUME, &format!("volume {name:?}"), errs)
                }),
                "secrets" => each_item(&mut e.value, "secrets", &mut errs, |n, name, errs| {
                    known_keys(n, SECRET, &format!("secret {name:?}"), errs)
                }),
                "configs" => each_item(&mut e.value, "configs", &mut errs, |n, name, errs| {
                    known_keys(n, CONFIG, &format!("config {name:?}"), errs)
                }),
                _ => {}
            }
        }
    }
    errs
}

fn check_service(s: &mut Node, name: &str, errs: &mut Vec<SchemaError>) {
    let what = format!("service {name:?}");
    known_keys(s, SERVICE, &what, errs);
    if let Some(b) = get_mut(s, "build")
        && matches!(b.value, Value::Map(_))
    {
        known_keys(b, BUILD, &format!("{what} build"), errs);
    }
    if let Some(h) = get_mut(s, "healthcheck") {
        known_keys(h, HEALTHCHECK, &format!("{what} healthcheck"), errs);
    }
    if let Some(l) = get_mut(s, "logging") {
        known_keys(l, LOGGING, &format!("{what} logging"), errs);
    }
    if let Some(d) = get_mut(s, "deploy") {
        known_keys(d, DEPLOY, &format!("{what} deploy"), errs);
    }
    if let Some(n) = get_mut(s, "networks")
        && let Value::Map(entries) = &mut n.value
    {
        for e in entries.iter_mut() {
            if matches!(e.value.value, Value::Map(_)) {
                known_keys(
                    &mut e.value,
                    SERVICE_NETWORK,
                    &format!("{what} network {:?}", e.key),
                    errs,
                );
            }
        }
    }
    if let Some(d) = get_mut(s, "depends_on")
        && let Value::Map(entries) = &mut d.value
    {
        for e in entries.iter_mut() {
            known_keys(
                &mut e.value,
                DEPENDS_ON,
                &format!("{what} depends_on {:?}", e.key),
                errs,
            );
        }
    }
    for (key, allowed) in [("ports", PORT), ("volumes", MOUNT)] {
        if let Some(Value::Seq(items)) = get_mut(s, key).map(|n| &mut n.value) {
            for item in items.iter_mut() {
                if matches!(item.value, Value::Map(_)) {
                    known_keys(item, allowed, &format!("{what} {key} entry"), errs);
                }
            }
        }
    }
    // The types the rules read; a wrong one is dropped after saying so.
    for key in [
        "environment",
        "labels",
        "extra_hosts",
        "sysctls",
        "annotations",
    ] {
        expect(
            s,
            key,
            errs,
            |n| matches!(n.value, Value::Map(_) | Value::Seq(_) | Value::Null),
            "a mapping or a list",
        );
    }
    for key in ["command", "entrypoint"] {
        expect(
            s,
            key,
            errs,
            |n| matches!(n.value, Value::String(_) | Value::Seq(_) | Value::Null),
            "a string or a list",
        );
    }
    expect(
        s,
        "network_mode",
        errs,
        |n| matches!(n.value, Value::String(_)),
        "a string",
    );
    expect(
        s,
        "networks",
        errs,
        |n| matches!(n.value, Value::Map(_) | Value::Seq(_) | Value::Null),
        "a mapping or a list",
    );
    for key in ["ports", "expose", "dns"] {
        expect(
            s,
            key,
            errs,
            |n| {
                matches!(
                    n.value,
                    Value::Seq(_) | Value::String(_) | Value::Number(_) | Value::Null
                )
            },
            "a list",
        );
    }
    expect(
        s,
        "env_file",
        errs,
        |n| matches!(n.value, Value::Seq(_) | Value::String(_)),
        "a path or a list of paths",
    );
    expect(
        s,
        "healthcheck",
        errs,
        |n| matches!(n.value, Value::Map(_) | Value::Null),
        "a mapping",
    );
}

fn each_item(
    section: &mut Node,
    what: &str,
    errs: &mut Vec<SchemaError>,
    f: impl Fn(&mut Node, &str, &mut Vec<SchemaError>),
) {
    match &mut section.value {
        Value::Map(entries) => {
            let mut keep = Vec::with_capacity(entries.len());
            for mut e in std::mem::take(entries) {
                if e.key.starts_with("x-") && what != "services" {
                    keep.push(e);
                    continue;
                }
                if !valid_name(&e.key) {
                    errs.push(SchemaError {
                        line: e.key_pos.line,
                        message: format!(
                            "{what}: {:?} is not a valid name (letters, digits, `.`, `_`, `-`)",
                            e.key
                        ),
                    });
                    continue;
                }
                match e.value.value {
                    Value::Map(_) => f(&mut e.value, &e.key, errs),
                    Value::Null if what != "services" => {}
                    _ => {
                        errs.push(SchemaError {
                            line: e.value.pos.line,
                            message: format!(
                                "{what}.{} must be a mapping, not {}",
                                e.key,
                                e.value.kind_name()
                            ),
                        });
                        continue;
                    }
                }
                keep.push(e);
            }
            *entries = keep;
        }
        Value::Null => {}
        _ => {
            errs.push(SchemaError {
                line: section.pos.line,
                message: format!("{what} must be a mapping, not {}", section.kind_name()),
            });
            section.value = Value::Map(Vec::new());
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn known_keys(n: &mut Node, allowed: &[&str], what: &str, errs: &mut Vec<SchemaError>) {
    if let Value::Map(entries) = &mut n.value {
        entries.retain(|e| {
            if e.key.starts_with("x-") || allowed.contains(&e.key.as_str()) {
                return true;
            }
            let hint = closest(&e.key, allowed)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            errs.push(SchemaError {
                line: e.key_pos.line,
                message: format!("unknown key `{}` in {what}{hint}", e.key),
            });
            false
        });
    } else if !n.is_null() {
        errs.push(SchemaError {
            line: n.pos.line,
            message: format!("{what} must be a mapping, not {}", n.kind_name()),
        });
        n.value = Value::Map(Vec::new());
    }
}

fn get_mut<'a>(n: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    match &mut n.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value),
        _ => None,
    }
}

fn expect(
    s: &mut Node,
    key: &str,
    errs: &mut Vec<SchemaError>,
    ok: impl Fn(&Node) -> bool,
    wanted: &str,
) {
    if let Value::Map(entries) = &mut s.value {
        entries.retain(|e| {
            if e.key != key || ok(&e.value) || e.value.tag.is_some() {
                return true;
            }
            errs.push(SchemaError {
                line: e.value.pos.line,
                message: format!("`{key}` must be {wanted}, not {}", e.value.kind_name()),
            });
            false
        });
    }
}

fn expect_map(n: &mut Node, key: &str, errs: &mut Vec<SchemaError>) {
    expect(
        n,
        key,
        errs,
        |v| matches!(v.value, Value::Map(_) | Value::Null),
        "a mapping",
    );
}

/// The allowed key nearest to `key`, if it is close enough to be a typo.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (levenshtein(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4) && *d < a.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn unknown_keys_are_reported_at_their_line_and_dropped() {
        let mut root = parse("services:\n  web:\n    image: x\n    extra_host:\n      - a:b\n    x-mine: 1\nnetwork:\n  a: {}\nx-top: 1\n", 0).unwrap();
        let errs = check(&mut root);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, 7);
        assert!(
            errs[0].message.contains("did you mean `networks`"),
            "{errs:?}"
        );
        assert_eq!(errs[1].line, 4);
        assert!(
            errs[1].message.contains("`extra_host`") && errs[1].message.contains("`extra_hosts`"),
            "{errs:?}"
        );
        let web = root.get("services").unwrap().get("web").unwrap();
        assert!(web.get("extra_host").is_none());
        assert!(web.get("image").is_some() && web.get("x-mine").is_some());
    }

    #[test]
    fn nested_objects_and_types() {
        let src = "services:\n  a:\n    image: x\n    healthcheck:\n      tset: [CMD]\n    environment: 3\n    networks:\n      n1:\n        ipv4addr: 1.2.3.4\nnetworks:\n  n1:\n    driver_opts:\n      com.docker.network.driver.mtu: 1400\n    ipam:\n      config:\n        - subnet: 10.0.0.0/24\n          gw: 10.0.0.1\n";
        let mut root = parse(src, 0).unwrap();
        let errs = check(&mut root);
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert!(
            lines.contains(&5) && lines.contains(&6) && lines.contains(&9) && lines.contains(&17),
            "{errs:?}"
        );
        assert!(
            root.get("services")
                .unwrap()
                .get("a")
                .unwrap()
                .get("environment")
                .is_none()
        );
    }

    #[test]
    fn a_service_that_is_not_a_mapping() {
        let mut root = parse("services:\n  a: 3\n  b:\n    image: x\n", 0).unwrap();
        let errs = check(&mut root);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 2);
        assert!(root.get("services").unwrap().get("b").is_some());
        assert!(root.get("services").unwrap().get("a").is_none());
    }

    #[test]
    fn typo_hints() {
        assert_eq!(closest("netwrk_mode", SERVICE), Some("network_mode"));
        assert_eq!(closest("environmnet", SERVICE), Some("environment"));
        assert_eq!(closest("zzzzzz", SERVICE), None);
    }
}
