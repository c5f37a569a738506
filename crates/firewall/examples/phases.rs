//! Times each phase of explain on saved rules (parse, model, walk, fixes):
//!   cargo run --release -p hostreach-firewall --example phases -- (--iptables-save FILE | --nft-json FILE) IIF SRC DST DPORT
use hostreach_firewall::*;
// The allocator the hostreach binary uses, so the phases add up to what the command takes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&a[2]).expect("read");
    let t0 = Instant::now();
    let rs = if a[1] == "--nft-json" {
        Rulesets { iptables: vec![], nft: Some(nft::parse(&text).expect("nft")) }
    } else {
        Rulesets { iptables: vec![iptables::parse(&text).expect("ipt")], nft: None }
    };
    let t1 = Instant::now();
    let (tables, _) = rs.model();
    let t2 = Instant::now();
    let pkt = Packet::new(a[3].clone(), a[4].parse().unwrap(), a[5].parse().unwrap(), Proto::Tcp, Some(a[6].parse().unwrap()), PathKind::Input);
    let o = eval::walk(&tables, &pkt, &[]);
    let t3 = Instant::now();
    let e = explain(&rs, &pkt);
    let t4 = Instant::now();
    let json = serde_json::to_string(&e).unwrap();
    let t5 = Instant::now();
    eprintln!(
        "parse {:?}  model {:?}  walk {:?} ({} steps)  explain (model+explore+fixes) {:?}  json {:?} ({} bytes)  decision {:?}",
        t1 - t0, t2 - t1, t3 - t2, o.walk.len(), t4 - t3, t5 - t4, json.len(), e.decision
    );
}
