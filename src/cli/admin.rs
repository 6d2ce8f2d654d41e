//! `status`, `restart`, `stop` and `scale`: which running server they talk
//! to ([`Target`]) and the `scale` argument; and the subcommands the
//! contract names that this version does not have yet (reserved: each is
//! refused with one line saying what it will be; none at present).

use std::path::PathBuf;

use super::env::{ENV_VARIANT, Env};
use super::serve::SERVE_TOKENS;
use super::words::{Words, check_prefix_len, parse_digits, parse_socket_prefix, parse_variant, split_flag};
use super::{CliError, Command, ScaleChange, Target};
use crate::config::defaults::{DEFAULT_VARIANT, MAX_WORKERS};
use crate::config::{default_socket_prefix, target_app_name};

/// Subcommands of later versions, and what each will do (none now: `ca`,
/// the last one, is real).
const RESERVED: &[(&str, &str)] = &[];

/// The refusal of a reserved subcommand, if `first` (the first word) is one.
/// `<word>:<sub>` counts as `<word>`.
pub(super) fn reserved(first: &str) -> Option<CliError> {
    let name = first.split_once(':').map_or(first, |(word, _)| word);
    let (_, future) = RESERVED.iter().find(|(word, _)| *word == name)?;
    Some(CliError::not_available(
        first,
        format!("not available in this version; {future}"),
    ))
}

/// The names of the reserved subcommands (for the help and the tests).
pub fn reserved_words() -> impl Iterator<Item = &'static str> {
    RESERVED.iter().map(|(word, _)| *word)
}

/// `status [--json] [app-path] [--socket-prefix=PATH] [--variant=NAME]`.
pub(super) fn parse_status(args: &[String], env: &Env<'_>) -> Result<Command, CliError> {
    let mut json = false;
    let target = parse_target_words("status", args, env, |word| {
        if word == "--json" {
            json = true;
            return Ok(true);
        }
        Ok(false)
    })?;
    Ok(Command::Status { target, json })
}

/// `restart` / `stop`: `[app-path] [--socket-prefix=PATH] [--variant=NAME]`.
pub(super) fn parse_target(sub: &str, args: &[String], env: &Env<'_>) -> Result<Target, CliError> {
    parse_target_words(sub, args, env, |_| Ok(false))
}

/// `scale <+N|-N|N> [app-path] [--socket-prefix=PATH] [--variant=NAME]`.
pub(super) fn parse_scale(args: &[String], env: &Env<'_>) -> Result<Command, CliError> {
    let mut change: Option<ScaleChange> = None;
    let target = parse_target_words("scale", args, env, |word| {
        let Some(parsed) = parse_scale_change(word) else {
            return Ok(false);
        };
        let parsed = parsed.map_err(|m| CliError::new(word, m))?;
        if change.is_some() {
            return Err(CliError::new(
                word,
                "expected one scale change (+N, -N or N), already have one",
            ));
        }
        change = Some(parsed);
        Ok(true)
    })?;
    let change = change.ok_or_else(|| {
        CliError::new(
            "scale",
            format!("expected +N, -N (add or remove N workers) or N (1..={MAX_WORKERS} workers)"),
        )
    })?;
    Ok(Command::Scale { target, change })
}

/// `[app-path] [--socket-prefix=PATH] [--variant=NAME]`, plus what `extra`
/// takes (it returns whether it took the word). With neither an app path nor
/// a prefix, the target is the one server running under `$RIP_HOME`.
fn parse_target_words(
    sub: &str,
    args: &[String],
    env: &Env<'_>,
    mut extra: impl FnMut(&str) -> Result<bool, CliError>,
) -> Result<Target, CliError> {
    let mut app: Option<&str> = None;
    let mut prefix: Option<PathBuf> = None;
    let mut variant: Option<(String, String)> = None;
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        if !words.positional_only {
            if word == "--" {
                words.positional_only = true;
                continue;
            }
            if extra(word)? {
                continue;
            }
            if let Some((token, _)) = word.split_once(':')
                && SERVE_TOKENS.contains(&token)
            {
                return Err(CliError::new(
                    word,
                    format!("not accepted by {sub}; expected an app path, --socket-prefix=PATH or --variant=NAME"),
                ));
            }
            if word.starts_with('-') && word.len() > 1 {
                let (name, inline) = split_flag(word);
                match name {
                    "--socket-prefix" => {
                        let (v, shown) = words.value(name, inline)?;
                        prefix = Some(parse_socket_prefix(v).map_err(|m| CliError::new(shown, m))?);
                    }
                    "--variant" => {
                        let (v, shown) = words.value(name, inline)?;
                        let parsed = parse_variant(v).map_err(|m| CliError::new(shown.clone(), m))?;
                        variant = Some((parsed, shown));
                    }
                    _ => {
                        let json = if sub == "status" { "--json, " } else { "" };
                        return Err(CliError::new(
                            word,
                            format!("unknown flag for {sub}; expected {json}--socket-prefix=PATH or --variant=NAME"),
                        ));
                    }
                }
                continue;
            }
        }
        if let Some(first) = app {
            return Err(CliError::new(
                word,
                format!("expected at most one app path for {sub}, already have {first}"),
            ));
        }
        if word.is_empty() {
            return Err(CliError::new("''", format!("expected an app path for {sub}")));
        }
        app = Some(word);
    }
    if let Some(p) = prefix {
        return Ok(Target::Prefix(p));
    }
    let Some(app) = app else {
        if let Some((_, shown)) = variant {
            return Err(CliError::new(
                shown,
                format!(
                    "expected an app path too: a variant names a server together with its app ({sub} <app-path> --variant=NAME)"
                ),
            ));
        }
        return match env.home()? {
            Some(home) => Ok(Target::Running { home }),
            None => Err(CliError::new(
                sub,
                "expected an app path or --socket-prefix (neither RIP_HOME nor HOME is set, so no running server can be looked up)",
            )),
        };
    };
    let variant = match variant {
        Some((v, _)) => v,
        None => env
            .parse(ENV_VARIANT, parse_variant)?
            .unwrap_or_else(|| DEFAULT_VARIANT.to_string()),
    };
    let name = target_app_name(app)?;
    let p = default_socket_prefix(&variant, &name);
    check_prefix_len(&p).map_err(|m| CliError::new(app, m))?;
    Ok(Target::Prefix(p))
}

/// `None` if `word` is not shaped like a scale change.
pub(super) fn parse_scale_change(word: &str) -> Option<Result<ScaleChange, String>> {
    let (sign, digits) = match word.as_bytes().first()? {
        b'+' => (1i64, &word[1..]),
        b'-' => (-1i64, &word[1..]),
        _ => (0, word),
    };
    let n = parse_digits(digits)?;
    let max = u64::from(MAX_WORKERS);
    Some(match (sign, n) {
        (0, Ok(n)) if (1..=max).contains(&n) => Ok(ScaleChange::To(n as u32)),
        (0, _) => Err(format!("expected a worker count 1..={MAX_WORKERS}")),
        (s, Ok(n)) if (1..=max).contains(&n) => Ok(ScaleChange::By((s * n as i64) as i32)),
        _ => Err(format!("expected a change of 1..={MAX_WORKERS} workers (+N or -N)")),
    })
}

/// The line `restart`, `stop` and `scale` print when the server accepted
/// the command (its answer is JSON such as `{"ok":true}`; a platform's
/// restart also names the apps it restarts).
pub fn accepted_line(sub: &str, answer: &serde_json::Value) -> String {
    let what = match sub {
        "restart" => "a rolling restart has begun",
        "stop" => "the server finishes the requests under way, then exits",
        "scale" => "workers are being started or retired",
        _ => "done",
    };
    let apps: Vec<&str> = answer
        .get("restarted")
        .and_then(serde_json::Value::as_array)
        .map(|list| list.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    if apps.is_empty() {
        format!("rip-server: {sub}: accepted; {what}")
    } else {
        format!("rip-server: {sub}: accepted; {what} (apps: {})", apps.join(", "))
    }
}
