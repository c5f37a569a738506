//! iptables-save text: the parser never panics, and whatever parses can be explained and printed back.
#![no_main]

use hostreach_firewall::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(save) = iptables::parse(text) else { return };
    // what prints back parses back to the same text
    let printed = save.to_string();
    let again = iptables::parse(&printed).expect("printed iptables-save must parse");
    assert_eq!(again.to_string(), printed);
    let rs = Rulesets { iptables: vec![save], nft: None };
    for path in [PathKind::Input, PathKind::Forward] {
        let p = Packet::new("docker0", "172.17.0.2".parse().unwrap(), "172.17.0.1".parse().unwrap(), Proto::Tcp, Some(5432), path);
        let e = explain(&rs, &p);
        let _ = text::render(&e);
    }
});
