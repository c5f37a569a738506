//! IPv6 packets: ICMPv6 type names in nft JSON, and fixes written for ip6tables.

use hostreach_firewall::*;

fn v6_icmp(icmp_type: Option<u8>) -> Packet {
    let mut p = Packet::new("hrbr6", "fd00:6872::2".parse().unwrap(), "fd00:6872::1".parse().unwrap(), Proto::Icmp, None, PathKind::Input);
    p.icmp_type = icmp_type;
    p
}

fn v4_icmp() -> Packet {
    Packet::new("hrbr6", "10.252.0.2".parse().unwrap(), "10.252.0.1".parse().unwrap(), Proto::Icmp, None, PathKind::Input)
}

/// `nft -j list ruleset` of `table inet t6 { chain input { ...; icmpv6 type echo-request counter drop;
/// icmpv6 type { nd-neighbor-solicit, nd-router-advert } accept; icmp type echo-request accept } }`.
const NFT: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "t6", "handle": 1}},
 {"chain": {"family": "inet", "table": "t6", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
 {"rule": {"family": "inet", "table": "t6", "chain": "input", "handle": 3, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}}, "right": "echo-request"}},
   {"counter": {"packets": 1, "bytes": 104}}, {"drop": null}]}},
 {"rule": {"family": "inet", "table": "t6", "chain": "input", "handle": 4, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}}, "right": {"set": ["nd-neighbor-solicit", "nd-router-advert", "echo-reply"]}}},
   {"accept": null}]}},
 {"rule": {"family": "inet", "table": "t6", "chain": "input", "handle": 5, "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": "type"}}, "right": "echo-request"}},
   {"drop": null}]}}]}"#;

#[test]
fn nft_icmpv6_type_names_are_icmpv6_numbers() {
    let rules = Rulesets::from_texts([], Some(("nft.json", NFT))).unwrap();
    // echo-request is ICMPv6 type 128 (ICMP's is 8): the kernel drops a ping -6 here
    let e = explain(&rules, &v6_icmp(None));
    assert_eq!(e.decision, Decision::Drop, "{}", text::render(&e));
    assert_eq!(e.handle, Some(3));
    // and the fix is written for ICMPv6
    assert_eq!(e.fixes[0].commands[0], "sudo nft insert rule inet t6 input position 3 iifname \"hrbr6\" meta l4proto ipv6-icmp accept");
    // ICMPv6 type 8 is not an echo request: not dropped by it
    assert_eq!(explain(&rules, &v6_icmp(Some(8))).decision, Decision::Accept);
    // names in a set: echo-reply is 129, nd-neighbor-solicit 135
    let e = explain(&rules, &v6_icmp(Some(129)));
    assert_eq!((e.decision.clone(), e.handle), (Decision::Accept, Some(4)));
    let e = explain(&rules, &v6_icmp(Some(135)));
    assert_eq!((e.decision.clone(), e.handle), (Decision::Accept, Some(4)));
    // IPv4 ping: `icmp type echo-request` (8) drops it, not the ICMPv6 rule
    let e = explain(&rules, &v4_icmp());
    assert_eq!((e.decision.clone(), e.handle), (Decision::Drop, Some(5)));
}

#[test]
fn ip6tables_fix_for_icmpv6_names_ipv6_icmp() {
    let mut save = iptables::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i hrbr6 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j DROP\nCOMMIT\n").unwrap();
    save.v6 = true;
    let rules = Rulesets { iptables: vec![save], nft: None };
    let e = explain(&rules, &v6_icmp(None));
    assert_eq!(e.decision, Decision::Drop);
    // `-p icmp` in ip6tables is protocol 1, which an IPv6 ping is not
    assert_eq!(e.fixes[0].commands[0], "sudo ip6tables -I INPUT 1 -i hrbr6 -p ipv6-icmp -j ACCEPT");
    assert!(e.fixes[0].verified);
}
