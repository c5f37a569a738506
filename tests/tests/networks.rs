//! User-defined networks against the default bridge: names through Docker's embedded DNS
//! (127.0.0.11), container names that cannot resolve on the default bridge, host-gateway from a user
//! network, and the daemon's settings read from the dockerd serving the lab host.

use hostreach_labtests::*;
use serde_json::json;

#[test]
fn a_container_name_on_the_default_bridge_does_not_resolve_and_says_why() {
    let lab = Lab::get();
    let db = lab.container("peer-db", &[]);
    let web = lab.container("peer-web", &[]);
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{}:5432", db.name), "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("NAME_UNRESOLVED"), "{run}");
    let summary = run.json()["verdict"]["summary"].as_str().unwrap();
    assert!(summary.contains("is a container") && summary.contains("default bridge"), "{run}");
    let cmds: Vec<&str> = run.json()["findings"][0]["fix"][0]["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(cmds.contains(&format!("docker network connect app-net {}", db.name).as_str()), "{run}");
}

#[test]
fn on_a_user_network_names_resolve_through_the_embedded_dns() {
    let lab = Lab::get();
    let net = lab.network("names", &[]);
    let db = lab.container("dns-db", &["--network", &net.name]);
    let web = lab.container("dns-web", &["--network", &net.name]);
    let port = lab.free_port();
    let _svc = lab.listener_in_container(&db, Proto::Tcp, "0.0.0.0", port);
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{}:{port}", db.name), "--format", "json", "--save-facts", "/dev/stdout"]);
    // --save-facts to stdout prints the facts first; the report is the last JSON object.
    let last = run.stdout.rfind("\n{\n  \"schema\"").map(|i| &run.stdout[i + 1..]).unwrap_or(&run.stdout);
    let report: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(report["verdict"]["code"], "OK", "{run}");
    let facts_text = &run.stdout[..run.stdout.len() - last.len()];
    let facts: serde_json::Value = serde_json::from_str(facts_text.trim()).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_json_subset(&facts, &json!({"resolution": {"source": {"kind": "dns", "server": "127.0.0.11"}}}));
    assert_eq!(report["target"]["address"], db.ip_on(&net.name).unwrap().0.as_str(), "{run}");
}

#[test]
fn host_gateway_from_a_user_network_is_docker0s_address() {
    let lab = Lab::get();
    let net = lab.network("hgw", &[]);
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let web = lab.container("hgw", &["--network", &net.name, "--add-host", "host.docker.internal:host-gateway"]);
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("host.docker.internal:{port}"), "--format", "json"]);
    run.assert_code(0);
    // host-gateway is docker0's address, not the user network's gateway; the packet still arrives
    // on the network's own bridge, and is delivered locally.
    assert_json_subset(run.json(), &json!({"verdict": {"code": "OK"}, "target": {"address": BRIDGE_GW}}));
    let bridge = run.json()["path"].as_array().unwrap().iter().find(|h| h["hop"] == "bridge").unwrap();
    assert_eq!(bridge["name"], net.bridge.as_str(), "{run}");
    assert_ne!(net.gateway, BRIDGE_GW);
}

#[test]
fn the_daemons_settings_come_from_the_dockerd_of_this_namespace() {
    let lab = Lab::get();
    let web = lab.container("settings", &[]);
    let run = hostreach(&["doctor", "--container", &web.name, "--to", "host:9", "--format", "json"]);
    assert_json_subset(
        run.json(),
        &json!({"daemon": {"api_version": "1.41", "settings": {"config_file": "/run/hostreach-lab/daemon.json", "dns": [DNS_IP]}}}),
    );
}

#[test]
fn enable_icc_false_is_named_by_dockers_own_rule() {
    let lab = Lab::get();
    let net = lab.network("noicc", &["-o", "com.docker.network.bridge.enable_icc=false"]);
    let db = lab.container("icc-db", &["--network", &net.name]);
    let web = lab.container("icc-web", &["--network", &net.name]);
    let port = lab.free_port();
    let _svc = lab.listener_in_container(&db, Proto::Tcp, "0.0.0.0", port);
    let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{}:{port}", db.name), "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("FIREWALL_DROP"), "{run}");
    let ev = run.json()["findings"][0]["evidence"].as_array().unwrap();
    let br = &net.bridge;
    assert!(
        ev.iter().any(|e| e["kind"] == "rule"
            && e["rule"] == format!("-A FORWARD -i {br} -o {br} -j DROP")
            && e["counter_delta"].as_u64().is_some_and(|n| n >= 1)),
        "Docker's icc=false rule, named, its counter moving:\n{run}"
    );
    // On the forwarding path the fix is a DOCKER-USER rule, and the INPUT-only note is not given.
    let fixes = run.json()["findings"][0]["fix"].as_array().unwrap();
    assert!(fixes.iter().any(|f| f["commands"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("sudo iptables -I DOCKER-USER"))), "{run}");
    assert!(!fixes.iter().any(|f| f["summary"].as_str().unwrap().starts_with("Not a DOCKER-USER rule")), "{run}");
}
