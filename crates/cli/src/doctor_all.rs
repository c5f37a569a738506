//! `hostreach doctor --all` (and `hostreach doctor` without a target): every running container against
//! the host targets found in its configuration, checked concurrently, as one table.

use crate::cli::{DoctorArgs, Format};
use crate::exit::{self, Failure};
use hostreach_collect::docker::{self, DockerClient};
use hostreach_model::{AllReport, Code, Report, SCHEMA};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One check: a container, a target found in its configuration, and where it was found.
#[derive(Debug, Clone)]
struct Job {
    container_id: String,
    container: String,
    target: String,
    source: String,
}

enum Done {
    Report(Box<Report>),
    Failed(String),
}

pub fn run(rt: &tokio::runtime::Runtime, args: &DoctorArgs, format: Format, docker_host: Option<&str>) -> i32 {
    let jobs = match rt.block_on(discover(docker_host)) {
        Ok(j) => j,
        Err(f) => {
            exit::print_line(&f.message);
            return f.code;
        }
    };
    let (n_containers, jobs) = jobs;
    let show_progress = format == Format::Text && std::io::stderr().is_terminal() && !jobs.is_empty();
    let results = check_all(&jobs, args, docker_host, args.concurrency.max(1), show_progress);

    let mut reports = Vec::new();
    let mut rows = Vec::new();
    let mut any_problem = false;
    let mut any_failed = false;
    for (job, done) in jobs.iter().zip(results) {
        match done {
            Done::Report(r) => {
                any_problem |= r.verdict.code != Code::Ok;
                rows.push((job.clone(), r.verdict.code.as_str().to_string(), r.verdict.summary.clone()));
                reports.push(*r);
            }
            Done::Failed(msg) => {
                any_failed = true;
                rows.push((job.clone(), "NOT CHECKED".into(), msg));
            }
        }
    }
    match format {
        Format::Json => {
            let all = AllReport { schema: SCHEMA.to_string(), results: reports };
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &all);
            let _ = writeln!(out);
        }
        Format::Text => print_table(n_containers, &rows),
    }
    if any_problem {
        exit::DIAGNOSED
    } else if any_failed {
        exit::CANNOT
    } else {
        exit::OK
    }
}

/// Lists running containers and the host targets each one names.
async fn discover(docker_host: Option<&str>) -> Result<(usize, Vec<Job>), Failure> {
    let endpoint = docker::endpoint(docker_host);
    let client = DockerClient::connect(&endpoint).await.map_err(Failure::from_collect)?;
    let running = client.running().await.map_err(Failure::from_collect)?;
    let host_net = hostreach_collect::netlink::read_current().ok();
    let inspected = futures_util::future::join_all(running.iter().map(|(id, _)| client.container_with_config(id))).await;
    let mut jobs = Vec::new();
    for ((id, name), r) in running.iter().zip(inspected) {
        // A container that stopped since the listing is simply not there any more.
        let Ok((facts, cfg)) = r else { continue };
        for d in hostreach_rules::discover::host_targets(&cfg, &facts, host_net.as_ref()) {
            jobs.push(Job { container_id: id.clone(), container: name.clone(), target: d.target, source: d.source });
        }
    }
    Ok((running.len(), jobs))
}

/// Runs the jobs on a few worker threads, each with its own small runtime; keeps the jobs' order.
fn check_all(jobs: &[Job], args: &DoctorArgs, docker_host: Option<&str>, workers: usize, progress: bool) -> Vec<Done> {
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Done>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(jobs.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} checking {pos}/{len} container targets {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs.len()) {
            s.spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let one = DoctorArgs {
                        subject: crate::subject::SubjectArgs { container: Some(job.container_id.clone()), pid: None, netns: None },
                        to: Some(job.target.clone()),
                        all: false,
                        ..args.clone()
                    };
                    let done = match rt.block_on(crate::doctor::run(&one, docker_host)) {
                        Ok(out) => {
                            let mut r = out.report;
                            r.discovered_from = Some(job.source.clone());
                            Done::Report(Box::new(r))
                        }
                        Err(f) => Done::Failed(f.message),
                    };
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
                    let n = finished.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(b) = &bar {
                        b.set_position(n as u64);
                        b.set_message(format!("{} → {}", job.container, job.target));
                    }
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or(Done::Failed("not run".into())))
        .collect()
}

fn print_table(n_containers: usize, rows: &[(Job, String, String)]) {
    let mut out = anstream::stdout();
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "no host targets found in the configuration of {n_containers} running container{}; check one with `hostreach doctor --container NAME --to TARGET`",
            if n_containers == 1 { "" } else { "s" }
        );
        return;
    }
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(vec!["CONTAINER", "TARGET", "FOUND IN", "VERDICT", "SUMMARY"]);
    for (job, code, summary) in rows {
        t.add_row(vec![job.container.clone(), job.target.clone(), job.source.clone(), code.clone(), summary.clone()]);
    }
    let _ = writeln!(out, "{t}");
    let bad = rows.iter().filter(|r| r.1 != "OK").count();
    let _ = writeln!(
        out,
        "\n{} target{} in {n_containers} running container{}: {} OK, {bad} with a problem. Details: hostreach doctor --container NAME --to TARGET",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if n_containers == 1 { "" } else { "s" },
        rows.len() - bad
    );
}
