//! `hostreach compose lint` on a real compose project in the lab: two networks, a service using
//! host.docker.internal without extra_hosts, one with a hardcoded 172.17.0.1 while the host
//! service listens only on docker0's address, and one that is fine. The project is brought up
//! with Debian's docker-compose against the lab's dockerd, so each finding is checked against
//! what really happens, and each is asserted with its file, line and service.

use hostreach_labtests::*;
use serde_json::Value;
use std::time::Duration;

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in the file")) as u64 + 1
}

fn findings<'a>(run: &'a Run, code: &str) -> Vec<&'a Value> {
    run.json()["findings"].as_array().unwrap_or_else(|| panic!("no findings array:\n{run}")).iter().filter(|f| f["code"] == code).collect()
}

#[test]
fn lint_findings_match_what_happens_in_the_lab() {
    let lab = Lab::get();
    let api_port = lab.free_port();
    let db_port = lab.free_port();
    let yaml = three_service_project(api_port, db_port);
    let mut p = ComposeProject::new("lint", &[("compose.yaml", yaml.clone())]);
    let file = p.path("compose.yaml");

    // --- the lint, before anything runs
    let run = hostreach(&["compose", "lint", "--project-directory", p.dir.to_str().unwrap(), "--format", "json"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.json()["schema"], "hostreach/v1");
    assert_eq!(run.json()["files"], serde_json::json!([file]));

    let alias = findings(&run, "HOST_ALIAS_NOT_MAPPED");
    assert_eq!(alias.len(), 1, "{run}");
    assert_eq!(alias[0]["service"], "alias");
    assert_eq!(alias[0]["file"], file.as_str());
    assert_eq!(alias[0]["line"], line_of(&yaml, "API_URL: http://host.docker.internal"));
    assert_eq!(alias[0]["severity"], "error");
    let fix: Vec<&str> = alias[0]["fix"][0]["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(fix, vec!["    extra_hosts:", "      - \"host.docker.internal:host-gateway\""]);

    let gw = findings(&run, "HARDCODED_GATEWAY");
    assert_eq!(gw.len(), 1, "{run}");
    assert_eq!(gw[0]["service"], "gateway");
    assert_eq!(gw[0]["file"], file.as_str());
    assert_eq!(gw[0]["line"], line_of(&yaml, "DB_HOST: 172.17.0.1"));
    // the lab host has docker0 with 172.17.0.1: a warning that says where the packet arrives
    assert_eq!(gw[0]["severity"], "warning", "{run}");
    let summary = gw[0]["summary"].as_str().unwrap();
    assert!(summary.contains("belongs to docker0") && summary.contains("scoped to docker0"), "{summary}");
    assert_json_subset(gw[0], &serde_json::json!({"evidence": [{"kind": "address", "address": "172.17.0.1", "interface": "docker0"}]}));

    // the fine service has nothing, and no other finding is there
    assert!(run.json()["findings"].as_array().unwrap().iter().all(|f| f["service"] != "fine"), "{run}");
    assert_eq!(run.json()["findings"].as_array().unwrap().len(), 2, "{run}");
    // the lab host has no default route: MTU_UNSET is not checked, and that is said
    assert!(run.json()["notes"].as_array().unwrap().iter().any(|n| n["message"].as_str().unwrap().starts_with("MTU_UNSET not checked")), "{run}");

    // text: file:line for each
    let text = hostreach(&["compose", "lint", "--project-directory", p.dir.to_str().unwrap()]);
    assert_eq!(text.code, 1, "{text}");
    assert!(text.stdout.contains(&format!("{file}:{}: error HOST_ALIAS_NOT_MAPPED", line_of(&yaml, "API_URL: http://host.docker.internal"))), "{text}");

    // --- what really happens
    let _api = lab.listener(Proto::Tcp, BRIDGE_GW, api_port);
    let _db = lab.listener(Proto::Tcp, BRIDGE_GW, db_port); // only on docker0's address
    p.up();
    // alias: no host.docker.internal in its /etc/hosts; fine: mapped to docker0's address
    let hosts_alias = p.exec(lab, "alias", &["cat", "/etc/hosts"]);
    assert!(!hosts_alias.contains("host.docker.internal"), "{hosts_alias}");
    let hosts_fine = p.exec(lab, "fine", &["cat", "/etc/hosts"]);
    assert!(hosts_fine.lines().any(|l| l.starts_with("172.17.0.1") && l.contains("host.docker.internal")), "{hosts_fine}");
    assert!(matches!(probe_from(&p.netns(lab, "fine"), Proto::Tcp, BRIDGE_GW, api_port, Duration::from_secs(2)), Probe::Connected(_)));
    // gateway, on compose network back: 172.17.0.1 is still reached (local delivery) ...
    let gw_ns = p.netns(lab, "gateway");
    let first = probe_from(&gw_ns, Proto::Tcp, BRIDGE_GW, db_port, Duration::from_secs(2));
    assert!(matches!(first, Probe::Connected(_)), "{first:?}");
    // ... until a firewall rule is scoped to docker0, as the finding says: the packet arrives
    // on the compose network's bridge, not docker0
    let port = db_port.to_string();
    let _rule = lab.iptables(&["-I", "INPUT", "-p", "tcp", "--dport", &port, "!", "-i", "docker0", "-j", "REJECT", "--reject-with", "tcp-reset"]);
    let scoped = probe_from(&gw_ns, Proto::Tcp, BRIDGE_GW, db_port, Duration::from_secs(2));
    assert_eq!(scoped, Probe::Refused);
    let on_docker0 = lab.container("docker0", &[]);
    assert!(matches!(on_docker0.probe(Proto::Tcp, BRIDGE_GW, db_port, Duration::from_secs(2)), Probe::Connected(_)));
}

#[test]
fn bad_override_is_reported_with_file_and_line_and_the_rest_is_linted() {
    let lab = Lab::get();
    let _ = lab;
    let yaml = three_service_project(8080, 5432);
    let over = "services:\n  fine:\n    enviroment:\n      A: \"1\"\n";
    let p = ComposeProject::new("bad", &[("compose.yaml", yaml.clone()), ("compose.override.yaml", over.into())]);
    let run = hostreach(&["compose", "lint", "--project-directory", p.dir.to_str().unwrap(), "--format", "json"]);
    assert_eq!(run.code, 2, "{run}");
    let over_path = p.path("compose.override.yaml");
    let err_lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(err_lines.len(), 1, "{run}");
    assert!(err_lines[0].contains(&format!("{over_path}:3:")) && err_lines[0].contains("did you mean `environment`"), "{run}");
    assert_eq!(run.json()["errors"][0]["line"], 3);
    // nothing else lost: both findings of the main file are there
    assert_eq!(findings(&run, "HOST_ALIAS_NOT_MAPPED").len(), 1, "{run}");
    assert_eq!(findings(&run, "HARDCODED_GATEWAY").len(), 1, "{run}");

    // unreadable YAML: exit 2, one line with file:line
    std::fs::write(std::path::Path::new(&over_path), "services:\n  fine:\n    image: [unclosed\n").unwrap();
    let run = hostreach(&["compose", "lint", "--project-directory", p.dir.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.trim().starts_with(&format!("hostreach: {over_path}:")) && run.stderr.contains("unreadable YAML"), "{run}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run}");
}

#[test]
fn egress_mtu_below_1500_flags_both_networks() {
    let lab = Lab::get();
    let _ = lab;
    let yaml = three_service_project(8080, 5432);
    let p = ComposeProject::new("mtu", &[("compose.yaml", yaml.clone())]);
    let run = hostreach(&["compose", "lint", "--project-directory", p.dir.to_str().unwrap(), "--egress-mtu", "1400", "--format", "json"]);
    assert_eq!(run.code, 1, "{run}");
    let mtu = findings(&run, "MTU_UNSET");
    let nets: Vec<(&str, u64)> = mtu.iter().map(|f| (f["network"].as_str().unwrap(), f["line"].as_u64().unwrap())).collect();
    assert_eq!(nets, vec![("front", line_of(&yaml, "  front:")), ("back", line_of(&yaml, "  back:"))], "{run}");
    assert!(mtu.iter().all(|f| f["service"].is_null() && f["file"] == p.path("compose.yaml").as_str()));
}
