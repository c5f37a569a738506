//! hostreach's collectors: each reads one source of facts and returns model types. They are small and
//! independent so that each can be replaced by recorded data in tests.
//!
//! - [`docker`]: the Docker Engine API (bollard) — container state, PID, networks, daemon version.
//! - [`netlink`]: links, addresses, routes of a network namespace (rtnetlink), veth peers, bridges.
//! - [`sockets`]: sock_diag socket tables and their owning processes (/proc fd scan).
//! - [`tracefs`]: `skb:kfree_skb` drop reasons in a private tracefs instance, removed afterwards.
//! - [`netns`]: entering network namespaces on dedicated threads.
//! - [`resolve`]: name resolution the subject's way (its /etc/hosts, its resolv.conf, DNS from inside).
//! - [`pressure`]: ephemeral ports, accept-queue counters and conntrack of a namespace (issue 5).
//! - [`probe`]: TCP/UDP probes from inside a namespace, concluding early on a reported drop.
//! - [`cleanup`]: what hostreach created is removed on exit, on error and on Ctrl-C.
//! - [`mtu`]: the MTU search (DF probes in the subject's namespace) and a TCP transfer with full-sized segments.
//! - [`capture`], [`pcapng`]: AF_PACKET capture with a kernel BPF filter, written as pcapng (`hostreach trace`).
//! - [`relay`]: `hostreach relay`: listeners inside a namespace, connections carried to the host with splice.
//! - [`firewall`], [`ufw`]: the live firewall rules (iptables-save, nft), and UFW's own files, read only.

pub mod capture;
pub mod cleanup;
pub mod docker;
pub mod error;
pub mod firewall;
pub mod mtu;
pub mod netlink;
pub mod netns;
pub mod pcapng;
pub mod pressure;
pub mod probe;
pub mod relay;
pub mod resolve;
pub mod sockets;
pub mod tracefs;
pub mod ufw;

pub use error::{CollectError, Result};
