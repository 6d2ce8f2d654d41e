//! `rip-server platform [http:<port>] [--api-port=N] [--admin-bind=ADDR]
//! [--bind=ADDR] [tokens] [flags]`: the platform controller's words.
//!
//! The platform's own flags are `--api-port` (default 3000) and
//! `--admin-bind` (default 127.0.0.1). Every other word is a serve token or
//! flag and sets what every app shares (`http:` and `--bind` the apps'
//! listener, `w:` the worker count of an app deployed without one, the
//! limits and timeouts...); the platform takes no app path (apps are
//! deployed through its API).

use super::env::{ENV_LB_REPLICAS, Env};
use super::flags::{self, Takes};
use super::serve::{self, SERVE_TOKENS};
use super::words::{Words, parse_bind, parse_port, split_flag};
use super::{CliError, Command};
use crate::platform::command::{DEFAULT_ADMIN_BIND, DEFAULT_API_PORT, PlatformConfig};

/// Parses the words after `platform`.
pub(super) fn parse(args: &[String], env: &Env<'_>) -> Result<Command, CliError> {
    let mut api_port = None;
    let mut admin_bind = None;
    // The words for the serve parser, which builds the apps' template.
    let mut forward: Vec<String> = vec!["builtin:hello".to_owned()];
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let (name, inline) = split_flag(word);
        match name {
            "--api-port" => {
                let (value, shown) = words.value(name, inline)?;
                api_port = Some(parse_port(value).map_err(|m| CliError::new(shown, m))?);
            }
            "--admin-bind" => {
                let (value, shown) = words.value(name, inline)?;
                admin_bind = Some(parse_bind(value).map_err(|m| CliError::new(shown, m))?);
            }
            _ if word.starts_with("--") => {
                forward.push(word.to_owned());
                let takes_next = flags::find(name).is_some_and(|f| matches!(f.takes, Takes::Value { .. }));
                if takes_next && inline.is_none() {
                    let (value, _) = words.value(name, None)?;
                    forward.push(value.to_owned());
                }
            }
            _ if word
                .split_once(':')
                .is_some_and(|(token, _)| SERVE_TOKENS.contains(&token)) =>
            {
                forward.push(word.to_owned());
            }
            // A bare port is the HTTPS port, as for a server.
            _ if word.parse::<u16>().is_ok() => forward.push(word.to_owned()),
            _ => {
                return Err(CliError::new(
                    word,
                    "not accepted by platform: it takes no app path (deploy apps through its API, POST /api/apps); expected http:<port>, --api-port=N, --admin-bind=ADDR, --bind=ADDR, or a serve token or flag",
                ));
            }
        }
    }
    let mut apps = serve::parse_config(&forward, env)?;
    if apps.lb_replicas > 1 {
        // The platform's listeners serve every app through one route table
        // on the runtime's own loop; replicas are a single server's.
        let word = match forward.iter().any(|w| split_flag(w).0 == "--lb-replicas") {
            true => format!("--lb-replicas={}", apps.lb_replicas),
            false => format!("{ENV_LB_REPLICAS}={}", apps.lb_replicas),
        };
        return Err(CliError::new(
            word,
            "not accepted by platform; expected 1 there: front-door replicas are for rip-server <app-path>, the platform's listeners run on one event loop (RIP_THREADS sets its threads)",
        ));
    }
    let admin_bind = admin_bind.unwrap_or(DEFAULT_ADMIN_BIND);
    // The metrics port listens where the API does.
    apps.admin_bind = admin_bind;
    let home = env.home()?.ok_or_else(|| {
        CliError::new(
            "platform",
            "expected RIP_HOME or HOME to be set: the platform keeps its token and apps in $RIP_HOME",
        )
    })?;
    Ok(Command::Platform(Box::new(PlatformConfig {
        home,
        api_port: api_port.unwrap_or(DEFAULT_API_PORT),
        admin_bind,
        apps,
    })))
}
