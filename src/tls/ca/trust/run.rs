//! Running a store's command (found through `PATH`) and showing one.

use std::process::{Command, Stdio};

/// Runs `argv`; `Err` says why it failed in one line: not found, or its
/// exit status and the last line it printed.
pub(super) fn run(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no command")?;
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{program} not found on PATH"),
            _ => format!("cannot run {program} ({e})"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let said = [&output.stderr, &output.stdout]
        .iter()
        .filter_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(str::to_string)
        })
        .next();
    let status = output
        .status
        .code()
        .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit status {c}"));
    Err(match said {
        Some(line) => format!("{program}: {status}: {line}"),
        None => format!("{program}: {status}"),
    })
}

/// `argv` as a shell command line (single quotes where needed).
pub(super) fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@,+-%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_as_a_shell_would_take_them() {
        let argv: Vec<String> = [
            "certutil",
            "-n",
            "rip-server CA 01",
            "-t",
            "C,,",
            "-d",
            "sql:/h/.pki/nssdb",
            "it's",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            shell_line(&argv),
            r"certutil -n 'rip-server CA 01' -t C,, -d sql:/h/.pki/nssdb 'it'\''s'"
        );
    }

    #[test]
    fn a_failure_is_one_line_with_the_status_and_what_it_said() {
        let sh = |script: &str| run(&["sh".into(), "-c".into(), script.into()]);
        assert_eq!(sh("exit 0"), Ok(()));
        assert_eq!(
            sh("echo first >&2; echo last >&2; exit 3"),
            Err("sh: exit status 3: last".into())
        );
        assert_eq!(sh("exit 4"), Err("sh: exit status 4".into()));
        assert_eq!(
            run(&["rip-server-no-such-program".into()]),
            Err("rip-server-no-such-program not found on PATH".into())
        );
    }
}
