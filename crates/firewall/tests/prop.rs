//! Property tests: the parsers never panic, explain never panics, generated rules round-trip.

use hostreach_firewall::iptables::{self, Opt, Part, Target};
use hostreach_firewall::*;
use proptest::prelude::*;

fn pkt() -> Packet {
    let mut p = Packet::new("docker0", "172.17.0.2".parse().unwrap(), "172.17.0.1".parse().unwrap(), Proto::Tcp, Some(5432), PathKind::Input);
    p.sport = Some(40000);
    p
}

fn iface() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}\\+?"
}

fn addr() -> impl Strategy<Value = String> {
    (any::<[u8; 4]>(), proptest::option::of(0u8..=32)).prop_map(|(o, l)| {
        let a = format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]);
        match l {
            Some(l) => format!("{a}/{l}"),
            None => format!("{a}/32"),
        }
    })
}

fn ports() -> impl Strategy<Value = String> {
    prop_oneof![any::<u16>().prop_map(|p| p.to_string()), (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("{}:{}", a.min(b), a.max(b)))]
}

fn module() -> impl Strategy<Value = Part> {
    prop_oneof![
        (any::<bool>(), ports()).prop_map(|(neg, p)| Part::Module { name: "tcp".into(), implicit: false, opts: vec![Opt { neg, name: "dport".into(), args: smallvec::smallvec![p.into()] }] }),
        proptest::collection::vec(any::<u16>(), 1..5).prop_map(|ps| Part::Module {
            name: "multiport".into(),
            implicit: false,
            opts: vec![Opt { neg: false, name: "dports".into(), args: smallvec::smallvec![ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",").into()] }]
        }),
        (any::<bool>(), proptest::sample::select(vec!["NEW", "RELATED,ESTABLISHED", "INVALID", "DNAT", "NEW,DNAT"])).prop_map(|(neg, s)| Part::Module {
            name: "conntrack".into(),
            implicit: false,
            opts: vec![Opt { neg, name: "ctstate".into(), args: smallvec::smallvec![s.into()] }]
        }),
        (any::<bool>(), proptest::sample::select(vec!["LOCAL", "BROADCAST", "MULTICAST", "UNICAST"])).prop_map(|(neg, s)| Part::Module {
            name: "addrtype".into(),
            implicit: false,
            opts: vec![Opt { neg, name: "dst-type".into(), args: smallvec::smallvec![s.into()] }]
        }),
        "[ -~]{0,20}".prop_map(|c| Part::Module { name: "comment".into(), implicit: false, opts: vec![Opt { neg: false, name: "comment".into(), args: smallvec::smallvec![c.into()] }] }),
        "[a-z]{1,8}".prop_map(|s| Part::Module { name: "set".into(), implicit: false, opts: vec![Opt { neg: false, name: "match-set".into(), args: smallvec::smallvec![s.into(), "src".into()] }] }),
    ]
}

fn target() -> impl Strategy<Value = Option<Target>> {
    proptest::option::of(prop_oneof![
        proptest::sample::select(vec!["ACCEPT", "DROP", "RETURN", "LOG"]).prop_map(|n| Target { goto: false, name: n.into(), opts: vec![] }),
        proptest::sample::select(vec!["icmp-port-unreachable", "tcp-reset", "icmp-admin-prohibited"])
            .prop_map(|w| Target { goto: false, name: "REJECT".into(), opts: vec![Opt { neg: false, name: "reject-with".into(), args: smallvec::smallvec![w.into()] }] }),
        (any::<bool>()).prop_map(|g| Target { goto: g, name: "user".into(), opts: vec![] }),
    ])
}

fn rule_parts() -> impl Strategy<Value = Vec<Part>> {
    (
        proptest::option::of((any::<bool>(), addr())),
        proptest::option::of((any::<bool>(), iface())),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec(module(), 0..4),
    )
        .prop_map(|(src, iif, tcp, mods)| {
            let mut parts = Vec::new();
            if let Some((neg, a)) = src {
                parts.push(Part::Src { neg, addr: a.into() });
            }
            if let Some((neg, i)) = iif {
                parts.push(Part::In { neg, iface: i.into() });
            }
            let tcp = tcp.is_some() || mods.iter().any(|m| matches!(m, Part::Module { name, .. } if name == "tcp" || name == "multiport"));
            if tcp {
                parts.push(Part::Proto { neg: false, proto: "tcp".into() });
            }
            parts.extend(mods);
            parts
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn iptables_parse_never_panics(s in "\\PC{0,400}") {
        if let Ok(r) = iptables::parse(&s) {
            let rs = Rulesets { iptables: vec![r], nft: None };
            let _ = explain(&rs, &pkt());
        }
    }

    #[test]
    fn iptables_parse_never_panics_on_rule_like_lines(lines in proptest::collection::vec(
        prop_oneof![
            Just("*filter".to_string()), Just("*nat".to_string()), Just("COMMIT".to_string()),
            Just(":INPUT DROP [0:0]".to_string()), Just(":x - [0:0]".to_string()),
            "-A (INPUT|x) [-a-zA-Z0-9 !:,./+\"]{0,60}",
        ], 0..12)) {
        let text = lines.join("\n");
        if let Ok(r) = iptables::parse(&text) {
            let rs = Rulesets { iptables: vec![r], nft: None };
            let _ = explain(&rs, &pkt());
        }
    }

    #[test]
    fn generated_rules_round_trip(rules in proptest::collection::vec((rule_parts(), target()), 1..8)) {
        let mut text = String::from("*filter\n:INPUT DROP [0:0]\n:user - [0:0]\n");
        let mut expected = Vec::new();
        for (parts, target) in rules {
            let r = iptables::IptRule { line: 0, counters: None, chain: "INPUT".into(), parts, target, ..Default::default() };
            let line = r.to_string();
            text.push_str(&line);
            text.push('\n');
            expected.push(r);
        }
        text.push_str("COMMIT\n");
        let parsed = iptables::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let got = &parsed.tables[0].chains[0].rules;
        prop_assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            prop_assert_eq!(&g.parts, &e.parts);
            prop_assert_eq!(&g.target, &e.target);
            prop_assert_eq!(g.to_string(), e.to_string());
        }
        let rs = Rulesets { iptables: vec![parsed], nft: None };
        let e = explain(&rs, &pkt());
        prop_assert!(matches!(e.decision, Decision::Accept | Decision::Drop | Decision::Reject));
    }

    #[test]
    fn nft_parse_never_panics(s in "\\PC{0,300}") {
        if let Ok(r) = nft::parse(&s) {
            let _ = explain(&Rulesets { iptables: vec![], nft: Some(r) }, &pkt());
        }
    }

    #[test]
    fn nft_rule_expressions_never_panic(exprs in proptest::collection::vec(json_value(), 0..6)) {
        let doc = serde_json::json!({"nftables": [
            {"table": {"family": "inet", "name": "t"}},
            {"chain": {"family": "inet", "table": "t", "name": "in", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
            {"chain": {"family": "inet", "table": "t", "name": "sub"}},
            {"set": {"family": "inet", "table": "t", "name": "s", "type": "ipv4_addr", "elem": ["172.17.0.2"]}},
            {"rule": {"family": "inet", "table": "t", "chain": "in", "expr": exprs}},
        ]});
        let r = nft::from_value(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // The text path (top-level array split raw, rules read on their own) reads the same.
        let from_text = nft::parse(&doc.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&from_text, &r);
        let _ = explain(&Rulesets { iptables: vec![], nft: Some(r) }, &pkt());
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<i64>().prop_map(|n| json!(n)),
        proptest::sample::select(vec!["docker0", "docker*", "tcp", "established", "@s", "@nope", "172.17.0.0", "accept", "in", "sub", "local", "\\*"]).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            (proptest::sample::select(vec![
                "match", "left", "right", "op", "meta", "key", "payload", "protocol", "field", "ct", "set", "prefix", "addr", "len", "range",
                "concat", "vmap", "data", "jump", "goto", "target", "accept", "drop", "return", "reject", "type", "expr", "counter", "xt", "name",
                "dnat", "port", "mangle", "value", "fib", "flags", "result", "&", "elem", "val", "limit", "log", "prefix",
            ]), inner.clone(), proptest::option::of((proptest::sample::select(vec!["op", "left", "right", "key", "target", "protocol", "field"]), inner)))
                .prop_map(|(k, v, extra)| {
                    let mut m = serde_json::Map::new();
                    m.insert(k.to_string(), v);
                    if let Some((k2, v2)) = extra {
                        m.insert(k2.to_string(), v2);
                    }
                    serde_json::Value::Object(m)
                }),
        ]
    })
}
