//! `hostreach`: why can't my container reach its host?

mod cli;
mod compose_cmd;
mod doctor;
mod doctor_all;
mod doctor_fw;
mod exit;
mod firewall_cmd;
mod path_cmd;
mod relay_cmd;
mod render;
mod trace_cmd;
mod sockets_cmd;
mod subject;

use clap::Parser;
use cli::{Cli, Command, Format};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // A panic is a bug: one line, no backtrace, cleanup done, exit 3.
    std::panic::set_hook(Box::new(|info| {
        hostreach_collect::cleanup::run_all();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        exit::print_line(&format!("internal error: {msg}{at} (please report it)"));
        std::process::exit(exit::CANNOT);
    }));

    let cli = match Cli::try_parse_from(plugin_args(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    std::process::exit(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { exit::USAGE } else { exit::OK });
                }
                _ => {
                    exit::print_line(&clap_one_line(&e));
                    std::process::exit(exit::USAGE);
                }
            }
        }
    };
    init_logging(cli.verbose);
    if let Err(e) = hostreach_collect::cleanup::install_signal_handlers() {
        tracing::warn!("could not install signal handlers: {e}");
    }
    let code = run(cli);
    hostreach_collect::cleanup::run_all();
    std::process::exit(code);
}

fn run(cli: Cli) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            exit::print_line(&format!("cannot start the async runtime: {e}"));
            return exit::CANNOT;
        }
    };
    match &cli.command {
        Command::Sockets(args) => sockets_cmd::run(&rt, args, cli.format, cli.docker_host.as_deref()),
        Command::Compose(args) => compose_cmd::run(args, cli.format),
        Command::Firewall(args) => firewall_cmd::run(&rt, args, cli.format, cli.docker_host.as_deref()),
        Command::Relay(args) => relay_cmd::run(&rt, args, cli.format, cli.docker_host.as_deref()),
        Command::Path(args) => path_cmd::run(&rt, args, cli.format, cli.docker_host.as_deref()),
        Command::Trace(args) => trace_cmd::run(&rt, args, cli.format, cli.docker_host.as_deref()),
        Command::Doctor(args) if args.all || (args.to.is_none() && args.facts.is_none() && !args.subject.any()) => {
            doctor_all::run(&rt, args, cli.format, cli.docker_host.as_deref())
        }
        Command::Doctor(args) if args.to.is_none() && args.facts.is_none() => {
            exit::print_line("doctor needs --to TARGET (host:PORT, IP:PORT, NAME:PORT or a URL), or --all to check every container");
            exit::USAGE
        }
        Command::Doctor(args) if args.to.is_some() && !args.subject.any() => {
            exit::print_line("doctor --to needs a subject: --container NAME|ID, --pid PID or --netns PATH");
            exit::USAGE
        }
        Command::Doctor(args) => match rt.block_on(doctor::run(args, cli.docker_host.as_deref())) {
            Ok(out) => {
                print_report(cli.format, &out.report);
                if let Some(note) = &out.note {
                    exit::print_line(note);
                }
                out.code
            }
            Err(f) => {
                exit::print_line(&f.message);
                f.code
            }
        },
    }
}

fn print_report(format: Format, report: &hostreach_model::Report) {
    render::print(format, report, render::text);
}

/// Called as `docker-hostreach` (a Docker CLI plugin): answer the plugin handshake, and drop the
/// `hostreach` word the docker CLI passes first, so `docker hostreach doctor ...` is `hostreach doctor ...`.
fn plugin_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let called_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if called_as != "docker-hostreach" {
        return args;
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("docker-cli-plugin-metadata") => {
            let meta = serde_json::json!({
                "SchemaVersion": "0.1.0",
                "Vendor": "hostreach",
                "Version": env!("CARGO_PKG_VERSION"),
                "ShortDescription": "Why can't a container reach its host: the failing hop, the kernel's evidence, the fix",
            });
            println!("{meta}");
            std::process::exit(exit::OK);
        }
        Some("hostreach") => {
            args.remove(1);
        }
        _ => {}
    }
    args[0] = "hostreach".into();
    args
}

/// clap's error without its usage block, on one line, with where to look.
fn clap_one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let l = line.trim();
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        if !l.is_empty() {
            parts.push(l.trim_start_matches("error: ").to_string());
        }
    }
    format!("{} (see `hostreach --help`)", parts.join(" "))
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOSTREACH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
