//! The exact fixes: commands and config lines, named for the service, the bridge and the subnet at hand.

use crate::socket::Service;
use hostreach_model::{Fix, Proto, SocketFact};
use std::net::IpAddr;

/// What the fixes need to know about where the container sits.
#[derive(Debug, Clone, Default)]
pub struct Place {
    pub container: Option<String>,
    /// The address the container reaches the host by (its network's gateway).
    pub gateway: Option<IpAddr>,
    /// The container network's subnet, `172.17.0.0/16`.
    pub subnet: Option<String>,
    /// The host bridge, `docker0` or `br-1a2b3c4d5e6f`.
    pub bridge: Option<String>,
    /// The Docker network's name.
    pub network: Option<String>,
    /// Where `host-gateway` points: the daemon's host-gateway-ip, else the default bridge's address.
    pub host_gateway: Option<IpAddr>,
    /// The daemon runs with `iptables: false`: it manages no firewall rules.
    pub docker_iptables_off: bool,
}

impl Place {
    fn gw(&self) -> String {
        self.gateway.map(|g| g.to_string()).unwrap_or_else(|| "172.17.0.1".into())
    }
    fn subnet(&self) -> String {
        self.subnet.clone().unwrap_or_else(|| "172.17.0.0/16".into())
    }
    fn bridge(&self) -> String {
        self.bridge.clone().unwrap_or_else(|| "docker0".into())
    }
    pub fn container(&self) -> String {
        self.container.clone().unwrap_or_else(|| "CONTAINER".into())
    }
}

/// The service listens on loopback only: make it listen on the gateway address too.
pub fn loopback_bind(service: Service, listeners: &[&SocketFact], place: &Place, port: u16, proto: Proto) -> Vec<Fix> {
    let gw = place.gw();
    let subnet = place.subnet();
    let mut fixes = Vec::new();
    match service {
        Service::Postgres => {
            fixes.push(Fix::new(
                format!("Make PostgreSQL listen on the {} gateway address as well as localhost (postgresql.conf), then restart it", place.bridge()),
                [
                    format!("listen_addresses = 'localhost,{gw}'"),
                    "sudo systemctl restart postgresql".to_string(),
                ],
            ));
            fixes.push(Fix::new(
                format!("Let clients from the container network {subnet} log in (pg_hba.conf), then reload"),
                [
                    format!("host    all    all    {subnet}    scram-sha-256"),
                    "sudo systemctl reload postgresql".to_string(),
                ],
            ));
        }
        Service::Redis => {
            fixes.push(Fix::new(
                format!("Make Redis listen on {gw} too (redis.conf `bind`), and keep protected mode on with a password: protected mode refuses every non-loopback client while the default user has none"),
                [
                    format!("bind 127.0.0.1 -::1 {gw}"),
                    "protected-mode yes".to_string(),
                    "requirepass <a long random secret>".to_string(),
                    "sudo systemctl restart redis-server".to_string(),
                ],
            ));
        }
        Service::Mysql => {
            fixes.push(Fix::new(
                format!("Make MySQL/MariaDB listen on {gw} (the [mysqld] section of mysqld.cnf, or 50-server.cnf on MariaDB), then restart it"),
                [
                    "[mysqld]".to_string(),
                    format!("bind-address = 127.0.0.1,{gw}"),
                    "sudo systemctl restart mysql   # or mariadb".to_string(),
                ],
            ));
            let net_pattern = subnet_like_pattern(&subnet);
            fixes.push(Fix::new(
                "Allow the application's user to connect from the container network",
                [format!("CREATE USER 'app'@'{net_pattern}' IDENTIFIED BY '...'; GRANT ALL ON appdb.* TO 'app'@'{net_pattern}';")],
            ));
        }
        Service::Other => {
            let who = listeners
                .iter()
                .find_map(|s| s.process.as_ref())
                .map(|p| format!("{} (pid {})", p.name, p.pid))
                .unwrap_or_else(|| "the service".into());
            fixes.push(Fix::new(
                format!(
                    "Make {who} listen on {gw}:{port} (the {} gateway) in addition to 127.0.0.1, or on 0.0.0.0 if a firewall keeps the port off other networks; binding the gateway address keeps it off the LAN",
                    place.bridge()
                ),
                [format!("listen address: {gw}:{port}/{proto}  (was: {})", endpoints(listeners))],
            ));
        }
    }
    fixes
}

/// `172.17.0.0/16` → `172.17.%` for MySQL host patterns (by whole octets).
fn subnet_like_pattern(subnet: &str) -> String {
    let (net, len) = subnet.split_once('/').unwrap_or((subnet, "16"));
    let octets: Vec<&str> = net.split('.').collect();
    let keep = (len.parse::<usize>().unwrap_or(16) / 8).clamp(1, 3);
    if octets.len() != 4 {
        return "%".into();
    }
    format!("{}.%", octets[..keep].join("."))
}

pub fn endpoints(listeners: &[&SocketFact]) -> String {
    listeners.iter().map(|s| s.local_endpoint()).collect::<Vec<_>>().join(", ")
}

/// Nothing listens on the port.
pub fn not_listening(port: u16, proto: Proto, other_ports: &[u16]) -> Vec<Fix> {
    let mut cmds = vec![format!("start the service so that it listens on {proto} port {port}, on the gateway address or 0.0.0.0")];
    if !other_ports.is_empty() {
        let list: Vec<String> = other_ports.iter().map(|p| p.to_string()).collect();
        cmds.push(format!("or correct the port: the host listens on {proto} ports {}", list.join(", ")));
    }
    vec![Fix::new(format!("Nothing listens on {proto} port {port} on any host address: start the service or use the port it listens on"), cmds)]
}

/// The service listens on other specific addresses.
pub fn other_address(listeners: &[&SocketFact], place: &Place, port: u16, reachable: &[IpAddr]) -> Vec<Fix> {
    let gw = place.gw();
    let mut fixes = Vec::new();
    if let Some(a) = reachable.first() {
        let ep = match a {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            _ => format!("{a}:{port}"),
        };
        fixes.push(Fix::new(
            format!("Target an address the service listens on: {ep} is the host's own, so the container reaches it by local delivery"),
            [format!("use {ep} instead of {gw}:{port}")],
        ));
    }
    fixes.push(Fix::new(
        format!("Or make the service listen on {gw}:{port} as well (it listens on {})", endpoints(listeners)),
        [format!("listen address: {gw}:{port}")],
    ));
    fixes
}

/// A firewall rule on the local-delivery path drops or rejects the packet.
pub fn firewall(place: &Place, port: u16, proto: Proto) -> Vec<Fix> {
    let br = place.bridge();
    let subnet = place.subnet();
    vec![
        Fix::new(
            format!("Accept the container network in INPUT for {proto} port {port} (container-to-host traffic is delivered locally: INPUT decides, not FORWARD)"),
            [format!("sudo iptables -I INPUT -i {br} -p {proto} --dport {port} -j ACCEPT")],
        ),
        Fix::new(
            "With UFW: an `allow in on` rule (INPUT); `ufw route allow` and DEFAULT_FORWARD_POLICY only touch FORWARD and do not open this",
            [format!("sudo ufw allow in on {br} to any port {port} proto {proto}"), format!("# or: sudo ufw allow from {subnet} to any port {port} proto {proto}")],
        ),
        Fix::new(
            "With firewalld: allow the port in the zone of the bridge (Docker puts its bridges in the `docker` zone)",
            [
                format!("sudo firewall-cmd --zone=$(firewall-cmd --get-zone-of-interface={br}) --add-port={port}/{proto} --permanent"),
                "sudo firewall-cmd --reload".to_string(),
            ],
        ),
        Fix::new(
            if place.docker_iptables_off {
                "Not a DOCKER-USER rule: Docker jumps to DOCKER-USER only from FORWARD, which container-to-host packets never cross (and this daemon runs with iptables: false, so it manages no rules at all: the INPUT rules are yours)"
            } else {
                "Not a DOCKER-USER rule: Docker jumps to DOCKER-USER only from FORWARD, which container-to-host packets never cross"
            },
            Vec::<String>::new(),
        ),
    ]
}

/// In place of the DOCKER-USER note, with Docker's nftables backend: there is no such chain.
pub fn docker_nftables_note(reported: bool) -> Fix {
    Fix::new(
        format!(
            "Docker's firewall backend is nftables ({}): it has no DOCKER-USER chain at all. Container-to-host packets are delivered locally and decided in INPUT: accept the port in an input chain of your own nft table, or in the host firewall (UFW, firewalld)",
            if reported { "reported by the daemon" } else { "its docker-bridges tables are in the rules" }
        ),
        Vec::<String>::new(),
    )
}

/// The target is the container's own loopback.
pub fn container_loopback(place: &Place, port: u16, alias_mapped: bool) -> Vec<Fix> {
    let gw = place.gw();
    let mut fixes = vec![Fix::new(
        format!("Inside a container, localhost is the container itself. Target the host by its gateway address {gw}:{port}, or by host.docker.internal:{port}"),
        [format!("{gw}:{port}")],
    )];
    if !alias_mapped {
        fixes.push(Fix::new(
            "Map host.docker.internal to the host (Linux needs it spelled out)",
            [
                format!("docker run --add-host host.docker.internal:host-gateway ...   # then connect to host.docker.internal:{port}"),
                "compose: extra_hosts: [\"host.docker.internal:host-gateway\"]".to_string(),
            ],
        ));
    }
    fixes
}

/// A host alias does not resolve.
pub fn host_alias(name: &str, place: &Place) -> Vec<Fix> {
    vec![
        Fix::new(
            format!(
                "Map {name} to the host when the container is created (on Linux Docker does not add it by itself); host-gateway is {}, also from user-defined networks",
                place.host_gateway.map(|g| g.to_string()).unwrap_or_else(|| "the default bridge's address (docker0)".into())
            ),
            [
                format!("docker run --add-host {name}:host-gateway ..."),
                "# compose, under the service:".to_string(),
                "    extra_hosts:".to_string(),
                format!("      - \"{name}:host-gateway\""),
            ],
        ),
        Fix::new(
            format!("Recreate the container ({}) for the mapping to take effect", place.container()),
            [format!("docker rm -f {0} && docker run --add-host {name}:host-gateway ... ", place.container())],
        ),
    ]
}

pub fn name_unresolved(name: &str, servers: &[IpAddr]) -> Vec<Fix> {
    let list: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    vec![Fix::new(
        format!(
            "Check the name, or make it resolvable in the container: add it to the container's hosts file, or to the DNS server{} it asks ({})",
            if servers.len() == 1 { "" } else { "s" },
            if list.is_empty() { "none configured".into() } else { list.join(", ") }
        ),
        [format!("docker run --add-host {name}:<address> ...   # compose: extra_hosts: [\"{name}:<address>\"]")],
    )]
}

/// Two containers that must find each other by name: put them on one user-defined network.
pub fn peer_network(container: &str, peer: &str) -> Vec<Fix> {
    vec![Fix::new(
        format!("Put {container} and {peer} on one user-defined network, where Docker's embedded DNS resolves container names (compose does this for a project's services)"),
        [
            "docker network create app-net".to_string(),
            format!("docker network connect app-net {container}"),
            format!("docker network connect app-net {peer}"),
        ],
    )]
}

pub fn network_none(container: &str) -> Vec<Fix> {
    vec![Fix::new(
        "The container has no network: attach it to a bridge network",
        [format!("docker network connect bridge {container}"), "# or recreate it without --network none".to_string()],
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_patterns() {
        assert_eq!(subnet_like_pattern("172.17.0.0/16"), "172.17.%");
        assert_eq!(subnet_like_pattern("10.1.2.0/24"), "10.1.2.%");
        assert_eq!(subnet_like_pattern("junk"), "%");
    }
}
