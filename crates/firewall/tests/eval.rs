//! The walk's semantics, on small rulesets.

use hostreach_firewall::*;

fn pkt(iif: &str, src: &str, dst: &str, port: u16, path: PathKind) -> Packet {
    Packet::new(iif, src.parse().unwrap(), dst.parse().unwrap(), Proto::Tcp, Some(port), path)
}

fn ipt(text: &str) -> Rulesets {
    Rulesets { iptables: vec![iptables::parse(text).unwrap()], nft: None }
}

fn nftj(json: &str) -> NftRuleset {
    nft::parse(json).unwrap()
}

const INPUT: PathKind = PathKind::Input;

#[test]
fn drop_by_rule_names_it() {
    let r = ipt("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -i docker0 -p tcp -m tcp --dport 5432 -j DROP\nCOMMIT\n");
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.rule, "-A INPUT -i docker0 -p tcp -m tcp --dport 5432 -j DROP");
    assert_eq!(e.line, Some(4));
    assert_eq!((e.table.as_deref(), e.chain.as_deref()), (Some("filter"), Some("INPUT")));
    assert!(e.certain);
    assert_eq!(e.fixes[0].commands, vec!["sudo iptables -I INPUT 2 -i docker0 -p tcp --dport 5432 -j ACCEPT"]);
    assert!(e.fixes[0].verified);
    // another port passes; the policy decides
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 80, INPUT));
    assert_eq!(e.decision, Decision::Accept);
    assert!(e.policy);
    assert_eq!(e.rule, "-P INPUT ACCEPT");
}

#[test]
fn docker_user_is_not_on_the_input_path() {
    let r = ipt("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -i docker0 -j ACCEPT\nCOMMIT\n");
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.rule, "-P INPUT DROP");
    assert!(e.walk.iter().all(|s| s.chain != "DOCKER-USER"));
    assert!(e.notes.iter().any(|n| n.contains("DOCKER-USER")));
    // the forward path does cross it
    let mut p = pkt("docker0", "172.17.0.2", "198.18.0.2", 80, PathKind::Forward);
    p.oif = Some("hrlan0".into());
    let e = explain(&r, &p);
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.chain.as_deref(), Some("DOCKER-USER"));
}

#[test]
fn user_chains_goto_and_return() {
    let r = ipt("*filter\n:INPUT DROP [0:0]\n:a - [0:0]\n:b - [0:0]\n:c - [0:0]\n-A INPUT -j a\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A a -g b\n-A a -j ACCEPT\n-A b -p tcp -m tcp --dport 5432 -j RETURN\n-A b -j c\n-A c -j RETURN\nCOMMIT\n");
    // goto b, RETURN in b goes back to INPUT (not to a, whose ACCEPT is skipped)
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert_eq!(e.decision, Decision::Drop, "{}", text::render(&e));
    assert!(e.policy);
    // port 22: b → c → RETURN to b → end of b returns to INPUT (below a), then INPUT accepts 22
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 22, INPUT));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.rule, "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT");
}

#[test]
fn log_continues_and_reject_has_its_type() {
    let r = ipt("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j LOG --log-prefix \"x \"\n-A INPUT -p tcp -j REJECT\nCOMMIT\n");
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 1, INPUT));
    assert_eq!(e.decision, Decision::Reject);
    assert_eq!(e.reject_with.as_deref(), Some("icmp-port-unreachable"));
    assert!(e.walk.iter().any(|s| s.event == Event::Log));
}

#[test]
fn unknown_matches_give_both_outcomes() {
    let r = ipt("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m set --match-set bad src -j DROP\n-A INPUT -p tcp -m tcp --sport 1024:65535 -j ACCEPT\nCOMMIT\n");
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert_eq!(e.decision, Decision::Accept);
    assert!(!e.certain);
    assert!(e.possible_decisions.contains(&Decision::Drop));
    assert_eq!(e.unevaluated.len(), 2);
    assert_eq!(e.unevaluated[0].if_matches, Decision::Drop);
    assert!(e.unevaluated[0].point.reason.contains("ipset bad"));
    // with the source port known, only the ipset remains
    let mut p = pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT);
    p.sport = Some(40000);
    let e = explain(&r, &p);
    assert_eq!(e.unevaluated.len(), 1);
}

#[test]
fn limit_is_assumed_and_said() {
    let r = ipt("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m limit --limit 1/sec -j DROP\nCOMMIT\n");
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 1, INPUT));
    assert_eq!(e.decision, Decision::Drop);
    assert!(e.walk.iter().any(|s| s.event == Event::Assumed && s.detail.as_deref().unwrap_or("").contains("rate limit")));
}

#[test]
fn addrtype_local_follows_the_path_and_conntrack_state() {
    let r = ipt("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 80 -j ACCEPT\n-A FORWARD -m addrtype --dst-type LOCAL -j ACCEPT\nCOMMIT\n");
    assert_eq!(explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 80, INPUT)).decision, Decision::Accept);
    let mut p = pkt("docker0", "172.17.0.2", "172.17.0.1", 81, INPUT);
    assert_eq!(explain(&r, &p).decision, Decision::Drop);
    p.ct_state = CtState::Established;
    assert_eq!(explain(&r, &p).decision, Decision::Accept);
    let mut f = pkt("docker0", "172.17.0.2", "10.9.9.9", 80, PathKind::Forward);
    f.oif = Some("eth0".into());
    assert_eq!(explain(&r, &f).decision, Decision::Drop);
}

#[test]
fn nat_dnat_rewrites_and_reroutes_when_addresses_are_known() {
    let r = ipt("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A FORWARD -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT\nCOMMIT\n");
    let mut p = pkt("eth0", "198.18.0.2", "198.18.0.1", 8080, INPUT);
    p.local_addresses = Some(vec!["198.18.0.1".parse().unwrap(), "172.17.0.1".parse().unwrap()]);
    p.oif = Some("docker0".into());
    let e = explain(&r, &p);
    assert_eq!(e.path, PathKind::Forward);
    assert_eq!(e.dnat.as_deref(), Some("172.17.0.2:80"));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.chain.as_deref(), Some("FORWARD"));
}

const TWO_NFT: &str = r#"{"nftables":[
 {"table":{"family":"inet","name":"a"}},
 {"chain":{"family":"inet","table":"a","name":"in","type":"filter","hook":"input","prio":-10,"policy":"accept"}},
 {"rule":{"family":"inet","table":"a","chain":"in","handle":4,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"docker*"}},{"accept":null}]}},
 {"table":{"family":"inet","name":"b"}},
 {"set":{"family":"inet","table":"b","name":"ok","type":"inet_service","handle":3,"elem":[22,{"range":[8000,8100]}]}},
 {"chain":{"family":"inet","table":"b","name":"in","type":"filter","hook":"input","prio":10,"policy":"drop"}},
 {"rule":{"family":"inet","table":"b","chain":"in","handle":5,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":"@ok"}},{"accept":null}]}},
 {"rule":{"family":"inet","table":"b","chain":"in","handle":6,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}}
]}"#;

#[test]
fn nft_accept_does_not_end_later_base_chains() {
    let r = Rulesets { iptables: vec![], nft: Some(nftj(TWO_NFT)) };
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert_eq!(e.decision, Decision::Drop, "{}", text::render(&e));
    assert_eq!(e.backend, Some(Backend::Nftables));
    assert_eq!(e.table.as_deref(), Some("b"));
    assert!(e.policy);
    assert!(e.rule.contains("policy drop"), "{}", e.rule);
    // a named set with a range
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 8050, INPUT));
    assert_eq!(e.decision, Decision::Accept);
    assert_eq!(e.rule, "tcp dport @ok accept # handle 5");
    // the fix goes into table b, and is verified
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert!(e.fixes[0].commands[0].starts_with("sudo nft insert rule inet b in iifname \"docker0\" tcp dport 5432 accept"), "{:?}", e.fixes);
    assert!(e.fixes[0].verified);
}

#[test]
fn iptables_nft_tables_are_not_evaluated_twice() {
    let save = "# Generated by iptables-save v1.8.9 (nf_tables)\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m addrtype --dst-type LOCAL -j DROP\nCOMMIT\n";
    let json = r#"{"nftables":[{"table":{"family":"ip","name":"filter"}},
      {"chain":{"family":"ip","table":"filter","name":"INPUT","type":"filter","hook":"input","prio":0,"policy":"accept"}},
      {"rule":{"family":"ip","table":"filter","chain":"INPUT","expr":[{"xt":{"type":"match","name":"addrtype"}},{"counter":{"packets":0,"bytes":0}},{"drop":null}]}}]}"#;
    let r = Rulesets::from_texts([("iptables-nft-save", save)], Some(("nft", json))).unwrap();
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 1, INPUT));
    assert_eq!(e.decision, Decision::Drop);
    assert_eq!(e.backend, Some(Backend::IptablesNft));
    assert!(e.certain, "the xt match must come from iptables-save, not nft: {:?}", e.unevaluated);
    assert_eq!(e.sources.len(), 1);
    // without the iptables-save side, the nft copy is used, labelled, and its xt match is not evaluable
    let r = Rulesets::from_texts([], Some(("nft", json))).unwrap();
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 1, INPUT));
    assert_eq!(e.backend, Some(Backend::IptablesNft));
    assert!(!e.certain);
    assert!(e.notes.iter().any(|n| n.contains("written by iptables-nft")));
}

#[test]
fn vmap_and_goto_in_nft() {
    let json = r#"{"nftables":[{"table":{"family":"ip","name":"t"}},
      {"chain":{"family":"ip","table":"t","name":"in","type":"filter","hook":"input","prio":0,"policy":"accept"}},
      {"chain":{"family":"ip","table":"t","name":"dock"}},
      {"rule":{"family":"ip","table":"t","chain":"in","expr":[{"vmap":{"key":{"meta":{"key":"iifname"}},"data":{"set":[["docker0",{"goto":{"target":"dock"}}],["lo",{"accept":null}]]}}}]}},
      {"rule":{"family":"ip","table":"t","chain":"dock","expr":[{"match":{"op":"!=","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[53,5432]}}},{"reject":{"type":"tcp reset"}}]}}]}"#;
    let r = Rulesets { iptables: vec![], nft: Some(nftj(json)) };
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 80, INPUT));
    assert_eq!(e.decision, Decision::Reject);
    assert_eq!(e.reject_with.as_deref(), Some("tcp reset"));
    assert_eq!(e.rule, "tcp dport != { 53, 5432 } reject with tcp reset");
    let e = explain(&r, &pkt("docker0", "172.17.0.2", "172.17.0.1", 5432, INPUT));
    assert_eq!(e.decision, Decision::Accept);
    assert!(e.policy);
}
