//! `hostreach doctor --all` on a real compose project (two networks), and `docker hostreach` through
//! the real docker CLI.

use hostreach_labtests::*;
use serde_json::Value;

fn ours<'a>(all: &'a Value, project: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    let mut v: Vec<(&str, &str, &str)> = all["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["container"]["name"].as_str().is_some_and(|n| n.starts_with(project)))
        .map(|r| {
            (
                r["container"]["name"].as_str().unwrap(),
                r["target"]["input"].as_str().unwrap(),
                r["verdict"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn doctor_all_checks_every_container_against_the_targets_in_its_configuration() {
    let lab = Lab::get();
    let api = lab.free_port();
    let db = lab.free_port();
    let dbs = db.to_string();
    // The API listens everywhere; the database only on docker0's address, and a firewall rule
    // accepts it only from docker0, as many hosts scope their rules.
    let _api = lab.listener(Proto::Tcp, "0.0.0.0", api);
    let _db = lab.listener(Proto::Tcp, BRIDGE_GW, db);
    let _rule = lab.iptables(&["-I", "INPUT", "!", "-i", "docker0", "-p", "tcp", "--dport", &dbs, "-j", "REJECT"]);
    let mut p = ComposeProject::new("all", &[("compose.yaml", three_service_project(api, db))]);
    p.up();

    let run = hostreach(&["doctor", "--all", "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.json()["schema"], "hostreach/v1");
    let name = |s: &str| format!("{}_{s}_1", p.name);
    assert_eq!(
        ours(run.json(), &p.name),
        vec![
            (name("alias").as_str(), format!("http://host.docker.internal:{api}/").as_str(), "HOST_ALIAS_UNRESOLVED"),
            (name("fine").as_str(), format!("http://host.docker.internal:{api}/").as_str(), "OK"),
            (name("gateway").as_str(), format!("172.17.0.1:{db}").as_str(), "FIREWALL_REJECT"),
        ],
        "{run}"
    );
    let gw = run.json()["results"].as_array().unwrap().iter().find(|r| r["container"]["name"] == name("gateway").as_str()).unwrap();
    assert_eq!(gw["discovered_from"], "env DB_HOST");
    // The packet from the compose network arrives on its own bridge, not docker0: that is why the
    // docker0-scoped rule rejects it.
    let bridge = gw["path"].as_array().unwrap().iter().find(|h| h["hop"] == "bridge").unwrap();
    assert!(bridge["name"].as_str().unwrap().starts_with("br-"), "{gw:#}");

    // `hostreach doctor` without a target is the same; the text is a table, one row per target.
    let text = hostreach(&["doctor"]);
    text.assert_code(1);
    let header = text.stdout.lines().next().unwrap();
    for col in ["CONTAINER", "TARGET", "FOUND IN", "VERDICT", "SUMMARY"] {
        assert!(header.contains(col), "{text}");
    }
    for (svc, verdict) in [("alias", "HOST_ALIAS_UNRESOLVED"), ("fine", "OK"), ("gateway", "FIREWALL_REJECT")] {
        assert!(
            text.stdout.lines().any(|l| l.contains(&name(svc)) && l.contains(verdict)),
            "row for {svc} with {verdict}:\n{text}"
        );
    }
    assert!(!text.stderr.contains('\r'), "no progress line when not on a terminal:\n{text}");
}

#[test]
fn docker_hostreach_through_the_docker_cli() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "127.0.0.1", port);
    let web = lab.container("plugin", &[]);
    let cfg = std::env::temp_dir().join(format!("hostreach-dockercfg-{}", std::process::id()));
    std::fs::create_dir_all(cfg.join("cli-plugins")).unwrap();
    let link = cfg.join("cli-plugins/docker-hostreach");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(hostreach_bin(), &link).unwrap();
    let c = cfg.display();

    let help = lab.sh(&format!("DOCKER_CONFIG={c} docker --help"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.lines().any(|l| l.trim_start().starts_with("hostreach")), "docker lists the plugin:\n{help}");

    let out = lab.sh(&format!("DOCKER_CONFIG={c} docker hostreach doctor --container {} --to host:{port} --format json", web.name));
    let _ = std::fs::remove_dir_all(&cfg);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from docker hostreach");
    assert_eq!(v["verdict"]["code"], "LOOPBACK_ONLY_BIND", "{v:#}");
}
