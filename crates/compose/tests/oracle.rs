//! The merged, interpolated view hostreach lints, checked against `docker-compose config`
//! (Debian's docker-compose 1.29, which lab/install.sh installs) on the fixture projects:
//! environment (env_file included), extra_hosts, network_mode, networks, image, and network
//! MTU options must agree. docker-compose's output is read here only, never by the product.

mod common;

use common::{FixtureFs, fixture_dir};
use hostreach_compose::yaml::{Node, Value};
use hostreach_compose::{Options, Project, load};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn compose_config(dir: &std::path::Path) -> serde_norway::Value {
    let out = Command::new("docker-compose")
        .arg("config")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("docker-compose is needed for this test (lab/install.sh installs it: apt-get install docker-compose): {e}"));
    assert!(
        out.status.success(),
        "docker-compose config in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_norway::from_slice(&out.stdout).expect("docker-compose config prints YAML")
}

fn text(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::String(s) => Some(s.replace("$$", "$")),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What docker-compose says about one service.
#[derive(Debug, PartialEq, Eq, Default)]
struct View {
    image: Option<String>,
    environment: BTreeMap<String, Option<String>>,
    extra_hosts: BTreeSet<String>,
    network_mode: Option<String>,
    networks: Option<BTreeSet<String>>,
}

fn oracle_view(s: &serde_norway::Value) -> View {
    let mut v = View {
        image: s.get("image").and_then(text),
        network_mode: s.get("network_mode").and_then(text),
        ..Default::default()
    };
    if let Some(serde_norway::Value::Mapping(env)) = s.get("environment") {
        for (k, val) in env {
            v.environment.insert(text(k).unwrap(), text(val));
        }
    }
    match s.get("extra_hosts") {
        Some(serde_norway::Value::Sequence(items)) => {
            for i in items {
                let t = text(i).unwrap();
                let (h, ip) = t.split_once([':', '=']).unwrap();
                v.extra_hosts.insert(format!("{h}={ip}"));
            }
        }
        Some(serde_norway::Value::Mapping(m)) => {
            for (h, ip) in m {
                v.extra_hosts
                    .insert(format!("{}={}", text(h).unwrap(), text(ip).unwrap()));
            }
        }
        _ => {}
    }
    if let Some(serde_norway::Value::Mapping(n)) = s.get("networks") {
        v.networks = Some(n.keys().map(|k| text(k).unwrap()).collect());
    }
    v
}

fn our_view(p: &Project, name: &str, s: &Node, with_networks: bool) -> View {
    let mut v = View {
        image: s.get("image").and_then(Node::scalar_text),
        network_mode: s.get("network_mode").and_then(Node::scalar_text),
        ..Default::default()
    };
    // env_file first, then environment on top, as compose does
    for ef in p
        .service_env_files
        .get(name)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        for e in &ef.entries {
            v.environment.insert(e.key.clone(), e.value.clone());
        }
    }
    for e in s.get("environment").and_then(Node::as_map).unwrap_or(&[]) {
        v.environment.insert(e.key.clone(), e.value.scalar_text());
    }
    for e in s.get("extra_hosts").and_then(Node::as_map).unwrap_or(&[]) {
        v.extra_hosts.insert(format!(
            "{}={}",
            e.key,
            e.value.scalar_text().unwrap_or_default()
        ));
    }
    if with_networks {
        v.networks = s
            .get("networks")
            .and_then(Node::as_map)
            .map(|m| m.iter().map(|e| e.key.clone()).collect());
    }
    v
}

fn mtu_of(n: Option<&Node>) -> Option<String> {
    n?.get("driver_opts")?
        .get("com.docker.network.driver.mtu")?
        .scalar_text()
}

#[test]
fn merged_view_agrees_with_docker_compose_config() {
    let mut compared = 0;
    for name in [
        "host_alias",
        "gateway",
        "loopback",
        "host_mode",
        "mtu",
        "override",
        "interp",
        "anchors",
        "env_file",
    ] {
        let dir = fixture_dir(name);
        let oracle = compose_config(&dir);
        let p = load(&Options::default(), &FixtureFs(dir.clone()));
        assert!(p.errors.is_empty(), "{name}: {:?}", p.errors);
        let ours: BTreeMap<&str, &Node> = p.services().map(|(n, e)| (n, &e.value)).collect();
        let theirs = oracle
            .get("services")
            .and_then(|s| s.as_mapping())
            .expect("services");
        let their_names: BTreeSet<String> = theirs.keys().map(|k| text(k).unwrap()).collect();
        let our_names: BTreeSet<String> = ours.keys().map(|k| k.to_string()).collect();
        assert_eq!(our_names, their_names, "{name}: services");
        for (k, s) in theirs {
            let svc = text(k).unwrap();
            let o = oracle_view(s);
            let u = our_view(&p, &svc, ours[svc.as_str()], o.networks.is_some());
            assert_eq!(
                u, o,
                "{name}: service {svc}: ours (left) and docker-compose config (right) differ"
            );
            compared += 1;
        }
        if let Some(serde_norway::Value::Mapping(nets)) = oracle.get("networks") {
            for (k, n) in nets {
                let net = text(k).unwrap();
                let theirs = n
                    .get("driver_opts")
                    .and_then(|d| d.get("com.docker.network.driver.mtu"))
                    .and_then(text);
                let ours = mtu_of(p.root.get("networks").and_then(|x| x.get(&net)));
                assert_eq!(ours, theirs, "{name}: network {net} mtu");
            }
        }
        let _ = Value::Null;
    }
    assert!(compared >= 25, "only {compared} services compared");
}
