//! Generates a large ruleset for the benchmark (scripts/bench-firewall):
//!   cargo run --release -p hostreach-firewall --example gen-ruleset -- N OUT_DIR
//! writes OUT_DIR/big.rules (iptables-restore input, N rules in the filter table) and
//! OUT_DIR/big.nft (nft -f input, N rules in table inet big). Both have the shape of a real host:
//! a base chain that jumps into many user chains of per-source accepts, conntrack, multiport and
//! comments, and a final drop for the benchmark's packet (which matches nothing before it, so the
//! walk visits every rule).
use std::fmt::Write as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let out = std::path::PathBuf::from(args.get(2).map(String::as_str).unwrap_or("."));
    std::fs::create_dir_all(&out).expect("output dir");
    let per_chain = 500;
    let chains = n.div_ceil(per_chain);
    // iptables
    let mut ipt = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in 0..chains {
        let _ = writeln!(ipt, ":hr-{c} - [0:0]");
    }
    let mut body = String::new();
    let _ = writeln!(body, "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    let _ = writeln!(body, "-A INPUT -i lo -j ACCEPT");
    let mut written = 2;
    for c in 0..chains {
        let _ = writeln!(body, "-A INPUT -i eth0 -j hr-{c}");
        written += 1;
        for i in 0..per_chain {
            if written >= n - 1 {
                break;
            }
            let k = c * per_chain + i;
            let (a, b) = ((k >> 8) & 255, k & 255);
            let line = match k % 4 {
                0 => format!("-A hr-{c} -s 10.{}.{a}.{b}/32 -p tcp -m tcp --dport {} -m comment --comment \"client {k}\" -j ACCEPT", c % 256, 1024 + k % 60000),
                1 => format!("-A hr-{c} -s 10.{}.{a}.0/24 -p udp -m multiport --dports 53,123,{} -j ACCEPT", c % 256, 2000 + k % 60000),
                2 => format!("-A hr-{c} ! -s 192.168.{a}.{b}/32 -p tcp -m tcp --dport {} -m conntrack --ctstate NEW -j DROP", 20000 + k % 40000),
                _ => format!("-A hr-{c} -d 172.31.{a}.{b}/32 -p tcp -m tcp --dport 443 -j REJECT --reject-with icmp-port-unreachable"),
            };
            body.push_str(&line);
            body.push('\n');
            written += 1;
        }
    }
    let _ = writeln!(body, "-A INPUT -i eth0 -p tcp -m tcp --dport 5432 -j DROP");
    ipt.push_str(&body);
    ipt.push_str("COMMIT\n");
    std::fs::write(out.join("big.rules"), ipt).expect("write big.rules");
    // nft
    let mut nft = String::from("table inet big {\n");
    for c in 0..chains {
        let _ = writeln!(nft, "\tchain hr-{c} {{");
        for i in 0..per_chain {
            let k = c * per_chain + i;
            if k + 3 >= n {
                break;
            }
            let (a, b) = ((k >> 8) & 255, k & 255);
            let line = match k % 4 {
                0 => format!("ip saddr 10.{}.{a}.{b} tcp dport {} counter accept comment \"client {k}\"", c % 256, 1024 + k % 60000),
                1 => format!("ip saddr 10.{}.{a}.0/24 udp dport {{ 53, 123, {} }} accept", c % 256, 2000 + k % 60000),
                2 => format!("ip saddr != 192.168.{a}.{b} tcp dport {} ct state new drop", 20000 + k % 40000),
                _ => format!("ip daddr 172.31.{a}.{b} tcp dport 443 reject"),
            };
            let _ = writeln!(nft, "\t\t{line}");
        }
        let _ = writeln!(nft, "\t}}");
    }
    let _ = writeln!(nft, "\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;");
    let _ = writeln!(nft, "\t\tct state established,related accept\n\t\tiifname \"lo\" accept");
    for c in 0..chains {
        let _ = writeln!(nft, "\t\tiifname \"eth0\" jump hr-{c}");
    }
    let _ = writeln!(nft, "\t\tiifname \"eth0\" tcp dport 5432 drop\n\t}}\n}}");
    std::fs::write(out.join("big.nft"), nft).expect("write big.nft");
    eprintln!("gen-ruleset: {n} rules in {chains} user chains -> {}", out.display());
}
