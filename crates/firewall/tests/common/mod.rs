//! Shared by the fixture tests: the rulesets captured by lab/capture-fixtures.
#![allow(dead_code)] // each test binary uses its own part

use hostreach_firewall::Rulesets;
use std::path::PathBuf;

pub fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/firewall").join(name)
}

pub fn load(name: &str) -> Rulesets {
    let d = dir(name);
    let mut ipt = Vec::new();
    for f in ["iptables-save.txt", "ip6tables-save.txt", "iptables-legacy-save.txt"] {
        if let Ok(t) = std::fs::read_to_string(d.join(f)) {
            ipt.push((f.to_string(), t));
        }
    }
    let nft = std::fs::read_to_string(d.join("nft.json")).ok();
    assert!(!ipt.is_empty() || nft.is_some(), "fixture {name} is missing: run lab/capture-fixtures");
    Rulesets::from_texts(ipt.iter().map(|(a, b)| (a.as_str(), b.as_str())), nft.as_deref().map(|j| ("nft.json", j))).unwrap()
}
