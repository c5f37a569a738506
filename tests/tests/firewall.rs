//! `hostreach firewall explain` on the lab: live rules of each backend (iptables-nft, native
//! nftables, iptables-legacy) built for real, the decision and the rule checked against what the
//! kernel does to a real connection, and the fix applied for real; then saved rulesets captured
//! in the lab (tests/fixtures/firewall: UFW, firewalld, Docker 28, Docker 29) through the binary.

use hostreach_labtests::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const PROBE: Duration = Duration::from_secs(2);

fn explain(args: &[&str]) -> Run {
    let mut full = vec!["firewall", "explain"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--format", "json"]);
    hostreach(&full)
}

/// Container → host (docker0 gateway) for one port, against the lab's live rules.
fn explain_live(src: &str, port: u16) -> Run {
    let p = port.to_string();
    explain(&["--in", "docker0", "--src", src, "--dst", BRIDGE_GW, "--proto", "tcp", "--dport", &p])
}

fn container_ip(c: &Container) -> String {
    c.ip_on("bridge").expect("container on the default bridge").0
}

fn fixture(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/firewall").join(p).to_string_lossy().into_owned()
}

fn first_fix(run: &Run) -> String {
    run.json()["fixes"][0]["commands"][0].as_str().unwrap_or_else(|| panic!("no fix:\n{run}")).to_string()
}

/// An iptables-legacy rule in the lab, deleted on Drop (the harness's Rule guard speaks iptables).
struct LegacyRule(Vec<String>);
impl LegacyRule {
    fn add(args: &[&str]) -> LegacyRule {
        let mut full = vec!["--net=".to_string() + NETNS_PATH, "--".into(), "iptables-legacy".into(), "-w".into(), "10".into(), "-I".into()];
        full.extend(args.iter().map(|s| s.to_string()));
        let out = Command::new("nsenter").args(&full).output().expect("nsenter");
        assert!(out.status.success(), "iptables-legacy -I {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        LegacyRule(args.iter().map(|s| s.to_string()).collect())
    }
}
impl Drop for LegacyRule {
    fn drop(&mut self) {
        let mut full = vec!["--net=".to_string() + NETNS_PATH, "--".into(), "iptables-legacy".into(), "-w".into(), "10".into(), "-D".into()];
        full.extend(self.0.iter().cloned());
        let _ = Command::new("nsenter").args(&full).output();
    }
}

#[test]
fn iptables_nft_input_drop_is_named_and_its_fix_works() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("fw-ipt", &[]);
    let ip = container_ip(&web);
    // no rule: the lab's Docker 20.10 defaults accept, and so does the kernel
    let run = explain_live(&ip, port);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"schema": "hostreach/v1", "decision": "accept", "path": "input", "backend": "iptables-nft", "rule": "-P INPUT ACCEPT"}));
    assert!(matches!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Connected(_)));
    // a DROP in INPUT: named, and the kernel agrees (the SYN is dropped: the connect times out)
    let _drop = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "DROP"]);
    let run = explain_live(&ip, port);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "drop", "backend": "iptables-nft", "family": "ip", "table": "filter", "chain": "INPUT", "hook": "input",
                "rule": format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j DROP"), "manager": "plain", "certain": true}),
    );
    assert!(run.json()["managers"].as_array().unwrap().iter().any(|m| m["manager"] == "docker" && m["version"] == "20.10"), "{run}");
    assert!(run.json()["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("DOCKER-USER")), "{run}");
    let walk = run.json()["walk"].as_array().unwrap();
    assert!(walk.iter().any(|s| s["event"] == "enter" && s["chain"] == "PREROUTING" && s["table"] == "nat"), "{run}");
    assert!(walk.iter().all(|s| s["chain"] != "DOCKER-USER"), "container-to-host never crosses DOCKER-USER: {run}");
    assert_eq!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::TimedOut);
    let fix = first_fix(&run);
    assert!(fix.starts_with("sudo iptables -I INPUT ") && fix.ends_with(&format!("-i docker0 -p tcp --dport {port} -j ACCEPT")), "{fix}");
    assert_eq!(run.json()["fixes"][0]["verified"], true);
    // the fix, for real: explain and the kernel both accept
    let _fix = lab.iptables(&["-I", "INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "ACCEPT"]);
    let run = explain_live(&ip, port);
    run.assert_code(0);
    assert_json_subset(run.json(), &json!({"decision": "accept", "rule": format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j ACCEPT")}));
    assert!(matches!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Connected(_)));
}

#[test]
fn nftables_drop_in_its_own_base_chain_wins_over_iptables_accept() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("fw-nft", &[]);
    let ip = container_ip(&web);
    let table = lab.nft(
        "inet",
        "fw",
        &format!("chain input {{ type filter hook input priority filter + 5; policy accept; iifname \"docker*\" tcp dport {port} counter drop; }}"),
    );
    let run = explain_live(&ip, port);
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "drop", "backend": "nftables", "family": "inet", "table": table.name, "chain": "input", "policy": false}));
    let rule = run.json()["rule"].as_str().unwrap();
    assert!(rule.starts_with(&format!("iifname \"docker*\" tcp dport {port} counter packets")), "{rule}");
    // the iptables-nft INPUT chain (policy accept) was walked first and did not end the walk
    let enters: Vec<&Value> = run.json()["walk"].as_array().unwrap().iter().filter(|s| s["event"] == "enter" && s["hook"] == "input").collect();
    let ipt = enters.iter().position(|s| s["backend"] == "iptables-nft" && s["table"] == "filter").unwrap_or_else(|| panic!("{run}"));
    let mine = enters.iter().position(|s| s["table"] == json!(table.name)).unwrap_or_else(|| panic!("{run}"));
    assert!(ipt < mine, "priority 0 before priority 5: {run}");
    assert_eq!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::TimedOut);
    // the fix is an nft command for this table; run it as printed (without sudo)
    let fix = first_fix(&run);
    assert!(fix.starts_with(&format!("sudo nft insert rule inet {} input position ", table.name)), "{fix}");
    lab.sh_ok(fix.trim_start_matches("sudo "));
    let run = explain_live(&ip, port);
    run.assert_code(0);
    assert!(run.json()["rule"].as_str().unwrap().starts_with(&format!("iifname \"docker0\" tcp dport {port} accept")), "{run}");
    assert!(matches!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Connected(_)));
}

#[test]
fn iptables_legacy_reject_is_named_with_its_type() {
    let lab = Lab::get();
    let port = lab.free_port();
    let p = port.to_string();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("fw-legacy", &[]);
    let ip = container_ip(&web);
    let _rule = LegacyRule::add(&["INPUT", "-i", "docker0", "-p", "tcp", "--dport", &p, "-j", "REJECT", "--reject-with", "tcp-reset"]);
    let run = explain_live(&ip, port);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({"decision": "reject", "reject_with": "tcp-reset", "backend": "iptables-legacy", "table": "filter", "chain": "INPUT",
                "rule": format!("-A INPUT -i docker0 -p tcp -m tcp --dport {port} -j REJECT --reject-with tcp-reset")}),
    );
    // a tcp-reset is what the container sees: refused at once
    assert_eq!(web.probe(Proto::Tcp, BRIDGE_GW, port, PROBE), Probe::Refused);
    assert!(first_fix(&run).starts_with("sudo iptables -I INPUT "), "{run}");
}

#[test]
fn saved_rulesets_of_each_manager_through_the_binary() {
    Lab::get();
    let pkt = |iif: &str, src: &str| vec!["--in".to_string(), iif.into(), "--src".into(), src.into(), "--dst".into(), BRIDGE_GW.into(), "--dport".into(), "5432".into(), "--path".into(), "input".into()];
    // UFW deny incoming (captured with ufw in a throwaway namespace)
    let mut a = pkt("docker0", "172.17.0.2");
    a.extend(["--iptables-save".into(), fixture("ufw/iptables-save.txt"), "--nft-json".into(), fixture("ufw/nft.json")]);
    let run = explain(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "drop", "backend": "iptables-nft", "rule": "-P INPUT DROP", "manager": "ufw", "policy": true}));
    assert_eq!(first_fix(&run), "sudo ufw allow in on docker0 to any port 5432 proto tcp");
    // firewalld: a compose bridge falls into zone public and is rejected
    let mut a = pkt("br-0123456789ab", "172.18.0.2");
    a.extend(["--nft-json".into(), fixture("firewalld/nft.json")]);
    let run = explain(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_code(1);
    assert_json_subset(run.json(), &json!({"decision": "reject", "backend": "nftables", "table": "firewalld", "manager": "firewalld"}));
    assert_eq!(first_fix(&run), "sudo firewall-cmd --zone=public --add-port=5432/tcp --permanent");
    // text output names the rule and the fix
    let mut a = pkt("br-0123456789ab", "172.18.0.2");
    a.extend(["--nft-json".into(), fixture("firewalld/nft.json")]);
    let mut t = vec!["firewall", "explain"];
    t.extend(a.iter().map(String::as_str));
    let run = hostreach(&t);
    run.assert_code(1);
    assert!(run.stdout.contains("decision: REJECT (with icmpx admin-prohibited)") && run.stdout.contains("firewall-cmd --zone=public"), "{run}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    Lab::get();
    let dir = std::env::temp_dir().join(format!("hostreach-fw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("truncated.txt");
    let full = std::fs::read_to_string(fixture("docker-20.10/iptables-save.txt")).unwrap();
    let cut: String = full.lines().take(12).map(|l| format!("{l}\n")).collect();
    std::fs::write(&truncated, cut).unwrap();
    let base = ["--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW, "--dport", "5432", "--path", "input"];
    let mut a = base.to_vec();
    a.extend(["--iptables-save", truncated.to_str().unwrap()]);
    let run = explain(&a);
    run.assert_code(2);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run}");
    assert!(run.stderr.contains("line 12") && run.stderr.contains("truncated"), "{run}");
    let garbled = dir.join("garbled.json");
    std::fs::write(&garbled, "{\"nftables\": [{\"table\": 7}").unwrap();
    let mut a = base.to_vec();
    a.extend(["--nft-json", garbled.to_str().unwrap()]);
    let run = explain(&a);
    run.assert_code(2);
    assert!(run.stderr.contains("garbled.json") && run.stderr.contains("not JSON"), "{run}");
    let mut a = base.to_vec();
    a.extend(["--iptables-save", "/nonexistent/rules"]);
    explain(&a).assert_code(2);
    // tcp without a port
    explain(&["--in", "docker0", "--src", "172.17.0.2", "--dst", BRIDGE_GW]).assert_code(2);
    let _ = std::fs::remove_dir_all(&dir);
}
