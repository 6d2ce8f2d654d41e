//! The `rip-server` binary: a thin shell over the library. Exit statuses are
//! the contract's: 0 success, 1 an operation failed or is not in this
//! version, 2 the command cannot be carried out as written.

use std::process::ExitCode;

use http::Method;
use rip_server::cli::{self, Command, EXIT_FAILED, EXIT_USAGE, ScaleChange, Target};
use rip_server::config::ServeConfig;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Hidden: the manager starts executable workers through this trampoline.
    if args.first().map(String::as_str) == Some("__exec") {
        rip_server::os::sys::close_inherited_descriptors();
        let Some(program) = args.get(1) else {
            return ExitCode::from(EXIT_USAGE);
        };
        let error = rip_server::manager::exec_worker(std::path::Path::new(program), &args[2..]);
        eprintln!("rip-server: {program}: cannot run worker program: {error}");
        return ExitCode::from(127);
    }
    let env = |name: &str| std::env::var(name).ok();
    let command = match cli::parse(&args, &env) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(error.exit_code());
        }
    };
    match command {
        Command::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Command::Version(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Command::Worker(worker) => {
            rip_server::os::sys::close_inherited_descriptors();
            rip_server::manager::die_with_manager();
            rip_server::worker::builtin::main(worker.socket)
        }
        Command::Serve(config) => serve(*config),
        Command::Platform(config) => platform(*config),
        Command::Status { target, json } => admin(&target, "status", Method::GET, "/status", None, !json),
        Command::Restart(target) => admin(&target, "restart", Method::POST, "/restart", None, false),
        Command::Stop(target) => admin(&target, "stop", Method::POST, "/stop", None, false),
        Command::Scale { target, change } => {
            let body = match change {
                ScaleChange::By(n) => format!("{{\"by\":{n}}}"),
                ScaleChange::To(n) => format!("{{\"to\":{n}}}"),
            };
            admin(&target, "scale", Method::POST, "/scale", Some(body), false)
        }
        Command::Ca(command) => {
            let outcome = cli::ca::run(&command, rip_server::tls::ca::validity::wall_clock_now());
            print!("{}", outcome.stdout);
            match outcome.error {
                None => ExitCode::SUCCESS,
                Some(line) => {
                    eprintln!("{line}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
        Command::Hosts(command) => match cli::hosts::run(&command) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(error.exit_code())
            }
        },
    }
}

fn serve(config: ServeConfig) -> ExitCode {
    let json = config.json_logging;
    init_tracing(&config.log_filter, json);
    let runtime = match front_door_runtime(config.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rip-server: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(rip_server::server::serve(config));
    if json && let Err(error) = &result {
        // Under --json-logging every line of stderr is one JSON object, the
        // reason the server did not run included.
        tracing::error!("{}", error.message());
        return ExitCode::from(match error {
            rip_server::server::ServeError::Usage(_) => EXIT_USAGE,
            rip_server::server::ServeError::Failed(_) => EXIT_FAILED,
        });
    }
    exit_code(result)
}

fn platform(config: rip_server::platform::command::PlatformConfig) -> ExitCode {
    init_tracing(&config.apps.log_filter, config.apps.json_logging);
    let runtime = match front_door_runtime(config.apps.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rip-server: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    exit_code(runtime.block_on(rip_server::platform::command::run(config)))
}

fn exit_code(result: Result<(), rip_server::server::ServeError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(rip_server::server::ServeError::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(rip_server::server::ServeError::Failed(message)) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The front door's runtime: `threads` worker threads; 1 is a current-thread
/// runtime (one event loop, like HAProxy's `nbthread 1`: on small machines
/// cross-thread wake-ups cost more than a second core gains; see
/// docs/benchmarking.md).
fn front_door_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// The server's own lines on stderr (see `os::log_style`). `filter` was
/// checked when the command line was parsed.
fn init_tracing(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(rip_server::config::defaults::DEFAULT_LOG_FILTER));
    rip_server::os::log_style::init(filter, json);
}

/// Sends one control request to the server `target` names; `table` renders
/// a JSON answer for people instead of printing it as it is.
fn admin(target: &Target, sub: &str, method: Method, path: &str, body: Option<String>, table: bool) -> ExitCode {
    let socket = match cli::running::locate(target, sub) {
        Ok(found) => {
            for line in &found.warnings {
                eprintln!("{line}");
            }
            found.control_socket
        }
        Err(not_found) => {
            for line in &not_found.lines {
                eprintln!("{line}");
            }
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rip-server: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(rip_server::control::request(&socket, method.clone(), path, body)) {
        Ok((status, body)) if (200..300).contains(&status) => {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(json) if table => print!("{}", cli::render_status(&json)),
                Ok(json) if method == Method::POST => println!("{}", cli::admin::accepted_line(sub, &json)),
                _ => println!("{}", body.trim_end()),
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            // A refusal: one line on stderr naming why.
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| body.trim().to_owned());
            eprintln!("rip-server: {path}: refused ({status}): {reason}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("rip-server: {}: no server answers there: {e}", socket.display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}
