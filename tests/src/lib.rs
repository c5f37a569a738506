//! The harness hostreach's integration tests use to build each failure for real in the
//! **hostreach lab**: a dockerd of the project's own inside the network namespace
//! `hostreach-lab` (see `lab/README.md`, `lab/env.sh`).
//!
//! The lab must already be up (`scripts/test` starts it once, or `bash lab/up.sh`).
//! Nothing here skips silently: without the lab, [`Lab::get`] panics and says so.
//!
//! Everything a test creates is a guard that undoes itself on `Drop`, also when the test
//! panics: [`Container`] (`docker rm -f`), [`Network`], [`Listener`]/[`Process`] (killed with
//! their process group), [`Rule`] (`iptables -D` of the same rule), [`NftTable`].
//! Tests run in parallel threads, so everything is scoped: unique names, unique ports
//! ([`Lab::free_port`]), firewall rules that name a port. A test that must change something
//! global (a chain policy, a sysctl) holds [`Lab::exclusive`] and lives in a test binary
//! whose every test holds it too.
//!
//! ```no_run
//! use hostreach_labtests::*;
//! let lab = Lab::get();
//! let port = lab.free_port();
//! let _svc = lab.listener(Proto::Tcp, "127.0.0.1", port);       // loopback-only service
//! let web = lab.container("web", &[]);                           // busybox on docker0
//! let run = hostreach(&["doctor", "--container", &web.name, "--to", &format!("host:{port}"),
//!                       "--format", "json"]);
//! assert_eq!(run.code, 1, "{run}");
//! assert_json_subset(run.json(), &serde_json::json!({"verdict": {"code": "LOOPBACK_ONLY_BIND"}}));
//! ```

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Lab conventions (the same names as lab/env.sh)

/// The lab host's network namespace (`ip netns` name).
pub const NETNS: &str = "hostreach-lab";
/// Its bind mount: `nsenter --net=NETNS_PATH` runs a command "on the lab host".
pub const NETNS_PATH: &str = "/run/netns/hostreach-lab";
/// The "LAN neighbour" namespace, which runs the lab's DNS server.
pub const REMOTE_NETNS_PATH: &str = "/run/netns/hostreach-remote";
/// The lab's dockerd.
pub const DOCKER_HOST: &str = "unix:///run/hostreach-lab/docker.sock";
pub const DOCKER_SOCK: &str = "/run/hostreach-lab/docker.sock";
/// Runtime files of the lab (pidfiles, logs, the root namespace's firewall before the lab).
pub const RUN_DIR: &str = "/run/hostreach-lab";
/// The only image in the lab: static busybox FROM scratch (sh, nc, wget, ping, ip, nslookup).
pub const IMAGE: &str = "hostreach-lab/busybox:latest";
/// The lab host's "LAN address" (hrlan0), other than docker0's.
pub const LAN_IP: &str = "198.18.0.1";
/// The remote namespace's address (hrlan1); also the DNS server every lab container uses.
pub const REMOTE_IP: &str = "198.18.0.2";
pub const DNS_IP: &str = "198.18.0.2";
/// docker0's address in the lab (the default bridge gateway).
pub const BRIDGE_GW: &str = "172.17.0.1";
/// Names the lab DNS answers (everything else is NXDOMAIN).
pub const DNS_DB_NAME: &str = "db.lab.test"; // -> LAN_IP
pub const DNS_HOST_NAME: &str = "host.lab.test"; // -> BRIDGE_GW

const NOT_RUNNING: &str = "the hostreach lab is not running: run scripts/test (or lab/up.sh first)";
const TEST_PID_LABEL: &str = "hostreach-lab.test-pid";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The lab

/// The running lab. Get it with [`Lab::get`].
pub struct Lab {
    /// Server version of the lab's dockerd (e.g. "20.10.24+dfsg1").
    pub docker_version: String,
    /// A process living in the lab namespace (dockerd), for reading its /proc/PID/net tables.
    ns_pid: u32,
}

static LAB: OnceLock<Lab> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(0);
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

impl Lab {
    /// The lab, checked once per test process: its namespace exists, its dockerd answers,
    /// the image is there. Panics with how to start it otherwise. Also removes containers and
    /// networks that earlier test processes (killed before their guards ran) left behind.
    pub fn get() -> &'static Lab {
        LAB.get_or_init(|| {
            let fail = |why: String| -> ! { panic!("{NOT_RUNNING} ({why})") };
            if !Path::new(NETNS_PATH).exists() {
                fail(format!("{NETNS_PATH} does not exist"));
            }
            if let Err(e) = docker_ping() {
                fail(format!("no answer on {DOCKER_HOST}: {e}"));
            }
            let ns_pid = fs::read_to_string(format!("{RUN_DIR}/dockerd.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|p| Path::new(&format!("/proc/{p}")).exists())
                .unwrap_or_else(|| fail(format!("no live dockerd pid in {RUN_DIR}/dockerd.pid")));
            let v = docker_cmd(&["version", "--format", "{{.Server.Version}}"]);
            if !v.status.success() {
                fail(format!("docker version: {}", String::from_utf8_lossy(&v.stderr).trim()));
            }
            let img = docker_cmd(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
            if !img.status.success() {
                fail(format!("image {IMAGE} is missing"));
            }
            let lab = Lab { docker_version: String::from_utf8_lossy(&v.stdout).trim().to_string(), ns_pid };
            lab.remove_stale();
            lab
        })
    }

    /// Containers and networks labelled with the pid of a test process that is gone.
    fn remove_stale(&self) {
        let me = std::process::id().to_string();
        let stale = |line: &str| -> Option<String> {
            let (id, pid) = line.split_once(' ')?;
            let alive = !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists();
            (pid != me && !alive).then(|| id.to_string())
        };
        let filter = format!("label={TEST_PID_LABEL}");
        let fmt = format!("{{{{.ID}}}} {{{{.Label \"{TEST_PID_LABEL}\"}}}}");
        let out = docker_cmd(&["ps", "-a", "--filter", &filter, "--format", &fmt]);
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter_map(stale).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker_cmd(&args);
        }
        let out = docker_cmd(&["network", "ls", "--filter", &filter, "--format", &fmt]);
        for id in String::from_utf8_lossy(&out.stdout).lines().filter_map(stale) {
            docker_cmd(&["network", "rm", &id]);
        }
    }

    /// Runs the docker CLI against the lab's dockerd. Does not check the exit status.
    pub fn docker(&self, args: &[&str]) -> Output {
        docker_cmd(args)
    }

    /// Runs the docker CLI; panics (with its stderr) unless it succeeds. Returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = docker_cmd(args);
        if !out.status.success() {
            panic!("docker {} failed: {}", args.join(" "), show(&out));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker run -d --name <unique> <args> hostreach-lab/busybox sleep 3600`, removed on Drop.
    /// `args` are extra `docker run` options, e.g. `&["--add-host", "host.docker.internal:host-gateway"]`,
    /// `&["--network", net.name.as_str()]`, `&["--network", "none"]`.
    pub fn container(&self, name_prefix: &str, args: &[&str]) -> Container {
        self.container_cmd(name_prefix, args, &["sleep", "3600"])
    }

    /// Like [`Lab::container`], with another command than `sleep 3600` (the image is always
    /// hostreach-lab/busybox, the only one in the lab).
    pub fn container_cmd(&self, name_prefix: &str, args: &[&str], cmd: &[&str]) -> Container {
        let name = format!("hrt-{}-{}-{}", sanitize(name_prefix), std::process::id(), seq());
        let label = format!("{TEST_PID_LABEL}={}", std::process::id());
        let mut full: Vec<&str> = vec!["run", "-d", "--name", &name, "--label", &label];
        full.extend_from_slice(args);
        full.push(IMAGE);
        full.extend_from_slice(cmd);
        let out = docker_cmd(&full);
        if !out.status.success() {
            // a half-created container (e.g. network attach failed) must not linger
            docker_cmd(&["rm", "-f", &name]);
            panic!("docker {} failed: {}", full.join(" "), show(&out));
        }
        let mut c = Container {
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            name,
            pid: 0,
            ip: String::new(),
            gateway: String::new(),
            network_mode: String::new(),
            inspect: Value::Null,
        };
        c.refresh();
        c
    }

    /// `docker network create <args> <unique name>`, removed on Drop (after its containers:
    /// declare the network before the containers that use it).
    pub fn network(&self, name_prefix: &str, args: &[&str]) -> Network {
        let name = format!("hrt-{}-{}-{}", sanitize(name_prefix), std::process::id(), seq());
        let label = format!("{TEST_PID_LABEL}={}", std::process::id());
        let mut full: Vec<&str> = vec!["network", "create", "--label", &label];
        full.extend_from_slice(args);
        full.push(&name);
        let id = self.docker_ok(&full);
        let inspect = inspect_one(&["network", "inspect", &id]);
        let cfg = inspect.pointer("/IPAM/Config/0");
        let get = |k: &str| cfg.and_then(|c| c.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
        let bridge = match inspect.get("Driver").and_then(Value::as_str) {
            Some("bridge") => inspect
                .pointer("/Options/com.docker.network.bridge.name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("br-{}", &id[..12])),
            _ => String::new(),
        };
        Network { id, name, subnet: get("Subnet"), gateway: get("Gateway"), bridge, inspect }
    }

    /// A socat listener on the lab host (`addr` one of its addresses, `0.0.0.0`, `::`), which
    /// answers `hostreach-lab <proto> <port>\n` and closes. Returns once it is listening.
    pub fn listener(&self, proto: Proto, addr: &str, port: u16) -> Listener {
        self.listener_in(NETNS_PATH, proto, addr, port, Reply::Banner)
    }

    /// Like [`Lab::listener`], but echoes back whatever it receives.
    pub fn echo_listener(&self, proto: Proto, addr: &str, port: u16) -> Listener {
        self.listener_in(NETNS_PATH, proto, addr, port, Reply::Echo)
    }

    /// A listener inside a container's network namespace (nsenter into its pid's netns).
    pub fn listener_in_container(&self, c: &Container, proto: Proto, addr: &str, port: u16) -> Listener {
        self.listener_in(&c.netns_path(), proto, addr, port, Reply::Banner)
    }

    /// A listener in any network namespace (a path such as /proc/PID/ns/net or /run/netns/X).
    pub fn listener_in(&self, netns: &str, proto: Proto, addr: &str, port: u16, reply: Reply) -> Listener {
        let (fam, bind) = if addr.contains(':') { ("6", format!("[{addr}]")) } else { ("4", addr.to_string()) };
        let left = match proto {
            Proto::Tcp => format!("TCP{fam}-LISTEN:{port},bind={bind},reuseaddr,fork"),
            Proto::Udp => format!("UDP{fam}-RECVFROM:{port},bind={bind},reuseaddr,fork"),
        };
        let right = match (reply, proto) {
            (Reply::Banner, Proto::Tcp) => format!("SYSTEM:echo hostreach-lab {proto} {port}"),
            // UDP: read the datagram first, or socat's socketpair to the child resets and the
            // reply is lost (a race seen for real).
            (Reply::Banner, Proto::Udp) => format!("SYSTEM:cat >/dev/null; echo hostreach-lab {proto} {port}"),
            (Reply::Echo, _) => "PIPE".to_string(),
        };
        let p = spawn_in(netns, &["socat", &left, &right]);
        p.wait_listening(proto, port, Duration::from_secs(5));
        Listener { proto, addr: addr.to_string(), port, process: p }
    }

    /// Starts any command in the background on the lab host (killed with its process group on
    /// Drop). Its output goes to a log file shown when something goes wrong ([`Process::log`]).
    pub fn spawn(&self, cmd: &[&str]) -> Process {
        spawn_in(NETNS_PATH, cmd)
    }

    /// [`Lab::spawn`], then waits until something in the lab namespace listens on `port`, e.g.
    /// `lab.spawn_listening(Proto::Tcp, port, &["redis-server", "--bind", "127.0.0.1", "--port",
    /// &port.to_string(), "--save", "", "--daemonize", "no"])`.
    pub fn spawn_listening(&self, proto: Proto, port: u16, cmd: &[&str]) -> Process {
        let p = self.spawn(cmd);
        p.wait_listening(proto, port, Duration::from_secs(10));
        p
    }

    /// A port no other test of any running test process uses, and on which nothing listens in
    /// the lab namespace (TCP or UDP, v4 or v6). Range 20000-29999, below the ephemeral ports.
    pub fn free_port(&self) -> u16 {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // spread concurrent test processes apart: 200 blocks of 50 ports
        let base = (std::process::id() % 200) * 50;
        for _ in 0..10_000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = 20_000 + ((base + n) % 10_000) as u16;
            if !self.port_in_use(port) {
                return port;
            }
        }
        panic!("no free port in 20000-29999 in the lab namespace");
    }

    /// Whether a socket in the lab namespace is bound to this port (any protocol and state).
    pub fn port_in_use(&self, port: u16) -> bool {
        ["tcp", "tcp6", "udp", "udp6"]
            .iter()
            .any(|t| proc_net_has_port(self.ns_pid, t, port, None))
    }

    /// Runs `iptables -w <args>` on the lab host and returns a guard that deletes the same rule
    /// on Drop. The rule must name a port (`--dport`, `--sport`, `--dports`, `--sports`) so that
    /// parallel tests do not see it; for anything else use [`Lab::iptables_unscoped`].
    /// Example: `lab.iptables(&["-I","INPUT","-i","docker0","-p","tcp","--dport",&p,"-j","DROP"])`.
    pub fn iptables(&self, args: &[&str]) -> Rule {
        assert_port_scoped(args);
        self.iptables_unscoped(args)
    }

    /// [`Lab::iptables`] without the port check. Hold [`Lab::exclusive`] while it exists.
    pub fn iptables_unscoped(&self, args: &[&str]) -> Rule {
        Rule::add("iptables", args)
    }

    /// The ip6tables twin of [`Lab::iptables`].
    pub fn ip6tables(&self, args: &[&str]) -> Rule {
        assert_port_scoped(args);
        Rule::add("ip6tables", args)
    }

    /// Creates `table <family> <unique name> { <body> }` with `nft -f -` on the lab host and
    /// deletes the table on Drop. Keep its rules port-scoped, as for iptables.
    /// Example: `lab.nft("inet", "ufwlike", "chain input { type filter hook input priority 0; \
    ///   iifname \"docker0\" tcp dport 20001 drop; }")`.
    pub fn nft(&self, family: &str, name_prefix: &str, body: &str) -> NftTable {
        let name = format!("hrt_{}_{}_{}", sanitize(name_prefix).replace('-', "_"), std::process::id(), seq());
        let text = format!("table {family} {name} {{\n{body}\n}}\n");
        let out = run_with_stdin(nsenter_cmd(NETNS_PATH, &["nft", "-f", "-"]), text.as_bytes());
        if !out.status.success() {
            panic!("nft -f - failed for:\n{text}\n{}", show(&out));
        }
        NftTable { family: family.to_string(), name }
    }

    /// Runs `sh -c CMD` on the lab host (DOCKER_HOST set). Does not check the exit status.
    pub fn sh(&self, cmd: &str) -> Output {
        nsenter_cmd(NETNS_PATH, &["sh", "-c", cmd]).output().expect("spawn nsenter")
    }

    /// [`Lab::sh`] that panics unless the command succeeds; returns trimmed stdout.
    pub fn sh_ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        if !out.status.success() {
            panic!("on the lab host, `{cmd}` failed: {}", show(&out));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Serialises tests that change something global on the lab host (a chain policy, a
    /// sysctl, docker0 itself). Only helps among tests that all take it: put them in a test
    /// binary of their own (tests/tests/<name>.rs), where every test holds it.
    pub fn exclusive(&self) -> MutexGuard<'static, ()> {
        EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The machine's own (root namespace) `iptables-save`, as up.sh recorded it before the lab
    /// started, and as it is now; both without comments and with counters zeroed.
    pub fn root_iptables_before_and_now(&self) -> (String, String) {
        let before = fs::read_to_string(format!("{RUN_DIR}/root-iptables.before"))
            .unwrap_or_else(|e| panic!("{RUN_DIR}/root-iptables.before: {e} (written by lab/up.sh)"));
        let now = Command::new("iptables-save").output().expect("run iptables-save");
        (before, normalize_iptables_save(&String::from_utf8_lossy(&now.stdout)))
    }
}

/// What a lab listener answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `hostreach-lab <proto> <port>\n`, then close.
    Banner,
    /// Echo back everything received.
    Echo,
}

// ---------------------------------------------------------------------------------------------
// Guards

/// A running lab container; `docker rm -f` on Drop.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// Its init process, as the lab host sees it (0 if not running).
    pub pid: u32,
    /// Its address on its first network ("" for --network none/host).
    pub ip: String,
    /// Its gateway on that network (172.17.0.1 on the default bridge).
    pub gateway: String,
    /// HostConfig.NetworkMode: "default", "bridge", "none", "host", a network name, "container:ID".
    pub network_mode: String,
    /// `docker inspect` of the container, as of creation or the last [`Container::refresh`].
    pub inspect: Value,
}

impl Container {
    /// Re-reads `docker inspect` (after connecting a network, restarting...).
    pub fn refresh(&mut self) {
        let v = inspect_one(&["container", "inspect", &self.id]);
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        self.pid = v.pointer("/State/Pid").and_then(Value::as_u64).unwrap_or(0) as u32;
        self.network_mode = s("/HostConfig/NetworkMode");
        self.ip = s("/NetworkSettings/IPAddress");
        self.gateway = s("/NetworkSettings/Gateway");
        let first_net = v
            .pointer("/NetworkSettings/Networks")
            .and_then(Value::as_object)
            .and_then(|nets| nets.values().find(|n| n["IPAddress"].as_str().is_some_and(|a| !a.is_empty())));
        match first_net {
            Some(n) if self.ip.is_empty() => {
                self.ip = n["IPAddress"].as_str().unwrap_or("").to_string();
                self.gateway = n["Gateway"].as_str().unwrap_or("").to_string();
            }
            _ => {}
        }
        self.inspect = v;
    }

    /// Its address and gateway on one named network.
    pub fn ip_on(&self, network: &str) -> Option<(String, String)> {
        let n = self.inspect.pointer("/NetworkSettings/Networks")?.get(network)?;
        Some((n["IPAddress"].as_str()?.to_string(), n["Gateway"].as_str()?.to_string()))
    }

    /// `/proc/<pid>/ns/net`: its network namespace, for nsenter.
    pub fn netns_path(&self) -> String {
        assert!(self.pid != 0, "container {} is not running", self.name);
        format!("/proc/{}/ns/net", self.pid)
    }

    /// `docker exec <id> <cmd...>`. Does not check the exit status.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(cmd);
        docker_cmd(&args)
    }

    /// `docker exec <id> sh -c CMD` (busybox sh). Does not check the exit status.
    /// Note: Debian's busybox nc has no -z; `nc -w 2 IP PORT </dev/null` connects, prints what
    /// a banner listener says, and fails with "Connection refused" / a timeout otherwise.
    pub fn sh(&self, cmd: &str) -> Output {
        self.exec(&["sh", "-c", cmd])
    }

    /// Connects from the container's network namespace (socat run there from the lab host:
    /// same interfaces, routes and firewall as the container, none of its /etc/hosts).
    pub fn probe(&self, proto: Proto, addr: &str, port: u16, timeout: Duration) -> Probe {
        probe_from(&self.netns_path(), proto, addr, port, timeout)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = docker_cmd(&["rm", "-f", "-v", &self.id]);
        if !out.status.success() && !thread::panicking() {
            eprintln!("warning: could not remove container {}: {}", self.name, show(&out));
        }
    }
}

/// A user-defined docker network; `docker network rm` on Drop.
#[derive(Debug)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub subnet: String,
    pub gateway: String,
    /// The host-side bridge interface (br-<id12>) for bridge networks, "" otherwise.
    pub bridge: String,
    pub inspect: Value,
}

impl Drop for Network {
    fn drop(&mut self) {
        // containers declared after the network are gone by now; retry briefly anyway
        for i in 0..10 {
            if docker_cmd(&["network", "rm", &self.id]).status.success() {
                return;
            }
            thread::sleep(Duration::from_millis(100 * (i + 1)));
        }
        eprintln!("warning: could not remove network {}", self.name);
    }
}

/// A background process in some namespace, in a process group of its own; the whole group is
/// killed on Drop.
pub struct Process {
    child: Child,
    cmd: String,
    log: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a socket of the process's network namespace listens on `port` (TCP LISTEN,
    /// or a bound UDP socket). Panics with its log if it exits or the time runs out.
    pub fn wait_listening(&self, proto: Proto, port: u16, timeout: Duration) {
        let pid = self.child.id();
        let (tables, state) = match proto {
            Proto::Tcp => (["tcp", "tcp6"], Some("0A")),
            Proto::Udp => (["udp", "udp6"], Some("07")),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if tables.iter().any(|t| proc_net_has_port(pid, t, port, state)) {
                return;
            }
            if !is_alive(pid) {
                panic!("`{}` exited before listening on {proto} port {port}; its output:\n{}", self.cmd, self.log());
            }
            if Instant::now() > deadline {
                panic!("`{}` does not listen on {proto} port {port} after {timeout:?}; its output:\n{}", self.cmd, self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it now (what Drop does).
    pub fn kill(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.log);
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Process {{ pid: {}, cmd: {:?} }}", self.child.id(), self.cmd)
    }
}

/// A socat listener; killed on Drop.
#[derive(Debug)]
pub struct Listener {
    pub proto: Proto,
    pub addr: String,
    pub port: u16,
    pub process: Process,
}

impl Listener {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    /// What a banner listener answers.
    pub fn banner(&self) -> String {
        format!("hostreach-lab {} {}", self.proto, self.port)
    }
}

/// An iptables/ip6tables rule on the lab host; deleted (`-D`, same spec) on Drop.
#[derive(Debug)]
pub struct Rule {
    tool: &'static str,
    delete: Vec<String>,
    pub spec: Vec<String>,
}

impl Rule {
    fn add(tool: &'static str, args: &[&str]) -> Rule {
        let delete = delete_args(args)
            .unwrap_or_else(|| panic!("{tool} {}: expected -I/--insert or -A/--append", args.join(" ")));
        let mut full = vec![tool, "-w", "10"];
        full.extend_from_slice(args);
        let out = nsenter_cmd(NETNS_PATH, &full).output().expect("spawn nsenter");
        if !out.status.success() {
            panic!("on the lab host, `{}` failed: {}", full.join(" "), show(&out));
        }
        Rule { tool, delete, spec: args.iter().map(|s| s.to_string()).collect() }
    }
}

impl Drop for Rule {
    fn drop(&mut self) {
        let mut full = vec![self.tool, "-w", "10"];
        full.extend(self.delete.iter().map(String::as_str));
        match nsenter_cmd(NETNS_PATH, &full).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("warning: could not delete lab rule `{}`: {}", full.join(" "), show(&o)),
            Err(e) => eprintln!("warning: could not run {}: {e}", self.tool),
        }
    }
}

/// An nftables table on the lab host; deleted on Drop.
#[derive(Debug)]
pub struct NftTable {
    pub family: String,
    pub name: String,
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let out = nsenter_cmd(NETNS_PATH, &["nft", "delete", "table", &self.family, &self.name]).output();
        if !matches!(out, Ok(ref o) if o.status.success()) {
            eprintln!("warning: could not delete nft table {} {}", self.family, self.name);
        }
    }
}

/// The outcome of a connection attempt made by [`Container::probe`] / [`probe_from`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Connected (TCP), or (UDP) a reply came back.
    Connected(String),
    Refused,
    TimedOut,
    /// Anything else: no route, host unreachable, ... with socat's message.
    Failed(String),
}

/// Connects from the given network namespace with socat (TCP: connect, send nothing, read
/// for up to 0.5 s; UDP: send "probe\n" and wait for a reply). `Connected` carries what the
/// listener answered (a lab listener's banner, or "" for a silent server).
pub fn probe_from(netns: &str, proto: Proto, addr: &str, port: u16, timeout: Duration) -> Probe {
    let secs = format!("{:.3}", timeout.as_secs_f64());
    let host = if addr.contains(':') { format!("[{addr}]") } else { addr.to_string() };
    let right = match proto {
        Proto::Tcp => format!("TCP:{host}:{port},connect-timeout={secs}"),
        Proto::Udp => format!("UDP:{host}:{port}"),
    };
    // TCP sends nothing (a server closing with unread data would RST away its own reply);
    // UDP needs a datagram to get an answer.
    let input: &[u8] = if proto == Proto::Udp { b"probe\n" } else { b"" };
    let out = run_with_stdin(nsenter_cmd(netns, &["socat", "-T", &secs, "-", &right]), input);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() && (proto == Proto::Tcp || !stdout.is_empty()) {
        return Probe::Connected(stdout);
    }
    if stderr.contains("Connection refused") {
        Probe::Refused
    } else if stderr.contains("timed out") || (proto == Proto::Udp && stdout.is_empty() && stderr.trim().is_empty()) {
        Probe::TimedOut
    } else {
        Probe::Failed(stderr.trim().to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Running hostreach on the lab host

/// One run of the hostreach binary.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as JSON, if it is JSON.
    pub json: Option<Value>,
    pub elapsed: Duration,
}

impl Run {
    /// The parsed JSON; panics (showing the run) if stdout was not JSON.
    pub fn json(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| panic!("hostreach's stdout is not JSON:\n{self}"))
    }
    /// `verdict.code` of a doctor JSON result.
    pub fn verdict(&self) -> Option<&str> {
        self.json.as_ref()?.pointer("/verdict/code")?.as_str()
    }
    /// Panics (showing the run) unless it exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ hostreach {}   # exit {} in {:?}", self.args.join(" "), self.code, self.elapsed)?;
        writeln!(f, "--- stdout\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr\n{}", self.stderr.trim_end())
    }
}

/// The hostreach binary: `$HOSTREACH_BIN`, else `hostreach` next to this test's target profile
/// directory (the test binary is target/<profile>/deps/<name>-<hash>).
pub fn hostreach_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOSTREACH_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "HOSTREACH_BIN={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe.parent().and_then(Path::parent).expect("test binary in target/<profile>/deps");
    let bin = profile.join("hostreach");
    assert!(
        bin.is_file(),
        "hostreach binary not found at {}: build it first (`cargo build --release` at the repository \
         root; scripts/test does) or set HOSTREACH_BIN",
        bin.display()
    );
    bin
}

/// Runs `hostreach ARGS` on the lab host (inside hostreach-lab, DOCKER_HOST set), like a user
/// on a real host. Killed after `$HOSTREACH_TEST_TIMEOUT` seconds (default 120), with a panic.
pub fn hostreach(args: &[&str]) -> Run {
    hostreach_env(args, &[])
}

/// [`hostreach`] with extra environment variables.
pub fn hostreach_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    Lab::get();
    let bin = hostreach_bin();
    let bin = bin.to_str().expect("utf-8 path");
    let mut full = vec![bin];
    full.extend_from_slice(args);
    let mut cmd = nsenter_cmd(NETNS_PATH, &full);
    cmd.envs(env.iter().copied());
    run_hostreach(cmd, args)
}

/// Runs `hostreach ARGS` in other namespaces: `nsenter NS_ARGS -- hostreach ARGS` (DOCKER_HOST
/// set to the lab's daemon), e.g. `&["--net=/run/netns/x"]` for a throwaway network namespace, or
/// `&["-t", PID, "-m", "-n"]` for a process's mount and network namespaces.
pub fn hostreach_in(ns_args: &[&str], args: &[&str]) -> Run {
    Lab::get();
    let bin = hostreach_bin();
    let mut cmd = Command::new("nsenter");
    cmd.args(ns_args).arg("--").arg(&bin).args(args);
    cmd.env("DOCKER_HOST", DOCKER_HOST).stdin(Stdio::null());
    run_hostreach(cmd, args)
}

fn run_hostreach(cmd: Command, args: &[&str]) -> Run {
    let timeout = std::env::var("HOSTREACH_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120));
    let start = Instant::now();
    let (code, stdout, stderr) = run_with_timeout(cmd, timeout)
        .unwrap_or_else(|(o, e)| panic!("hostreach {} did not finish within {timeout:?}\n--- stdout\n{o}\n--- stderr\n{e}", args.join(" ")));
    let elapsed = start.elapsed();
    let json = serde_json::from_str(stdout.trim()).ok();
    Run { args: args.iter().map(|s| s.to_string()).collect(), code, stdout, stderr, json, elapsed }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Panics unless every key/value of `expected` is in `actual`: objects recursively; each
/// element of an array in `expected` must match (as a subset) some element of the array in
/// `actual`; other values must be equal.
#[track_caller]
pub fn assert_json_subset(actual: &Value, expected: &Value) {
    if let Some(why) = json_subset_mismatch(actual, expected) {
        panic!(
            "JSON subset mismatch: {why}\n--- expected (subset)\n{}\n--- actual\n{}",
            serde_json::to_string_pretty(expected).unwrap(),
            serde_json::to_string_pretty(actual).unwrap()
        );
    }
}

/// `None` if `expected` is a subset of `actual` (see [`assert_json_subset`]), else where not.
pub fn json_subset_mismatch(actual: &Value, expected: &Value) -> Option<String> {
    subset_at("$", actual, expected)
}

fn subset_at(path: &str, actual: &Value, expected: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| match a.get(k) {
            None => Some(format!("{path}.{k} is missing")),
            Some(av) => subset_at(&format!("{path}.{k}"), av, ev),
        }),
        (Value::Array(e), Value::Array(a)) => e.iter().enumerate().find_map(|(i, ev)| {
            if a.iter().any(|av| subset_at("", av, ev).is_none()) {
                None
            } else {
                Some(format!("{path}: no element matches expected[{i}] = {ev}"))
            }
        }),
        (e, a) if e == a => None,
        (e, a) => Some(format!("{path} is {a}, expected {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Plumbing

fn docker_cmd(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", DOCKER_HOST)
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI: {e}"))
}

fn inspect_one(args: &[&str]) -> Value {
    let out = docker_cmd(args);
    if !out.status.success() {
        panic!("docker {} failed: {}", args.join(" "), show(&out));
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("docker inspect JSON");
    v.get(0).cloned().unwrap_or(Value::Null)
}

/// GET /_ping on the lab's docker socket.
fn docker_ping() -> std::io::Result<()> {
    let mut s = UnixStream::connect(DOCKER_SOCK)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    if buf.starts_with("HTTP/1.") && buf.contains(" 200 ") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("unexpected answer: {}", buf.lines().next().unwrap_or(""))))
    }
}

/// `nsenter --net=<netns> -- <cmd...>` with DOCKER_HOST set.
fn nsenter_cmd(netns: &str, cmd: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={netns}")).arg("--").args(cmd);
    c.env("DOCKER_HOST", DOCKER_HOST).stdin(Stdio::null());
    c
}

fn spawn_in(netns: &str, cmd: &[&str]) -> Process {
    let log = std::env::temp_dir().join(format!("hostreach-lab-{}-{}.log", std::process::id(), seq()));
    let f = fs::File::create(&log).expect("create log file");
    let mut c = nsenter_cmd(netns, cmd);
    c.stdout(f.try_clone().expect("dup")).stderr(f).process_group(0);
    let child = c.spawn().unwrap_or_else(|e| panic!("cannot start `{}`: {e}", cmd.join(" ")));
    Process { child, cmd: cmd.join(" "), log }
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().expect("wait")
}

/// Runs to completion or kills after `timeout`: Ok((code, stdout, stderr)) or Err((stdout, stderr)).
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<(i32, String, String), (String, String)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn nsenter");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        String::from_utf8_lossy(&b).to_string()
    });
    let te = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        String::from_utf8_lossy(&b).to_string()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (o, e) = (to.join().unwrap_or_default(), te.join().unwrap_or_default());
    match status {
        Some(st) => Ok((st.code().unwrap_or(-1), o, e)),
        None => Err((o, e)),
    }
}

/// Whether /proc/<pid>/net/<table> (the sockets of pid's network namespace) has a socket on
/// local `port`, optionally in a given state (hex, e.g. "0A" = TCP LISTEN, "07" = UDP bound).
fn proc_net_has_port(pid: u32, table: &str, port: u16, state: Option<&str>) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
        return false;
    };
    let want = format!(":{port:04X}");
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && state.is_none_or(|s| f[3] == s)
    })
}

fn is_alive(pid: u32) -> bool {
    // a zombie counts as dead
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn assert_port_scoped(args: &[&str]) {
    let scoped = args.iter().any(|a| matches!(*a, "--dport" | "--sport" | "--dports" | "--sports" | "--destination-port" | "--source-port"));
    assert!(
        scoped,
        "lab.iptables({args:?}): rules must name a port so parallel tests do not see them; \
         use lab.iptables_unscoped() while holding lab.exclusive() for anything else"
    );
}

/// The `-D` form of an `-I`/`-A` rule (table kept, `-I CHAIN N` position dropped).
fn delete_args(args: &[&str]) -> Option<Vec<String>> {
    let i = args.iter().position(|a| matches!(*a, "-I" | "--insert" | "-A" | "--append"))?;
    let chain = args.get(i + 1)?;
    let mut out: Vec<String> = args[..i].iter().map(|s| s.to_string()).collect();
    out.push("-D".into());
    out.push(chain.to_string());
    let mut rest = &args[i + 2..];
    if matches!(args[i], "-I" | "--insert") && rest.first().is_some_and(|s| s.parse::<u32>().is_ok()) {
        rest = &rest[1..];
    }
    out.extend(rest.iter().map(|s| s.to_string()));
    Some(out)
}

/// iptables-save output without comment lines and with counters zeroed.
pub fn normalize_iptables_save(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let counters = if l.starts_with(':') { l.rfind('[').zip(l.rfind(']')) } else { None };
        let line = match counters {
            Some((a, b)) if a < b => format!("{}[0:0]{}", &l[..a], &l[b + 1..]),
            _ => l.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(24)
        .collect();
    if t.is_empty() { "t".into() } else { t }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

// ---------------------------------------------------------------------------------------------
// Compose projects

/// A compose project (Debian's docker-compose against the lab's dockerd) in a temporary folder, brought down (and the folder removed) on Drop.
pub struct ComposeProject {
    pub dir: PathBuf,
    /// The compose project name (`-p`); containers are `<name>_<service>_1`.
    pub name: String,
    up: bool,
}

impl ComposeProject {
    pub fn new(tag: &str, files: &[(&str, String)]) -> ComposeProject {
        let name = format!("hrt{tag}{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, text) in files {
            std::fs::write(dir.join(f), text).unwrap();
        }
        ComposeProject { dir, name, up: false }
    }

    pub fn compose(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .args(args)
            .current_dir(&self.dir)
            .env("DOCKER_HOST", DOCKER_HOST)
            .output()
            .unwrap_or_else(|e| panic!("docker-compose is needed (lab/install.sh installs it): {e}"))
    }

    pub fn up(&mut self) {
        self.up = true;
        let out = self.compose(&["up", "-d"]);
        assert!(out.status.success(), "docker-compose up: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The network namespace of a service's container.
    pub fn netns(&self, lab: &Lab, service: &str) -> String {
        let pid = lab.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &format!("{}_{service}_1", self.name)]);
        format!("/proc/{pid}/ns/net")
    }

    pub fn exec(&self, lab: &Lab, service: &str, cmd: &[&str]) -> String {
        let c = format!("{}_{service}_1", self.name);
        let mut args = vec!["exec", c.as_str()];
        args.extend_from_slice(cmd);
        let out = lab.docker(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if self.up {
            let out = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
            if !out.status.success() {
                eprintln!("warning: docker-compose down: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The lab's compose project: two networks (front, back); `alias` uses host.docker.internal without
/// extra_hosts, `gateway` a hardcoded 172.17.0.1 (`DB_HOST`/`DB_PORT`), `fine` maps the alias. Every
/// object carries the test-pid label, so a dead test's leftovers are found and removed.
pub fn three_service_project(api_port: u16, db_port: u16) -> String {
    let pid = std::process::id();
    format!(
        r#"# hostreach lab: compose lint
services:
  alias:
    image: {IMAGE}
    command: ["sleep", "3600"]
    dns: ["{DNS_IP}"]
    networks: [front]
    labels:
      {TEST_PID_LABEL}: "{pid}"
    environment:
      API_URL: http://host.docker.internal:{api_port}/
  gateway:
    image: {IMAGE}
    command: ["sleep", "3600"]
    dns: ["{DNS_IP}"]
    networks: [back]
    labels:
      {TEST_PID_LABEL}: "{pid}"
    environment:
      DB_HOST: 172.17.0.1
      DB_PORT: "{db_port}"
  fine:
    image: {IMAGE}
    command: ["sleep", "3600"]
    dns: ["{DNS_IP}"]
    networks: [front, back]
    labels:
      {TEST_PID_LABEL}: "{pid}"
    extra_hosts:
      - "host.docker.internal:host-gateway"
    environment:
      API_URL: http://host.docker.internal:{api_port}/
networks:
  front:
    labels:
      {TEST_PID_LABEL}: "{pid}"
  back:
    labels:
      {TEST_PID_LABEL}: "{pid}"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_objects_and_arrays() {
        let a = json!({"schema": "hostreach/v1", "verdict": {"code": "OK", "hop": "x"},
                       "findings": [{"code": "A", "severity": "info"}, {"code": "B", "n": 1}]});
        assert!(json_subset_mismatch(&a, &json!({"verdict": {"code": "OK"}})).is_none());
        assert!(json_subset_mismatch(&a, &json!({"findings": [{"code": "B"}, {"code": "A"}]})).is_none());
        assert!(json_subset_mismatch(&a, &json!({"findings": [{"code": "C"}]})).unwrap().contains("$.findings"));
        assert!(json_subset_mismatch(&a, &json!({"verdict": {"code": "NO"}})).unwrap().contains("$.verdict.code"));
        assert!(json_subset_mismatch(&a, &json!({"nope": 1})).unwrap().contains("missing"));
    }

    #[test]
    fn delete_form_of_rules() {
        let d = delete_args(&["-I", "INPUT", "1", "-p", "tcp", "--dport", "5", "-j", "DROP"]).unwrap();
        assert_eq!(d, ["-D", "INPUT", "-p", "tcp", "--dport", "5", "-j", "DROP"]);
        let d = delete_args(&["-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "5", "-j", "ACCEPT"]).unwrap();
        assert_eq!(d, ["-t", "nat", "-D", "PREROUTING", "-p", "udp", "--dport", "5", "-j", "ACCEPT"]);
        assert!(delete_args(&["-P", "INPUT", "DROP"]).is_none());
    }

    #[test]
    fn iptables_save_normalized() {
        let t = "# Generated by x\n*filter\n:INPUT ACCEPT [12:345]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert_eq!(normalize_iptables_save(t), "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n");
    }
}
