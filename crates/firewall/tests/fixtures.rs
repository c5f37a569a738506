//! Rulesets captured for real (lab/capture-fixtures): each backend, the decision, the rule, the fix.

use hostreach_firewall::*;

mod common;
use common::load;

fn to_host(iif: &str, src: &str, port: u16) -> Packet {
    Packet::new(iif, src.parse().unwrap(), "172.17.0.1".parse().unwrap(), Proto::Tcp, Some(port), PathKind::Input)
}

#[test]
fn docker_20_10_defaults_accept_container_to_host() {
    let r = load("docker-20.10");
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 5432));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.backend, Some(Backend::IptablesNft));
    assert_eq!(e.rule, "-P INPUT ACCEPT");
    assert!(e.certain, "{:?}", e.unevaluated);
    assert!(e.managers.iter().any(|m| m.manager == Manager::Docker && m.version.as_deref() == Some("20.10")));
    // the nat PREROUTING jump to DOCKER is walked and returns for docker0
    assert!(e.walk.iter().any(|s| s.event == Event::Return && s.chain == "DOCKER"));
    // forwarding between bridges: isolation
    let mut f = Packet::new("docker0", "172.17.0.2".parse().unwrap(), "198.18.0.2".parse().unwrap(), Proto::Tcp, Some(53), PathKind::Forward);
    f.oif = Some("hrlan0".into());
    let e = explain(&r, &f);
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.rule, "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT");
}

#[test]
fn ufw_deny_incoming_drops_in_input_and_the_fix_is_ufw_allow_in_on() {
    let r = load("ufw");
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 5432));
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.backend, Some(Backend::IptablesNft));
    assert_eq!(e.rule, "-P INPUT DROP");
    assert_eq!(e.manager, Manager::Ufw);
    assert!(e.certain, "{:?}", e.unevaluated);
    assert!(e.walk.iter().any(|s| s.event == Event::Log && s.detail.as_deref().unwrap_or("").contains("[UFW BLOCK]")));
    let f = &e.fixes[0];
    assert_eq!(f.commands[0], "sudo ufw allow in on docker0 to any port 5432 proto tcp");
    assert!(f.summary.contains("ufw route allow") && f.summary.contains("DEFAULT_FORWARD_POLICY"));
    assert!(f.verified);
    // ssh is allowed by ufw
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 22));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.chain.as_deref(), Some("ufw-user-input"));
}

#[test]
fn ufw_after_the_fix_accepts_by_the_users_rule() {
    let r = load("ufw-allow");
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 5432));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.rule, "-A ufw-user-input -i docker0 -p tcp -m tcp --dport 5432 -j ACCEPT");
    // the rule is scoped to docker0: a compose bridge is still dropped
    let e = explain(&r, &to_host("br-0123456789ab", "172.18.0.2", 5432));
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.fixes[0].commands[0], "sudo ufw allow in on br-0123456789ab to any port 5432 proto tcp");
}

#[test]
fn firewalld_zone_docker_accepts_and_public_rejects() {
    let r = load("firewalld");
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 5432));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.chain.as_deref(), Some("filter_IN_docker"));
    let e = explain(&r, &to_host("br-0123456789ab", "172.18.0.2", 5432));
    assert_eq!(e.decision, Decision::Reject);
    assert_eq!(e.reject_with.as_deref(), Some("icmpx admin-prohibited"));
    assert_eq!(e.backend, Some(Backend::Nftables));
    assert_eq!(e.table.as_deref(), Some("firewalld"));
    assert_eq!(e.chain.as_deref(), Some("filter_INPUT"));
    assert!(e.rule.starts_with("reject with icmpx admin-prohibited"), "{}", e.rule);
    assert_eq!(e.manager, Manager::Firewalld);
    assert_eq!(e.fixes[0].commands[0], "sudo firewall-cmd --zone=public --add-port=5432/tcp --permanent");
    assert!(e.fixes[0].verified);
    assert!(e.certain, "{:?}", e.unevaluated);
}

#[test]
fn docker_28_raw_prerouting_drops_direct_access_to_unpublished_ports() {
    let r = load("docker-28");
    let mut p = Packet::new("hrlan0", "198.18.0.2".parse().unwrap(), "172.17.0.2".parse().unwrap(), Proto::Tcp, Some(5000), PathKind::Forward);
    p.oif = Some("docker0".into());
    let e = explain(&r, &p);
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!((e.table.as_deref(), e.chain.as_deref()), (Some("raw"), Some("PREROUTING")));
    assert_eq!(e.rule, "-t raw -A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP");
    assert_eq!(e.manager, Manager::Docker);
    assert!(e.fixes[0].summary.contains("publish the port"));
    assert!(e.managers.iter().any(|m| m.version.as_deref() == Some("28")));
    // the published port through DNAT is accepted in DOCKER
    let mut p = Packet::new("hrlan0", "198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap(), Proto::Tcp, Some(8080), PathKind::Input);
    p.oif = Some("docker0".into());
    p.local_addresses = Some(vec!["198.18.0.1".parse().unwrap(), "172.17.0.1".parse().unwrap()]);
    let e = explain(&r, &p);
    assert_eq!(e.dnat.as_deref(), Some("172.17.0.2:80"));
    assert_eq!(e.path, PathKind::Forward);
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.rule, "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT");
    // container to host: INPUT accepts
    assert_eq!(explain(&r, &to_host("docker0", "172.17.0.2", 5432)).decision, Decision::Accept);
}

#[test]
fn docker_29_nftables_has_no_docker_user() {
    let r = load("docker-29-nft");
    let mut p = Packet::new("hrlan0", "198.18.0.2".parse().unwrap(), "172.17.0.2".parse().unwrap(), Proto::Tcp, Some(5000), PathKind::Forward);
    p.oif = Some("docker0".into());
    let e = explain(&r, &p);
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.backend, Some(Backend::Nftables));
    assert_eq!(e.table.as_deref(), Some("docker-bridges"));
    assert_eq!(e.chain.as_deref(), Some("raw-PREROUTING"));
    assert_eq!(e.manager, Manager::Docker);
    assert!(e.managers.iter().any(|m| m.version.as_deref() == Some("29-nftables")));
    // from docker0 itself, past raw, to an unpublished port of another container: ICC accept
    let mut p = Packet::new("docker0", "172.17.0.3".parse().unwrap(), "172.17.0.2".parse().unwrap(), Proto::Tcp, Some(5000), PathKind::Forward);
    p.oif = Some("docker0".into());
    let e = explain(&r, &p);
    assert_eq!(e.decision, Decision::Accept, "{}", text::render(&e));
    assert!(e.rule.contains("ICC"), "{}", e.rule);
    // from the LAN to a published port after DNAT: the published-port accept
    let mut p = Packet::new("hrlan0", "198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap(), Proto::Tcp, Some(8080), PathKind::Input);
    p.oif = Some("docker0".into());
    p.local_addresses = Some(vec!["198.18.0.1".parse().unwrap()]);
    let e = explain(&r, &p);
    assert_eq!(e.decision, Decision::Accept, "{}", text::render(&e));
    assert_eq!(e.dnat.as_deref(), Some("172.17.0.2:80"));
}

#[test]
fn legacy_and_nft_on_one_hook() {
    let r = load("legacy");
    assert!(r.iptables.iter().all(|s| s.backend == Backend::IptablesLegacy));
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 5432));
    assert_eq!(e.decision, Decision::Reject);
    assert_eq!(e.backend, Some(Backend::IptablesLegacy));
    assert_eq!(e.reject_with.as_deref(), Some("tcp-reset"));
    assert_eq!(e.manager, Manager::Plain);
    assert_eq!(e.fixes[0].commands[0], "sudo iptables -I INPUT 3 -i docker0 -p tcp --dport 5432 -j ACCEPT");
    // legacy accepts 8080 (its policy); the native nft table still drops it
    let e = explain(&r, &to_host("docker0", "172.17.0.2", 8080));
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.backend, Some(Backend::Nftables));
    assert_eq!(e.table.as_deref(), Some("hostfw"));
    // the ipset match is reported, with what it would change
    assert_eq!(e.unevaluated.len(), 1);
    assert!(e.unevaluated[0].point.what.contains("match-set blocklist"));
    assert!(e.fixes[0].commands[0].starts_with("sudo nft insert rule inet hostfw input"));
    assert!(e.fixes[0].verified);
    // udp 53 from docker*: accepted by both
    let mut p = to_host("docker0", "172.17.0.2", 53);
    p.proto = Proto::Udp;
    assert_eq!(explain(&r, &p).decision, Decision::Accept);
    // the trusted set
    assert_eq!(explain(&r, &to_host("docker0", "10.1.2.3", 8080)).decision, Decision::Accept);
}

#[test]
fn every_fixture_parses_and_renders() {
    for name in ["docker-20.10", "ufw", "ufw-allow", "ufw-rules", "ufw-noipv6", "firewalld", "docker-28", "docker-29-nft", "legacy"] {
        let r = load(name);
        let e = explain(&r, &to_host("docker0", "172.17.0.2", 5432));
        let t = text::render(&e);
        assert!(t.contains("decision:"), "{name}");
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["schema"], "hostreach/v1");
        for k in ["decision", "backend", "table", "chain", "rule", "walk"] {
            assert!(j.get(k).is_some(), "{name}: {k}");
        }
    }
}
