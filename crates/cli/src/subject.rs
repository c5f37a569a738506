//! Who a command is about: a Docker container (Engine API), a process, or a namespace file; and the
//! network namespace to work in. Shared by the commands that take `--container/--pid/--netns`.

use crate::exit::Failure;
use hostreach_collect::docker::{self, DockerClient};
use hostreach_collect::netns::Netns;
use hostreach_model::{DaemonFacts, Skipped, Subject};
use std::path::{Path, PathBuf};

/// `--container`, `--pid`, `--netns`: who a command is about. Each command's own clap group says
/// whether one is required and what else excludes them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SubjectArgs {
    /// The container, by name or ID (Docker Engine API).
    #[arg(long, short = 'c', value_name = "NAME|ID")]
    pub container: Option<String>,
    /// A process whose network namespace to use (for namespaces Docker does not manage).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// A network namespace file (/run/netns/NAME, /proc/PID/ns/net).
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,
}

impl SubjectArgs {
    pub fn any(&self) -> bool {
        self.container.is_some() || self.pid.is_some() || self.netns.is_some()
    }
}

pub struct Resolved {
    pub subject: Subject,
    /// The subject's network namespace; None when it could not be opened (privileges, noted in `skipped`).
    pub netns: Option<Netns>,
    /// The PID whose root holds the subject's files.
    pub pid: Option<u32>,
    pub daemon: Option<DaemonFacts>,
    pub skipped: Vec<Skipped>,
}

/// Looks the subject up. Exactly one of `container`, `pid`, `netns` is given (clap enforces it).
pub async fn resolve(
    container: Option<&str>,
    pid: Option<u32>,
    netns: Option<&Path>,
    docker_host: Option<&str>,
) -> Result<Resolved, Failure> {
    let mut r = Resolved { subject: Subject::None, netns: None, pid: None, daemon: None, skipped: vec![] };
    if let Some(name) = container {
        let endpoint = docker::endpoint(docker_host);
        let client = DockerClient::connect(&endpoint).await.map_err(Failure::from_collect)?;
        let (daemon, c) = tokio::join!(client.daemon(), client.container(name));
        let c = c.map_err(Failure::from_collect)?;
        match daemon {
            Ok(d) => r.daemon = Some(d),
            Err(e) => r.skipped.push(Skipped { what: "daemon-version".into(), why: e.to_string() }),
        }
        if !c.running {
            return Err(Failure::cannot(format!(
                "container {} is not running (state: {}): start it with `docker start {}` and run hostreach again",
                c.name, c.status, c.name
            )));
        }
        let p = c
            .pid
            .ok_or_else(|| Failure::cannot(format!("the Docker daemon reports no PID for container {}", c.name)))?;
        r.pid = Some(p);
        r.subject = Subject::Container(Box::new(c));
    } else if let Some(p) = pid {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm"))
            .map_err(|_| Failure::cannot(format!("no process with PID {p}")))?;
        r.pid = Some(p);
        r.subject = Subject::Pid { pid: p, name: Some(comm.trim().to_string()) };
    } else if let Some(path) = netns {
        r.netns = Some(Netns::open(path).map_err(Failure::from_collect)?);
        r.subject = Subject::Netns { path: path.display().to_string() };
    }
    if let Some(p) = r.pid {
        match Netns::of_pid(p) {
            Ok(ns) => r.netns = Some(ns),
            Err(e) if e.is_permission() => r.skipped.push(Skipped { what: "subject-netns".into(), why: e.to_string() }),
            Err(_) => return Err(Failure::cannot(format!("{} is gone: it exited while hostreach looked it up", label(&r.subject)))),
        }
    }
    Ok(r)
}

/// `container web`, `process 1234`, `namespace /run/netns/x`.
pub fn label(subject: &Subject) -> String {
    match subject {
        Subject::Container(c) => format!("container {}", c.name),
        Subject::Pid { pid, .. } => format!("process {pid}"),
        Subject::Netns { path } => format!("namespace {path}"),
        Subject::None => "the host".into(),
    }
}
