//! `hostreach path` on the lab: every network mode, the veth peer by its link index, the bridge with the
//! Docker network's name, a macvlan network on a veth parent (MACVLAN_HOST_ISOLATION, and its shim fix
//! applied for real), a container whose route is gone (NO_ROUTE, and its fix), the host without a route.

#[path = "wire_lab/mod.rs"]
mod wire_lab;

use hostreach_labtests::*;
use serde_json::{Value, json};
use wire_lab::*;

fn path(c: &Container, extra: &[&str]) -> Run {
    let mut a = vec!["path", "--container", c.name.as_str(), "--format", "json"];
    a.extend_from_slice(extra);
    hostreach(&a)
}

fn hop<'a>(run: &'a Run, name: &str) -> &'a Value {
    run.json()["hops"].as_array().unwrap().iter().find(|h| h["hop"] == name).unwrap_or_else(|| panic!("no {name} hop:\n{run}"))
}

#[test]
fn default_bridge_veth_peer_bridge_gateway_routes() {
    let lab = Lab::get();
    let web = lab.container("path-bridge", &[]);
    let run = path(&web, &[]);
    run.assert_code(0);
    assert_json_subset(
        run.json(),
        &json!({
            "schema": "hostreach/v1",
            "network_mode": "bridge",
            "networks": [{"name": "bridge", "driver": "bridge", "bridge": "docker0", "gateway": BRIDGE_GW, "address": web.ip}],
            "interfaces": [{"name": "eth0", "kind": "veth", "mtu": 1500, "host_side": {"relation": "veth-peer", "master": "docker0"}}],
            "routes": [{"destination": "default", "gateway": BRIDGE_GW, "dev": "eth0"}],
            "hops": [{"hop": "container-eth0", "mtu": 1500}, {"hop": "bridge", "name": "docker0", "detail": "Docker network bridge"}]
        }),
    );
    // The host side is eth0's real peer: the container's iflink is its ifindex.
    let iflink = String::from_utf8_lossy(&web.sh("cat /sys/class/net/eth0/iflink").stdout).trim().to_string();
    let eth0 = run.json()["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap();
    assert_eq!(eth0["host_side"]["index"].to_string(), iflink, "{run}");
    let veth = eth0["host_side"]["name"].as_str().unwrap();
    assert_eq!(lab.sh_ok(&format!("cat /sys/class/net/{veth}/ifindex 2>/dev/null || ip -o link show {veth} | cut -d: -f1")), iflink);
    // Text output names the same.
    let t = hostreach(&["path", "--container", &web.name]);
    t.assert_code(0);
    assert!(t.stdout.contains(veth) && t.stdout.contains("docker0"), "{t}");
}

#[test]
fn user_bridge_names_the_network_and_br_id() {
    let lab = Lab::get();
    let net = lab.network("path-user", &[]);
    let web = lab.container("path-user", &["--network", &net.name]);
    let run = path(&web, &["--to", "host:80"]);
    run.assert_code(0);
    assert_json_subset(
        run.json(),
        &json!({
            "network_mode": "user-bridge",
            "networks": [{"name": net.name, "bridge": net.bridge, "gateway": net.gateway}],
            "target": {"address": net.gateway},
            "hops": [{"hop": "bridge", "name": net.bridge, "detail": format!("Docker network {}", net.name)},
                     {"hop": "host-input", "interface": net.bridge}]
        }),
    );
}

#[test]
fn host_none_and_container_modes() {
    let lab = Lab::get();
    let h = lab.container("path-host", &["--network", "host"]);
    let run = path(&h, &["--to", &format!("{REMOTE_IP}:53")]);
    run.assert_code(0);
    assert_eq!(run.json()["network_mode"], "host", "{run}");
    let eg = hop(&run, "host-egress");
    assert_eq!(eg["name"], "hrlan0", "{run}");

    let n = lab.container("path-none", &["--network", "none"]);
    let run = path(&n, &[]);
    run.assert_code(0);
    assert_eq!(run.json()["network_mode"], "none", "{run}");
    assert!(run.json()["interfaces"].as_array().unwrap().iter().all(|i| i["name"] == "lo"), "{run}");

    let owner = lab.container("path-owner", &[]);
    let shared = lab.container("path-shared", &["--network", &format!("container:{}", owner.id)]);
    let run = path(&shared, &[]);
    run.assert_code(0);
    assert_eq!(run.json()["network_mode"], "container", "{run}");
    assert_eq!(run.json()["network_mode_raw"], format!("container:{}", owner.id), "{run}");
    // Same namespace, same eth0 as its owner.
    let ip = run.json()["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap()["addresses"][0].clone();
    assert_eq!(ip, format!("{}/16", owner.ip), "{run}");
}

#[test]
fn macvlan_child_cannot_reach_its_host_until_the_shim() {
    let lab = Lab::get();
    let n = uniq();
    let (x, y) = subnet24(n + 7);
    let parent = LabVeth::new("hv");
    in_lab(&format!("ip addr add 10.{x}.{y}.2/24 dev {}", parent.a));
    let net = lab.network(
        "path-mv",
        &["-d", "macvlan", "--subnet", &format!("10.{x}.{y}.0/24"), "--gateway", &format!("10.{x}.{y}.1"), "--ip-range", &format!("10.{x}.{y}.128/25"), "-o", &format!("parent={}", parent.a)],
    );
    let web = lab.container("path-mv", &["--network", &net.name]);
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, "0.0.0.0", port);
    let host_ip = format!("10.{x}.{y}.2");

    let run = path(&web, &["--to", &format!("{host_ip}:{port}")]);
    run.assert_code(1);
    assert_json_subset(
        run.json(),
        &json!({
            "network_mode": "macvlan",
            "interfaces": [{"name": "eth0", "kind": "macvlan", "host_side": {"relation": "parent", "name": parent.a}}],
            "hops": [{"hop": "macvlan-parent", "name": parent.a, "status": "failed"}],
            "findings": [{"code": "MACVLAN_HOST_ISOLATION"}]
        }),
    );

    let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{host_ip}:{port}"), "--timeout", "2s", "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("MACVLAN_HOST_ISOLATION"), "{run}");
    let f = &findings(run.json(), "MACVLAN_HOST_ISOLATION")[0];
    let cmds = fix_commands(f);
    assert!(cmds[0] == format!("sudo ip link add mv-shim link {} type macvlan mode bridge", parent.a), "{cmds:?}");
    let shim_ip = cmds[1].split_whitespace().nth(4).unwrap().trim_end_matches("/32").to_string();
    assert!(shim_ip.starts_with(&format!("10.{x}.{y}.")), "{cmds:?}");
    assert!(cmds.iter().any(|c| c.contains(&format!("{}/32 dev mv-shim", web.ip))), "{cmds:?}");

    // The fix, for real (with a unique shim name), and the container reaches the host at the shim's address.
    let shim = format!("hs{}", uniq());
    in_lab(&format!(
        "ip link add {shim} link {} type macvlan mode bridge && ip addr add {shim_ip}/32 dev {shim} && ip link set {shim} up && ip route add {}/32 dev {shim}",
        parent.a, web.ip
    ));
    let ok = hostreach(&["doctor", "--container", &web.name, "--to", &format!("{shim_ip}:{port}"), "--format", "json"]);
    let _ = lab.sh(&format!("ip link del {shim}"));
    assert_eq!(ok.verdict(), Some("OK"), "{ok}");
}

#[test]
fn route_gone_in_the_container_is_no_route_and_the_fix_restores_it() {
    let lab = Lab::get();
    let port = lab.free_port();
    let _svc = lab.listener(Proto::Tcp, LAN_IP, port);
    let web = lab.container("path-noroute", &[]);
    in_ns(&web.netns_path(), "ip route del default");
    let to = format!("{LAN_IP}:{port}");
    let p = path(&web, &["--to", &to]);
    p.assert_code(1);
    assert_json_subset(p.json(), &json!({"hops": [{"hop": "container-eth0", "status": "failed"}], "findings": [{"code": "NO_ROUTE", "hop": "container-eth0"}]}));

    let run = hostreach(&["doctor", "--container", &web.name, "--to", &to, "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("NO_ROUTE"), "{run}");
    let f = &findings(run.json(), "NO_ROUTE")[0];
    assert_eq!(f["hop"], "container-eth0", "{run}");
    let text = serde_json::to_string(f).unwrap();
    assert!(text.contains("172.17.0.0/16 dev eth0"), "the container's routes are quoted:\n{run}");
    let cmds = fix_commands(f);
    assert!(cmds.iter().any(|c| c.starts_with("docker network disconnect bridge")), "{cmds:?}");
    let manual = cmds.iter().find(|c| c.contains("ip route add default")).unwrap().clone();
    assert!(manual.contains(&format!("via {BRIDGE_GW} dev eth0")), "{manual}");
    // The manual fix, for real.
    in_ns(&web.netns_path(), &format!("ip route add default via {BRIDGE_GW} dev eth0"));
    let ok = hostreach(&["doctor", "--container", &web.name, "--to", &to, "--format", "json"]);
    assert_eq!(ok.verdict(), Some("OK"), "{ok}");
}

#[test]
fn host_without_a_route_is_no_route_at_the_host() {
    let lab = Lab::get();
    let web = lab.container("path-hostnoroute", &[]);
    // TEST-NET-1: the lab host has no route there (and no default route), so nothing leaves the lab.
    let to = "192.0.2.55:80";
    let p = path(&web, &["--to", to]);
    p.assert_code(1);
    assert_json_subset(p.json(), &json!({"hops": [{"hop": "host-route", "status": "failed"}], "findings": [{"code": "NO_ROUTE", "hop": "host-route"}]}));
    let run = hostreach(&["doctor", "--container", &web.name, "--to", to, "--format", "json"]);
    run.assert_code(1);
    assert_eq!(run.verdict(), Some("NO_ROUTE"), "{run}");
    assert_eq!(findings(run.json(), "NO_ROUTE")[0]["hop"], "host-route", "{run}");
}
