//! `nft -j list ruleset` JSON: the parser never panics, whatever parses can be explained, and
//! its fast paths (simd-json tapes; big documents in pieces on all cores) read a document as a
//! `serde_json::Value` of it reads.
#![no_main]

use hostreach_firewall::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for piece in [1, 64, 512] {
        assert!(nft::paths_agree(text, piece), "read otherwise than serde_json reads it (pieces of {piece} bytes)");
    }
    let Ok(rs) = nft::parse(text) else { return };
    let rs = Rulesets { iptables: vec![], nft: Some(rs) };
    for (path, dst) in [(PathKind::Input, "172.17.0.1"), (PathKind::Forward, "10.0.0.9")] {
        let mut p = Packet::new("docker0", "172.17.0.2".parse().unwrap(), dst.parse().unwrap(), Proto::Tcp, Some(5432), path);
        p.oif = Some("eth0".into());
        let e = explain(&rs, &p);
        let _ = text::render(&e);
    }
});
