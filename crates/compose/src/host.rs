//! What lint may know about the host it runs on, all optional: its links, addresses and routes
//! (netlink, read by the caller), and the egress MTU derived from them or given by the user.

use hostreach_model::{LinkFact, NetnsFacts};
use std::net::IpAddr;

/// The main routing table.
const RT_TABLE_MAIN: u32 = 254;

/// The host's egress path MTU as lint uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// The default route's interface, or what the user named.
    pub interface: String,
    /// The smaller of the interface's MTU and the route's `mtu` metric.
    pub mtu: u32,
    pub route_mtu: Option<u32>,
    /// The user gave it (`--egress-mtu`): not read from the host.
    pub given: bool,
}

/// Host facts for lint. Everything is optional: without it, lint says what it did not check.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub net: Option<NetnsFacts>,
    pub egress: Option<Egress>,
    /// Why `net` is missing, when it is.
    pub unavailable: Option<String>,
}

impl HostFacts {
    /// Facts from the host's namespace, with the egress derived from its IPv4 default route
    /// (then IPv6's), unless `egress_mtu` overrides it.
    pub fn from_netns(net: NetnsFacts, egress_mtu: Option<u32>) -> HostFacts {
        let egress = match egress_mtu {
            Some(m) => Some(Egress {
                interface: "given".into(),
                mtu: m,
                route_mtu: None,
                given: true,
            }),
            None => egress_of(&net),
        };
        HostFacts {
            net: Some(net),
            egress,
            unavailable: None,
        }
    }

    /// No facts: `why` says so in the report. An `egress_mtu` the user gave still counts.
    pub fn unavailable(why: impl Into<String>, egress_mtu: Option<u32>) -> HostFacts {
        HostFacts {
            net: None,
            egress: egress_mtu.map(|m| Egress {
                interface: "given".into(),
                mtu: m,
                route_mtu: None,
                given: true,
            }),
            unavailable: Some(why.into()),
        }
    }

    /// The link that owns `ip` on this host.
    pub fn owner(&self, ip: &IpAddr) -> Option<&LinkFact> {
        self.net.as_ref()?.owner_of(ip)
    }
}

/// The default route's interface and the MTU a packet leaving by it gets.
pub fn egress_of(net: &NetnsFacts) -> Option<Egress> {
    let is_default = |r: &&hostreach_model::RouteFact| {
        r.table == RT_TABLE_MAIN
            && r.destination.is_none()
            && r.prefix_len == 0
            && r.kind == "unicast"
            && r.oif.is_some()
    };
    let v4 = net
        .routes
        .iter()
        .filter(is_default)
        .find(|r| r.gateway.is_none_or(|g| g.is_ipv4()));
    let route = v4.or_else(|| net.routes.iter().find(is_default))?;
    let link = net.link(route.oif?)?;
    let link_mtu = link.mtu?;
    let mtu = route.mtu.map(|m| m.min(link_mtu)).unwrap_or(link_mtu);
    Some(Egress {
        interface: link.name.clone(),
        mtu,
        route_mtu: route.mtu,
        given: false,
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    use hostreach_model::{AddrFact, LinkFact, NetnsFacts, RouteFact};

    pub fn link(index: u32, name: &str, kind: Option<&str>, mtu: u32) -> LinkFact {
        LinkFact {
            index,
            name: name.into(),
            kind: kind.map(str::to_string),
            mtu: Some(mtu),
            up: true,
            lower_up: true,
            mac: None,
            master: None,
            peer_index: None,
            peer_netnsid: None,
        }
    }

    /// A host with eth0 (MTU `eth_mtu`, default route), docker0 172.17.0.1 and a compose bridge
    /// br-1234 172.18.0.1 (when `docker0` is false, no docker0).
    pub fn host(eth_mtu: u32, docker0: bool) -> NetnsFacts {
        let mut links = vec![
            link(1, "lo", None, 65536),
            link(2, "eth0", None, eth_mtu),
            link(4, "br-1234abcd5678", Some("bridge"), 1500),
        ];
        let mut addresses = vec![
            AddrFact {
                index: 1,
                address: "127.0.0.1".parse().unwrap(),
                prefix_len: 8,
            },
            AddrFact {
                index: 2,
                address: "10.1.2.3".parse().unwrap(),
                prefix_len: 24,
            },
            AddrFact {
                index: 4,
                address: "172.18.0.1".parse().unwrap(),
                prefix_len: 16,
            },
        ];
        if docker0 {
            links.push(link(3, "docker0", Some("bridge"), 1500));
            addresses.push(AddrFact {
                index: 3,
                address: "172.17.0.1".parse().unwrap(),
                prefix_len: 16,
            });
        }
        let routes = vec![RouteFact {
            destination: None,
            prefix_len: 0,
            gateway: Some("10.1.2.1".parse().unwrap()),
            oif: Some(2),
            table: 254,
            kind: "unicast".into(),
            preferred_source: None,
            mtu: None,
        }];
        NetnsFacts {
            inode: None,
            links,
            addresses,
            routes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::host;
    use super::*;

    #[test]
    fn egress_is_the_default_route_interface() {
        let e = egress_of(&host(1400, true)).unwrap();
        assert_eq!(
            (e.interface.as_str(), e.mtu, e.given),
            ("eth0", 1400, false)
        );
        let mut h = host(1500, true);
        h.routes[0].mtu = Some(1380);
        assert_eq!(egress_of(&h).unwrap().mtu, 1380);
        h.routes.clear();
        assert!(egress_of(&h).is_none());
        let f = HostFacts::from_netns(host(1500, true), Some(1280));
        assert_eq!(f.egress.unwrap().mtu, 1280);
    }

    #[test]
    fn owners() {
        let f = HostFacts::from_netns(host(1500, true), None);
        assert_eq!(
            f.owner(&"172.17.0.1".parse().unwrap()).unwrap().name,
            "docker0"
        );
        let f = HostFacts::from_netns(host(1500, false), None);
        assert!(f.owner(&"172.17.0.1".parse().unwrap()).is_none());
    }
}
