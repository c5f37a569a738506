//! The Docker Engine API over its unix socket (bollard). Never the docker CLI.

use crate::error::{CollectError, Result};
use bollard::Docker;
use bollard::errors::Error as BollardError;
use hostreach_model::{ContainerConfig, ContainerFacts, DaemonFacts, DaemonSettings, NetworkAttachment, NetworkMode};
use std::collections::HashMap;
use std::net::IpAddr;

pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long one API call may take before hostreach gives up on the daemon.
const API_TIMEOUT_SECS: u64 = 10;

/// A connected Docker client and the endpoint it talks to.
pub struct DockerClient {
    docker: Docker,
    endpoint: String,
}

/// Resolves `--docker-host`, then `DOCKER_HOST`, then the default socket.
pub fn endpoint(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

impl DockerClient {
    /// Connects to a unix socket endpoint and negotiates the API version with the daemon.
    pub async fn connect(endpoint: &str) -> Result<DockerClient> {
        let path = match endpoint.strip_prefix("unix://") {
            Some(p) => p.to_string(),
            None if endpoint.starts_with('/') => endpoint.to_string(),
            None => {
                return Err(CollectError::Docker(format!(
                    "Docker endpoint {endpoint:?} is not a unix socket; hostreach runs on the Docker host and talks to unix:///var/run/docker.sock (set --docker-host or DOCKER_HOST to unix:///PATH)"
                )));
            }
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CollectError::Docker(format!(
                    "no Docker daemon socket at {path}: is dockerd running? (set --docker-host or DOCKER_HOST if it listens elsewhere)"
                )));
            }
            Err(e) => return Err(CollectError::io(format!("checking Docker socket {path}"), e)),
            Ok(_) => {}
        }
        let docker = Docker::connect_with_unix(&path, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| map_err(&path, e))?;
        // Docker 20.10 speaks API 1.41 at most: negotiate instead of sending our newest version.
        let docker = docker.negotiate_version().await.map_err(|e| map_err(&path, e))?;
        Ok(DockerClient { docker, endpoint: format!("unix://{path}") })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The daemon's version and firewall backend (`GET /version`, `GET /info`).
    pub async fn daemon(&self) -> Result<DaemonFacts> {
        let (v, info) = tokio::join!(self.docker.version(), self.docker.info());
        let v = v.map_err(|e| map_err(&self.endpoint, e))?;
        // /info is best-effort: an older daemon's answer may lack fields; never fail the diagnosis on it.
        let backend = info.ok().and_then(|i| i.firewall_backend).and_then(|f| f.driver);
        Ok(DaemonFacts {
            version: v.version,
            api_version: v.api_version,
            os: v.os,
            kernel_version: v.kernel_version,
            firewall_backend: backend,
            endpoint: self.endpoint.clone(),
            settings: daemon_settings(),
        })
    }

    /// A container's facts: state, PID, network mode, networks with their gateways and bridges.
    pub async fn container(&self, name_or_id: &str) -> Result<ContainerFacts> {
        Ok(self.container_with_config(name_or_id).await?.0)
    }

    /// The running containers with the networks each is on.
    pub async fn peers(&self) -> Result<Vec<hostreach_model::PeerContainer>> {
        let list = self
            .docker
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .map_err(|e| map_err(&self.endpoint, e))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let mut networks: Vec<String> =
                    c.network_settings.and_then(|n| n.networks).map(|m| m.into_keys().collect()).unwrap_or_default();
                networks.sort();
                let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or_default();
                hostreach_model::PeerContainer { name: name.trim_start_matches('/').to_string(), networks }
            })
            .collect())
    }

    /// IDs and names of the running containers.
    pub async fn running(&self) -> Result<Vec<(String, String)>> {
        let list = self
            .docker
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .map_err(|e| map_err(&self.endpoint, e))?;
        let mut out: Vec<(String, String)> = list
            .into_iter()
            .filter(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
            .map(|c| {
                let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or_default();
                (c.id.unwrap_or_default(), name.trim_start_matches('/').to_string())
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// A container's facts and the configuration that names its targets (environment, command,
    /// labels). The configuration is returned apart: it holds secrets and is never saved as facts.
    pub async fn container_with_config(&self, name_or_id: &str) -> Result<(ContainerFacts, ContainerConfig)> {
        let c = self.docker.inspect_container(name_or_id, None).await.map_err(|e| match e {
            BollardError::DockerResponseServerError { status_code: 404, .. } => CollectError::Subject(format!(
                "no container {name_or_id:?} on the Docker daemon at {}: check the name with `docker ps -a`",
                self.endpoint
            )),
            e => map_err(&self.endpoint, e),
        })?;
        let state = c.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let status = state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
        let pid = state.pid.filter(|p| *p > 0).map(|p| p as u32);
        let host_config = c.host_config.unwrap_or_default();
        let network_mode_raw = host_config.network_mode.unwrap_or_else(|| "default".into());
        let endpoints = c.network_settings.and_then(|n| n.networks).unwrap_or_default();

        let mut networks = Vec::new();
        for (net_name, ep) in endpoints {
            let net_id = ep.network_id.clone().unwrap_or_default();
            let (driver, bridge, subnet) = self.network_details(&net_name, &net_id).await;
            networks.push(NetworkAttachment {
                name: net_name,
                network_id: net_id,
                driver,
                ip: parse_ip(ep.ip_address.as_deref()),
                prefix_len: ep.ip_prefix_len.filter(|p| *p > 0).map(|p| p as u8),
                gateway: parse_ip(ep.gateway.as_deref()),
                ipv6: parse_ip(ep.global_ipv6_address.as_deref()),
                ipv6_gateway: parse_ip(ep.ipv6_gateway.as_deref()),
                mac: ep.mac_address.filter(|m| !m.is_empty()),
                subnet,
                bridge,
            });
        }
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        let network_mode = classify_mode(&network_mode_raw, &networks);

        let cfg = c.config.unwrap_or_default();
        let config = ContainerConfig {
            env: cfg.env.clone().unwrap_or_default(),
            command: cfg.entrypoint.clone().unwrap_or_default().into_iter().chain(cfg.cmd.clone().unwrap_or_default()).collect(),
            labels: cfg.labels.clone().unwrap_or_default().into_iter().collect(),
        };
        let facts = ContainerFacts {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            image: cfg.image,
            running,
            status,
            pid,
            network_mode_raw,
            network_mode,
            networks,
            extra_hosts: host_config.extra_hosts.unwrap_or_default(),
            dns: host_config.dns.unwrap_or_default(),
            hosts: Vec::new(),
            resolv: None,
        };
        Ok((facts, config))
    }

    /// Driver, host bridge name and first subnet of a network; best effort (None when unknown).
    async fn network_details(&self, name: &str, id: &str) -> (Option<String>, Option<String>, Option<String>) {
        let key = if id.is_empty() { name } else { id };
        let Ok(n) = self.docker.inspect_network(key, None).await else { return (None, None, None) };
        let options: HashMap<String, String> = n.options.unwrap_or_default();
        let driver = n.driver.clone();
        let bridge = if driver.as_deref() == Some("bridge") {
            options
                .get("com.docker.network.bridge.name")
                .cloned()
                .or_else(|| n.id.as_deref().map(|id| format!("br-{}", &id[..id.len().min(12)])))
        } else {
            None
        };
        let subnet = n
            .ipam
            .and_then(|i| i.config)
            .and_then(|cfgs| cfgs.into_iter().find_map(|c| c.subnet));
        (driver, bridge, subnet)
    }
}

/// The settings of the dockerd that runs in this process's network namespace: found through /proc
/// (a `dockerd` whose /proc/PID/ns/net is ours), its `--config-file` (default /etc/docker/daemon.json)
/// and the flags on its command line, which win over the file as dockerd itself does.
pub fn daemon_settings() -> Option<DaemonSettings> {
    let ours = std::fs::metadata("/proc/thread-self/ns/net").ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let mut found: Option<(u32, Vec<String>)> = None;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dockerd") {
            continue;
        }
        let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if ns.is_none() || ns != ours {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        found = Some((pid, args));
        break;
    }
    let (pid, args) = found?;
    Some(settings_from(pid, &args, |p| std::fs::read_to_string(p).ok()))
}

/// Pure part of [`daemon_settings`]: flags, then the file for what the flags leave unset.
pub fn settings_from(pid: u32, args: &[String], read: impl Fn(&str) -> Option<String>) -> DaemonSettings {
    let flag = |name: &str| -> Vec<String> {
        let mut v = Vec::new();
        let mut it = args.iter().skip(1);
        while let Some(a) = it.next() {
            if let Some(val) = a.strip_prefix(&format!("--{name}=")) {
                v.push(val.to_string());
            } else if a == &format!("--{name}") {
                if let Some(val) = it.clone().next().filter(|x| !x.starts_with("--")) {
                    v.push(val.clone());
                    it.next();
                } else {
                    v.push("true".into());
                }
            }
        }
        v
    };
    let config_file = flag("config-file").pop().unwrap_or_else(|| "/etc/docker/daemon.json".into());
    let text = read(&config_file);
    let json: serde_json::Value = text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let s = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let b = |k: &str| json.get(k).and_then(|v| v.as_bool());
    let fb = |name: &str| flag(name).pop().map(|v| v != "false");
    DaemonSettings {
        config_file: text.is_some().then_some(config_file),
        pid: Some(pid),
        bip: flag("bip").pop().or_else(|| s("bip")),
        default_address_pools: json
            .get("default-address-pools")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|p| format!("{} in /{}s", p["base"].as_str().unwrap_or("?"), p["size"].as_u64().unwrap_or(0))).collect())
            .unwrap_or_default(),
        mtu: flag("mtu").pop().and_then(|m| m.parse().ok()).or_else(|| json.get("mtu").and_then(|v| v.as_u64()).map(|m| m as u32)),
        host_gateway_ip: flag("host-gateway-ip").pop().or_else(|| s("host-gateway-ip")),
        iptables: fb("iptables").or_else(|| b("iptables")),
        userland_proxy: fb("userland-proxy").or_else(|| b("userland-proxy")),
        dns: {
            let f = flag("dns");
            if f.is_empty() {
                json.get("dns").and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
            } else {
                f
            }
        },
    }
}

fn parse_ip(s: Option<&str>) -> Option<IpAddr> {
    s.filter(|s| !s.is_empty()).and_then(|s| s.parse().ok())
}

/// Turns HostConfig.NetworkMode and the attached networks into a [`NetworkMode`].
pub fn classify_mode(raw: &str, networks: &[NetworkAttachment]) -> NetworkMode {
    match raw {
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        m if m.starts_with("container:") => NetworkMode::Container,
        _ => {
            // `default`/`bridge` or a network name: look at the driver of the network it is on.
            let first = networks.iter().find(|n| n.name == raw).or_else(|| networks.first());
            match first.and_then(|n| n.driver.as_deref()) {
                Some("bridge") if first.is_some_and(|n| n.name == "bridge") => NetworkMode::Bridge,
                Some("bridge") => NetworkMode::UserBridge,
                Some("macvlan") => NetworkMode::Macvlan,
                Some("ipvlan") => NetworkMode::Ipvlan,
                Some("overlay") => NetworkMode::Overlay,
                Some("host") => NetworkMode::Host,
                Some("null") => NetworkMode::None,
                Some(_) => NetworkMode::Other,
                None if raw == "default" || raw == "bridge" => NetworkMode::Bridge,
                None => NetworkMode::Other,
            }
        }
    }
}

/// Turns a bollard error into one line that says what is wrong and what to do.
fn map_err(endpoint: &str, e: BollardError) -> CollectError {
    match e {
        BollardError::SocketNotFoundError(p) => CollectError::Docker(format!(
            "no Docker daemon socket at {p}: is dockerd running? (set --docker-host or DOCKER_HOST)"
        )),
        BollardError::DockerResponseServerError { status_code, message } => {
            CollectError::Docker(format!("the Docker daemon at {endpoint} answered {status_code}: {message}"))
        }
        BollardError::RequestTimeoutError => CollectError::Docker(format!(
            "the Docker daemon at {endpoint} did not answer within {API_TIMEOUT_SECS} s"
        )),
        other => {
            let text = other.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&other);
            let mut io_kind = None;
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    io_kind = Some(io.kind());
                }
                src = s.source();
            }
            match io_kind {
                Some(std::io::ErrorKind::PermissionDenied) => CollectError::Permission {
                    what: format!("connecting to the Docker daemon at {endpoint}"),
                    hint: "run hostreach as root or as a member of the docker group".into(),
                },
                Some(std::io::ErrorKind::ConnectionRefused) | Some(std::io::ErrorKind::NotFound) => {
                    CollectError::Docker(format!(
                        "the Docker daemon at {endpoint} is not running (connection refused): start dockerd, or point --docker-host at the right socket"
                    ))
                }
                _ if text.to_lowercase().contains("permission denied") => CollectError::Permission {
                    what: format!("connecting to the Docker daemon at {endpoint}"),
                    hint: "run hostreach as root or as a member of the docker group".into(),
                },
                _ => CollectError::Docker(format!("talking to the Docker daemon at {endpoint}: {text}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, driver: &str) -> NetworkAttachment {
        NetworkAttachment {
            name: name.into(),
            network_id: "0123456789abcdef".into(),
            driver: Some(driver.into()),
            ip: None,
            prefix_len: None,
            gateway: None,
            ipv6: None,
            ipv6_gateway: None,
            mac: None,
            subnet: None,
            bridge: None,
        }
    }

    #[test]
    fn modes() {
        assert_eq!(classify_mode("host", &[]), NetworkMode::Host);
        assert_eq!(classify_mode("none", &[]), NetworkMode::None);
        assert_eq!(classify_mode("container:abc", &[]), NetworkMode::Container);
        assert_eq!(classify_mode("default", &[net("bridge", "bridge")]), NetworkMode::Bridge);
        assert_eq!(classify_mode("app_default", &[net("app_default", "bridge")]), NetworkMode::UserBridge);
        assert_eq!(classify_mode("mv", &[net("mv", "macvlan")]), NetworkMode::Macvlan);
        assert_eq!(classify_mode("default", &[]), NetworkMode::Bridge);
    }

    #[test]
    fn settings_flags_win_over_the_file() {
        let args: Vec<String> = ["dockerd", "--config-file", "/x/daemon.json", "--mtu=1400", "--iptables=false", "--dns", "10.0.0.53"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let file = r#"{"mtu": 1500, "bip": "10.99.0.1/24", "host-gateway-ip": "10.99.0.1", "userland-proxy": false,
                       "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}]}"#;
        let s = settings_from(7, &args, |p| (p == "/x/daemon.json").then(|| file.to_string()));
        assert_eq!(s.config_file.as_deref(), Some("/x/daemon.json"));
        assert_eq!(s.mtu, Some(1400));
        assert_eq!(s.bip.as_deref(), Some("10.99.0.1/24"));
        assert_eq!(s.host_gateway_ip.as_deref(), Some("10.99.0.1"));
        assert_eq!(s.iptables, Some(false));
        assert_eq!(s.userland_proxy, Some(false));
        assert_eq!(s.dns, vec!["10.0.0.53"]);
        assert_eq!(s.default_address_pools, vec!["10.200.0.0/16 in /24s"]);
        let none = settings_from(7, &["dockerd".to_string()], |_| None);
        assert_eq!(none.config_file, None);
        assert_eq!(none.mtu, None);
    }

    #[test]
    fn endpoint_precedence() {
        assert_eq!(endpoint(Some("unix:///x.sock")), "unix:///x.sock");
    }

    #[tokio::test]
    async fn missing_socket_is_one_clear_line() {
        let e = DockerClient::connect("unix:///run/hostreach-no-such.sock").await.err().unwrap();
        let s = e.to_string();
        assert!(s.contains("no Docker daemon socket at /run/hostreach-no-such.sock"), "{s}");
        let e = DockerClient::connect("tcp://127.0.0.1:2375").await.err().unwrap();
        assert!(e.to_string().contains("not a unix socket"));
    }
}
