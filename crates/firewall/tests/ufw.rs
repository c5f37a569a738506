//! UFW's own files and Docker's firewall backend in the explanation, on rulesets captured for real
//! (lab/capture-fixtures: UFW enabled in a throwaway namespace, its files saved beside the rules).

use hostreach_firewall::docker::{BackendSource, DaemonAnswer};
use hostreach_firewall::ufw::UfwConfig;
use hostreach_firewall::*;

mod common;
use common::{dir, load};

/// UFW's files of a fixture, with `edit` applied to (file name, text) first.
fn ufw_files(name: &str, edit: impl Fn(&str, String) -> String) -> UfwConfig {
    let d = dir(name);
    let mut files = Vec::new();
    for (canon, f) in [
        ("/etc/default/ufw", "default-ufw"),
        ("/etc/ufw/ufw.conf", "ufw.conf"),
        ("/etc/ufw/before.rules", "before.rules"),
        ("/etc/ufw/user.rules", "user.rules"),
        ("/etc/ufw/after.rules", "after.rules"),
        ("/etc/ufw/before6.rules", "before6.rules"),
        ("/etc/ufw/user6.rules", "user6.rules"),
        ("/etc/ufw/after6.rules", "after6.rules"),
    ] {
        let text = std::fs::read_to_string(d.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}: run lab/capture-fixtures"));
        files.push((canon.to_string(), d.join(f).display().to_string(), edit(f, text)));
    }
    UfwConfig::from_files(files.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())), vec![], Some(d.display().to_string()))
}

fn ufw_cx(name: &str, live: bool) -> Context {
    Context { ufw: Some(ufw_files(name, |_, t| t)), docker: None, live }
}

fn pkt(iif: &str, src: &str, dst: &str, proto: Proto, port: Option<u16>) -> Packet {
    Packet::new(iif, src.parse().unwrap(), dst.parse().unwrap(), proto, port, PathKind::Input)
}

fn to_host(port: u16) -> Packet {
    pkt("docker0", "172.17.0.2", "172.17.0.1", Proto::Tcp, Some(port))
}

#[test]
fn ufw_deny_incoming_is_default_input_policy_in_etc_default_ufw() {
    let e = explain_with(&load("ufw"), &to_host(5432), &ufw_cx("ufw", true));
    assert_eq!((e.decision.clone(), e.rule.as_str(), e.manager), (Decision::Drop, "-P INPUT DROP", Manager::Ufw));
    let s = e.rule_source.as_ref().expect("the policy's source");
    assert_eq!((s.file.as_str(), s.line, s.setting.as_deref(), s.text.as_str()), ("/etc/default/ufw", 11, Some("DEFAULT_INPUT_POLICY"), "DEFAULT_INPUT_POLICY=\"DROP\""));
    assert!(s.summary.starts_with("DEFAULT_INPUT_POLICY=\"DROP\" in /etc/default/ufw (line 11"), "{}", s.summary);
    assert!(s.read_from.as_deref().unwrap().ends_with("ufw/default-ufw"));
    let u = e.ufw.as_ref().expect("ufw facts");
    assert_eq!(u.default_input_policy.as_deref(), Some("DROP"));
    assert_eq!(u.default_forward_policy.as_deref(), Some("DROP"));
    assert_eq!(u.default_output_policy.as_deref(), Some("ACCEPT"));
    assert_eq!((u.ipv6, u.enabled), (Some(true), Some(true)));
    assert_eq!(u.files.len(), 6);
    // the rules and the files were captured together: they agree
    assert_eq!(u.in_sync, Some(true), "{:?}", e.notes);
    // why a route rule or the forward policy would not help
    assert!(e.notes.iter().any(|n| n.starts_with("DEFAULT_FORWARD_POLICY=\"DROP\" and `ufw route` rules") && n.contains("DEFAULT_INPUT_POLICY=\"DROP\"")), "{:?}", e.notes);
    assert!(e.fixes[0].summary.contains("ufw route allow") && e.fixes[0].summary.contains("DEFAULT_FORWARD_POLICY"));
    // JSON and text carry it
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["rule_source"]["file"], "/etc/default/ufw");
    assert_eq!(j["ufw"]["default_input_policy"], "DROP");
    assert_eq!(j["ufw"]["ipv6"], true);
    let t = text::render(&e);
    assert!(t.contains("configured in: DEFAULT_INPUT_POLICY=\"DROP\" in /etc/default/ufw (line 11)"), "{t}");
    assert!(t.contains("ufw: DEFAULT_INPUT_POLICY=\"DROP\", DEFAULT_FORWARD_POLICY=\"DROP\", DEFAULT_OUTPUT_POLICY=\"ACCEPT\", IPV6=yes, ENABLED=yes"), "{t}");
    // saved rules of another host: the files are not compared with them
    let e = explain_with(&load("ufw"), &to_host(5432), &ufw_cx("ufw", false));
    assert_eq!(e.ufw.as_ref().unwrap().in_sync, None);
    assert!(e.rule_source.is_some());
}

#[test]
fn ufws_own_rules_point_at_their_file_and_line() {
    let r = load("ufw-rules");
    let cx = ufw_cx("ufw-rules", true);
    // `ufw allow in on docker0 ... 5432`: accepted by user.rules line 24
    let e = explain_with(&r, &to_host(5432), &cx);
    assert_eq!(e.decision, Decision::Accept);
    let s = e.rule_source.as_ref().unwrap();
    assert_eq!((s.file.as_str(), s.line), ("/etc/ufw/user.rules", 24));
    assert_eq!(s.text, "-A ufw-user-input -i docker0 -p tcp --dport 5432 -j ACCEPT");
    assert_eq!(s.ufw_rule.as_deref(), Some("allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in_docker0"));
    assert_eq!(s.summary, "/etc/ufw/user.rules line 24 (added by `ufw allow in on docker0 to any port 5432 proto tcp`)");
    // `ufw deny`: dropped by user.rules line 27
    let e = explain_with(&r, &to_host(6379), &cx);
    assert_eq!((e.decision.clone(), e.manager), (Decision::Drop, Manager::Ufw));
    assert_eq!(e.rule, "-A ufw-user-input -i docker0 -p tcp -m tcp --dport 6379 -j DROP");
    assert_eq!(e.rule_source.as_ref().unwrap().summary, "/etc/ufw/user.rules line 27 (added by `ufw deny in on docker0 to any port 6379 proto tcp`)");
    // `ufw allow` would land after the deny: the fix inserts before it, or deletes the deny
    assert_eq!(e.fixes[0].commands, vec![
        "sudo ufw insert 1 allow in on docker0 to any port 6379 proto tcp".to_string(),
        "# or delete the rule that drops it: sudo ufw delete deny in on docker0 to any port 6379 proto tcp".to_string()
    ]);
    assert!(e.fixes[0].verified && e.fixes[0].summary.contains("appends after it"), "{:?}", e.fixes[0]);
    // without the files, the delete is described
    let e = explain(&r, &to_host(6379));
    assert!(e.fixes[0].commands[1].contains("sudo ufw status numbered"), "{:?}", e.fixes[0]);
    // `ufw reject from 172.17.0.0/16`: rejected with a reset by user.rules line 30
    let e = explain_with(&r, &to_host(11211), &cx);
    assert_eq!((e.decision.clone(), e.reject_with.as_deref()), (Decision::Reject, Some("tcp-reset")));
    assert_eq!(e.rule_source.as_ref().unwrap().ufw_command.as_deref(), Some("ufw reject from 172.17.0.0/16 to any port 11211 proto tcp"));
    // before.rules: ping is one of UFW's built-in accepts
    let mut ping = to_host(0);
    ping.proto = Proto::Icmp;
    ping.dport = None;
    let e = explain_with(&r, &ping, &cx);
    assert_eq!(e.decision, Decision::Accept);
    let s = e.rule_source.as_ref().unwrap();
    assert_eq!((s.file.as_str(), s.line, s.text.as_str()), ("/etc/ufw/before.rules", 37, "-A ufw-before-input -p icmp --icmp-type echo-request -j ACCEPT"));
    assert!(s.summary.contains("UFW's built-in rules"), "{}", s.summary);
    // after.rules sends NetBIOS to ufw-skip-to-policy-input, which UFW generates from the policy
    let mut nb = to_host(137);
    nb.proto = Proto::Udp;
    let e = explain_with(&r, &nb, &cx);
    assert_eq!((e.decision.clone(), e.chain.as_deref()), (Decision::Drop, Some("ufw-skip-to-policy-input")));
    let s = e.rule_source.as_ref().unwrap();
    assert_eq!(s.setting.as_deref(), Some("DEFAULT_INPUT_POLICY"));
    assert!(s.summary.contains("UFW generates ufw-skip-to-policy-input from it"), "{}", s.summary);
    assert_eq!(e.ufw.as_ref().unwrap().in_sync, Some(true), "{:?}", e.notes);
}

#[test]
fn ipv6_through_ufw6_chains_user6_rules_and_the_ipv6_policy() {
    let r = load("ufw-rules");
    let cx = ufw_cx("ufw-rules", true);
    let v6 = |port: u16| pkt("docker0", "fd00:6872::2", "fd00:6872::1", Proto::Tcp, Some(port));
    // `ufw allow in on docker0 from fd00:6872::/64 ... 8080`: user6.rules line 30
    let e = explain_with(&r, &v6(8080), &cx);
    assert_eq!((e.decision.clone(), e.family.as_deref(), e.chain.as_deref()), (Decision::Accept, Some("ip6"), Some("ufw6-user-input")));
    let s = e.rule_source.as_ref().unwrap();
    assert_eq!((s.file.as_str(), s.line), ("/etc/ufw/user6.rules", 30));
    assert_eq!(s.ufw_command.as_deref(), Some("ufw allow in on docker0 from fd00:6872::/64 to any port 8080 proto tcp"));
    // another port: ip6tables' INPUT policy, from DEFAULT_INPUT_POLICY
    let mut p = v6(5433);
    p.src_network = Some("fd00:6872::/64".into());
    let e = explain_with(&r, &p, &cx);
    assert_eq!((e.decision.clone(), e.rule.as_str(), e.family.as_deref(), e.manager), (Decision::Drop, "-P INPUT DROP", Some("ip6"), Manager::Ufw));
    assert_eq!(e.rule_source.as_ref().unwrap().setting.as_deref(), Some("DEFAULT_INPUT_POLICY"));
    let f = &e.fixes[0];
    assert_eq!(f.commands[0], "sudo ufw allow in on docker0 to any port 5433 proto tcp");
    assert_eq!(f.commands[1], "# or, for the whole network: sudo ufw allow from fd00:6872::/64 to any port 5433 proto tcp");
    assert!(f.summary.contains("ufw6-user-input"), "{}", f.summary);
    assert!(f.verified);
    // the walk went through UFW's IPv6 chains
    assert!(e.walk.iter().any(|s| s.chain == "ufw6-before-input"), "{}", text::render(&e));
}

#[test]
fn ufw_without_ipv6_says_so_and_the_fix_turns_it_on() {
    let r = load("ufw-noipv6");
    let cx = ufw_cx("ufw-noipv6", true);
    let p = pkt("docker0", "fd00:6872::2", "fd00:6872::1", Proto::Tcp, Some(5432));
    let e = explain_with(&r, &p, &cx);
    assert_eq!((e.decision.clone(), e.rule.as_str(), e.family.as_deref()), (Decision::Drop, "-P INPUT DROP", Some("ip6")));
    assert_eq!(e.ufw.as_ref().unwrap().ipv6, Some(false));
    assert!(e.notes.iter().any(|n| n.starts_with("IPV6=no in /etc/default/ufw: UFW accepts IPv6 on loopback only")), "{:?}", e.notes);
    let f = &e.fixes[0];
    assert!(f.summary.contains("IPV6=no in /etc/default/ufw"), "{}", f.summary);
    assert_eq!(f.commands, vec![
        "sudo sed -i 's/^IPV6=.*/IPV6=yes/' /etc/default/ufw".to_string(),
        "sudo ufw disable && sudo ufw enable".to_string(),
        "sudo ufw allow in on docker0 to any port 5432 proto tcp".to_string()
    ]);
    assert!(!f.verified, "a restart of UFW cannot be simulated");
    // without the files the rules alone tell it: no ufw6-* chains
    let e = explain(&r, &p);
    assert!(e.fixes[0].summary.contains("no ufw6-* chains"), "{}", e.fixes[0].summary);
    // IPv4 is unaffected
    let e = explain_with(&r, &to_host(5432), &cx);
    assert_eq!(e.fixes[0].commands[0], "sudo ufw allow in on docker0 to any port 5432 proto tcp");
    assert_eq!(e.ufw.as_ref().unwrap().in_sync, Some(true), "{:?}", e.notes);
}

#[test]
fn files_changed_without_a_reload_are_noted() {
    let r = load("ufw-rules");
    // a rule added to user.rules by hand, one removed, and the default policy changed: not reloaded
    let cfg = ufw_files("ufw-rules", |f, t| match f {
        "user.rules" => t
            .replace("### END RULES ###", "### tuple ### allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in_docker0\n-A ufw-user-input -i docker0 -p tcp --dport 9999 -j ACCEPT\n\n### END RULES ###")
            .replace("-A ufw-user-input -i docker0 -p tcp --dport 6379 -j DROP\n", ""),
        "default-ufw" => t.replace("DEFAULT_INPUT_POLICY=\"DROP\"", "DEFAULT_INPUT_POLICY=\"ACCEPT\""),
        _ => t,
    });
    let cx = Context { ufw: Some(cfg), docker: None, live: true };
    let e = explain_with(&r, &to_host(9999), &cx);
    // the live rules decide: still the policy drop
    assert_eq!((e.decision.clone(), e.rule.as_str()), (Decision::Drop, "-P INPUT DROP"));
    assert_eq!(e.ufw.as_ref().unwrap().in_sync, Some(false));
    let notes = e.notes.join("\n");
    assert!(notes.contains("1 rule in UFW's files is not in the live rules (/etc/ufw/user.rules line 35: -A ufw-user-input -i docker0 -p tcp --dport 9999 -j ACCEPT)"), "{notes}");
    assert!(notes.contains("1 live rule in UFW's chains is in none of UFW's files (-A ufw-user-input -i docker0 -p tcp -m tcp --dport 6379 -j DROP)"), "{notes}");
    assert!(notes.contains("DEFAULT_INPUT_POLICY=\"ACCEPT\" in /etc/default/ufw, yet the live INPUT policy is `-P INPUT DROP`"), "{notes}");
    assert!(notes.contains("sudo ufw reload"), "{notes}");
    // the deciding rule found in no file is said to be so
    let e = explain_with(&r, &to_host(6379), &cx);
    assert_eq!(e.rule_source, None);
    assert!(e.notes.iter().any(|n| n.contains("in none of UFW's files: it was added by hand")), "{:?}", e.notes);
}

#[test]
fn ufw_facts_only_when_ufw_is_there_or_its_files_were_given() {
    // live rules without UFW, UFW installed but disabled: nothing about UFW
    let mut cfg = ufw_files("ufw", |f, t| if f == "ufw.conf" { t.replace("ENABLED=yes", "ENABLED=no") } else { t });
    cfg.saved_copy = None;
    let cx = Context { ufw: Some(cfg.clone()), docker: None, live: true };
    let e = explain_with(&load("docker-20.10"), &to_host(5432), &cx);
    assert!(e.ufw.is_none() && e.rule_source.is_none());
    // enabled in its files, yet not in the rules: said
    let mut on = ufw_files("ufw", |_, t| t);
    on.saved_copy = None;
    let e = explain_with(&load("docker-20.10"), &to_host(5432), &Context { ufw: Some(on), docker: None, live: true });
    assert!(e.notes.iter().any(|n| n.contains("ENABLED=yes in /etc/ufw/ufw.conf, yet no ufw-* chains")), "{:?}", e.notes);
}

#[test]
fn docker_backend_from_the_daemon_for_each_value_or_inferred() {
    // Docker 29's nftables backend, as the daemon reports it
    let r = load("docker-29-nft");
    let mut p = Packet::new("hrlan0", "198.18.0.2".parse().unwrap(), "172.17.0.2".parse().unwrap(), Proto::Tcp, Some(5000), PathKind::Forward);
    p.oif = Some("docker0".into());
    let cx = |driver: Option<&str>, version: &str| Context {
        ufw: None,
        docker: Some(DaemonAnswer { version: Some(version.into()), firewall_backend: driver.map(str::to_string) }),
        live: true,
    };
    let e = explain_with(&r, &p, &cx(Some("nftables"), "29.0.1"));
    let b = e.docker_firewall_backend.as_ref().unwrap();
    assert_eq!((b.driver.as_deref(), b.source), (Some("nftables"), BackendSource::Daemon));
    assert!(e.fixes[0].summary.contains("no DOCKER-USER chain"), "{}", e.fixes[0].summary);
    assert!(e.fixes.iter().all(|f| f.commands.iter().all(|c| !c.contains("DOCKER-USER"))));
    assert!(e.notes.iter().any(|n| n.starts_with("Docker's firewall backend is nftables: there is no DOCKER-USER chain")), "{:?}", e.notes);
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["docker_firewall_backend"]["driver"], "nftables");
    assert_eq!(j["docker_firewall_backend"]["source"], "daemon");
    assert!(text::render(&e).contains("docker firewall backend: nftables, reported by the Docker daemon 29.0.1"));

    // iptables and iptables+firewalld, as reported
    let r = load("docker-28");
    for driver in ["iptables", "iptables+firewalld"] {
        let e = explain_with(&r, &to_host(5432), &cx(Some(driver), "28.3.0"));
        let b = e.docker_firewall_backend.unwrap();
        assert_eq!((b.driver.as_deref(), b.source), (Some(driver), BackendSource::Daemon));
    }

    // Docker 20.10 does not report it: inferred from its chains
    let e = explain_with(&load("docker-20.10"), &to_host(5432), &cx(None, "20.10.24"));
    let b = e.docker_firewall_backend.as_ref().unwrap();
    assert_eq!((b.driver.as_deref(), b.source), (Some("iptables"), BackendSource::Inferred));
    assert!(b.summary.contains("inferred from the rules") && b.summary.contains("Docker 20.10.24"), "{}", b.summary);
    // saved rules, no daemon asked: inferred too, and said so
    let e = explain(&load("docker-29-nft"), &p);
    let b = e.docker_firewall_backend.as_ref().unwrap();
    assert_eq!((b.driver.as_deref(), b.source), (Some("nftables"), BackendSource::Inferred));
    assert!(b.summary.contains("no Docker daemon was asked"), "{}", b.summary);
    // no Docker at all: null, and the key is there
    let e = explain(&load("firewalld"), &to_host(5432));
    assert!(e.docker_firewall_backend.is_none());
    assert!(serde_json::to_value(&e).unwrap().as_object().unwrap().contains_key("docker_firewall_backend"));
}

#[test]
fn docker_nftables_backend_means_no_docker_user_advice() {
    // A plain iptables INPUT drop on a host whose Docker runs the nftables backend.
    let save = iptables::parse("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A INPUT -i docker0 -p tcp -m tcp --dport 5432 -j DROP\n-A FORWARD -i docker0 -p tcp -m tcp --dport 80 -j DROP\nCOMMIT\n").unwrap();
    let rules = Rulesets { iptables: vec![save], nft: None };
    let nft = Context { ufw: None, docker: Some(DaemonAnswer { version: Some("29.0.1".into()), firewall_backend: Some("nftables".into()) }), live: true };
    let e = explain_with(&rules, &to_host(5432), &nft);
    assert_eq!(e.decision, Decision::Drop);
    assert!(e.fixes[0].commands[0].starts_with("sudo iptables -I INPUT "), "{:?}", e.fixes);
    assert!(e.fixes[0].summary.contains("Docker's firewall backend is nftables, which has no DOCKER-USER chain"), "{}", e.fixes[0].summary);
    assert!(!e.notes.iter().any(|n| n.starts_with("Not a DOCKER-USER rule")), "{:?}", e.notes);
    assert!(e.notes.iter().any(|n| n.contains("an accept in an input chain of your own nft table, or the host firewall's")), "{:?}", e.notes);
    // forwarded: a leftover DOCKER-USER chain is not advised when Docker says nftables
    let mut f = Packet::new("docker0", "172.17.0.2".parse().unwrap(), "198.18.0.2".parse().unwrap(), Proto::Tcp, Some(80), PathKind::Forward);
    f.oif = Some("hrlan0".into());
    let e = explain_with(&rules, &f, &nft);
    assert!(e.fixes.iter().all(|x| x.commands.iter().all(|c| !c.contains("DOCKER-USER"))), "{:?}", e.fixes);
    // the same with the iptables backend: DOCKER-USER is the place for forwarded traffic
    let ipt = Context { ufw: None, docker: Some(DaemonAnswer { version: Some("28.3.0".into()), firewall_backend: Some("iptables".into()) }), live: true };
    let e = explain_with(&rules, &f, &ipt);
    assert!(e.fixes[0].commands[0].contains("-I DOCKER-USER"), "{:?}", e.fixes);
}

#[test]
fn plain_fixes_offer_the_source_network_in_the_packets_family() {
    // ip6tables: the rule for the interface, and the alternative for the IPv6 subnet
    let save = iptables::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i hrbr6 -p tcp -m tcp --dport 5432 -j DROP\nCOMMIT\n").unwrap();
    let mut save6 = save.clone();
    save6.v6 = true;
    let rules = Rulesets { iptables: vec![save6], nft: None };
    let mut p = pkt("hrbr6", "fd00:6872::2", "fd00:6872::1", Proto::Tcp, Some(5432));
    p.src_network = Some("fd00:6872::/64".into());
    let e = explain(&rules, &p);
    assert_eq!(e.fixes[0].commands, vec![
        "sudo ip6tables -I INPUT 1 -i hrbr6 -p tcp --dport 5432 -j ACCEPT".to_string(),
        "# or, for the whole network: sudo ip6tables -I INPUT 1 -s fd00:6872::/64 -p tcp --dport 5432 -j ACCEPT".to_string()
    ]);
    assert!(e.fixes[0].verified);
    // nftables inet: ip6 saddr for an IPv6 packet
    let nft = nft::parse(r#"{"nftables": [{"table": {"family": "inet", "name": "t", "handle": 1}},
        {"chain": {"family": "inet", "table": "t", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "input", "handle": 4, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5432}},
            {"drop": null}]}}]}"#).unwrap();
    let rules = Rulesets { iptables: vec![], nft: Some(nft) };
    let e = explain(&rules, &p);
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.fixes[0].commands, vec![
        "sudo nft insert rule inet t input position 4 iifname \"hrbr6\" tcp dport 5432 accept".to_string(),
        "# or, for the whole network: sudo nft insert rule inet t input position 4 ip6 saddr fd00:6872::/64 tcp dport 5432 accept".to_string()
    ]);
    // and IPv4 is not dropped by it
    let e = explain(&rules, &to_host(5432));
    assert_eq!(e.decision, Decision::Accept);
}
