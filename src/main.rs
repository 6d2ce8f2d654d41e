//! The `rip-server` binary: a thin shell over the library.

use std::process::ExitCode;

use http::Method;
use rip_server::cli::{self, Command, ScaleChange, Target};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Hidden: the manager starts executable workers through this trampoline.
    if args.first().map(String::as_str) == Some("__exec") {
        let Some(program) = args.get(1) else {
            return ExitCode::from(2);
        };
        let error = rip_server::manager::exec_worker(std::path::Path::new(program));
        eprintln!("rip-server: {program}: cannot run worker program: {error}");
        return ExitCode::from(127);
    }
    let env = |name: &str| std::env::var(name).ok();
    let command = match cli::parse(&args, &env) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
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
            rip_server::manager::die_with_manager();
            rip_server::worker::builtin::main(worker.socket)
        }
        Command::Serve(config) => {
            init_tracing();
            let runtime = match front_door_runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("rip-server: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(rip_server::server::serve(*config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status(target) => admin(&target, Method::GET, "/status", None),
        Command::Restart(target) => admin(&target, Method::POST, "/restart", None),
        Command::Stop(target) => admin(&target, Method::POST, "/stop", None),
        Command::Scale { target, change } => {
            let body = match change {
                ScaleChange::By(n) => format!("{{\"by\":{n}}}"),
                ScaleChange::To(n) => format!("{{\"to\":{n}}}"),
            };
            admin(&target, Method::POST, "/scale", Some(body))
        }
    }
}

/// The front door's runtime: `RIP_THREADS` worker threads (default 1: one
/// event loop, like HAProxy's `nbthread 1` — on small machines cross-thread
/// wake-ups cost more than a second core gains; see docs/benchmarking.md).
fn front_door_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("RIP_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(1);
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn admin(target: &Target, method: Method, path: &str, body: Option<String>) -> ExitCode {
    let socket = target.control_socket();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rip-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rip_server::control::request(&socket, method, path, body)) {
        Ok((status, body)) if (200..300).contains(&status) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            // A refusal: one line on stderr naming why.
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| body.trim().to_owned());
            eprintln!("rip-server: {path}: refused ({status}): {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rip-server: {}: no server answers there: {e}", socket.display());
            ExitCode::FAILURE
        }
    }
}
