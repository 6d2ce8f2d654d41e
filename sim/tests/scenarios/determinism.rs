//! Determinism, checked on the whole transcript of a run
//! ([`Report::transcript`]: the trace, then every request's outcome, every
//! process, the spawns and signals, the inspector's last snapshot with the
//! counters and the final `/status` document):
//!
//! - the same seed gives the same transcript, for every scenario and
//!   several seeds, in one process;
//! - the same seed gives the same transcript in two separate processes (the
//!   test runs its own binary twice);
//! - different seeds give different transcripts, so the comparisons above
//!   are not trivially equal.

use std::io::Write;
use std::process::{Command, Stdio};

use rip_sim::Report;
use rip_sim::report::run_isolated;

use super::{ALL, Scenario, crashes_under_load_run};

/// Seeds compared in one process, for every scenario. 1, 2 and 3 also cover
/// the three network latency bounds (chosen by `seed % 3`).
const SEEDS: [u64; 3] = [1, 2, 3];

/// The seed every scenario runs with in the two child processes.
const CROSS_PROCESS_SEED: u64 = 5;

/// Tells the test binary it is a child of
/// `same_seed_same_transcript_in_two_processes`: the value lists the runs to
/// print, as `scenario:seed,scenario:seed,...`.
const CHILD_ENV: &str = "SIM_TRANSCRIPT_CHILD";

/// Starts every transcript line a child prints (libtest writes to the same
/// stdout).
const LINE_MARK: &str = "SIMTX|";

/// The transcript of one run; a panic becomes a one-line transcript, which
/// then differs from a run that did not panic.
fn transcript_of(seed: u64, scenario: Scenario) -> Vec<String> {
    match run_isolated(seed, scenario) {
        Ok((report, _failures)) => report.transcript(),
        Err(panic) => vec![format!("panicked: {panic}")],
    }
}

/// Where two transcripts first differ, with the lines around it; `None`
/// when they are equal.
fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    if a == b {
        return None;
    }
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let show = |lines: &[String]| -> String {
        let from = at.saturating_sub(3);
        let to = (at + 3).min(lines.len());
        (from..to)
            .map(|i| format!("    {}{i}: {}", if i == at { "> " } else { "  " }, lines[i]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(format!(
        "{} and {} lines, first difference at line {at}:\n  first:\n{}\n  second:\n{}",
        a.len(),
        b.len(),
        show(a),
        show(b)
    ))
}

#[test]
fn same_seed_same_transcript() {
    let mut failures = Vec::new();
    for (name, scenario) in ALL {
        let mut by_seed: Vec<(u64, Vec<String>)> = Vec::new();
        for seed in SEEDS {
            let first = transcript_of(seed, scenario);
            let second = transcript_of(seed, scenario);
            if let Some(difference) = first_difference(&first, &second) {
                failures.push(format!("{name} seed {seed}: two runs differ: {difference}"));
            }
            if first.len() < 20 {
                failures.push(format!("{name} seed {seed}: transcript too short: {first:?}"));
            }
            by_seed.push((seed, first));
        }
        // The seed reaches the run: no two seeds give the same transcript.
        for (i, (seed_a, a)) in by_seed.iter().enumerate() {
            for (seed_b, b) in &by_seed[i + 1..] {
                if a == b {
                    failures.push(format!("{name}: seeds {seed_a} and {seed_b} gave the same transcript"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The deaths of a run: (slot, time, how) of every process that ended.
fn deaths(report: &Report) -> Vec<(u32, u64, &'static str)> {
    report
        .procs
        .values()
        .filter_map(|p| Some((p.slot, p.died_at?, p.end?)))
        .collect()
}

/// Seeds 1 and 4 have the same latency bound (`seed % 3`), so what differs
/// between them comes from the seeded randomness: turmoil's latencies and
/// host order, and the harness's crash draws, kill times and think times.
#[test]
fn different_seeds_give_different_runs() {
    let run = |seed| {
        run_isolated(seed, crashes_under_load_run)
            .expect("crashes_under_load runs")
            .0
    };
    let (a, b) = (run(1), run(4));
    assert_eq!(
        a.config.max_latency, b.config.max_latency,
        "seeds 1 and 4 share the latency bound"
    );
    assert_ne!(
        a.trace, b.trace,
        "seeds 1 and 4 of crashes_under_load gave the same trace"
    );
    let (deaths_a, deaths_b) = (deaths(&a), deaths(&b));
    assert!(
        !deaths_a.is_empty() && !deaths_b.is_empty(),
        "crashes_under_load had no deaths: seed 1 {deaths_a:?}, seed 4 {deaths_b:?}"
    );
    assert_ne!(
        deaths_a, deaths_b,
        "seeds 1 and 4 crashed the same workers at the same times"
    );
    let outcomes = |r: &Report| {
        r.requests
            .iter()
            .map(|q| (q.tag.clone(), q.outcome.clone()))
            .collect::<Vec<_>>()
    };
    assert_ne!(
        outcomes(&a),
        outcomes(&b),
        "seeds 1 and 4 gave every request the same outcome"
    );
}

/// Child mode: prints the transcripts the parent asked for, each line marked.
fn print_transcripts(runs: &str) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for run in runs.split(',') {
        let (name, seed) = run
            .split_once(':')
            .unwrap_or_else(|| panic!("{CHILD_ENV}: bad run {run:?}"));
        let seed: u64 = seed
            .parse()
            .unwrap_or_else(|_| panic!("{CHILD_ENV}: bad seed in {run:?}"));
        let scenario = ALL
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{CHILD_ENV}: no scenario {name:?}"))
            .1;
        // A leading newline: libtest may have left "test <name> ... " unterminated.
        writeln!(out, "\n{LINE_MARK}begin {name} seed {seed}").expect("stdout");
        for line in transcript_of(seed, scenario) {
            writeln!(out, "{LINE_MARK}{line}").expect("stdout");
        }
        writeln!(out, "{LINE_MARK}end {name} seed {seed}").expect("stdout");
    }
    out.flush().expect("stdout");
}

/// Runs this test binary as a child that prints the transcripts of `runs`.
fn spawn_child(test: &str, runs: &str) -> std::thread::JoinHandle<Result<Vec<String>, String>> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, runs)
        .env_remove("SIM_SEED")
        .env_remove("SIM_SEEDS")
        .env_remove("SIM_TRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    std::thread::spawn(move || {
        let output = child
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?
            .wait_with_output()
            .map_err(|e| format!("cannot read the child's output: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "the child exited with {}:\n{}\n{}",
                output.status,
                stdout
                    .lines()
                    .filter(|l| !l.contains(LINE_MARK))
                    .collect::<Vec<_>>()
                    .join("\n"),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(stdout
            .lines()
            .filter_map(|l| l.find(LINE_MARK).map(|at| l[at + LINE_MARK.len()..].to_owned()))
            .collect())
    })
}

/// Every scenario, seed [`CROSS_PROCESS_SEED`], in two fresh processes at
/// once: what one process cannot vary (address-space layout, hash seeds
/// drawn at start, anything read from the environment or the wall clock)
/// differs between them.
#[test]
fn same_seed_same_transcript_in_two_processes() {
    if let Ok(runs) = std::env::var(CHILD_ENV) {
        print_transcripts(&runs);
        return;
    }
    // This test's name as libtest knows it (the module path without the crate).
    let path = module_path!();
    let test = format!(
        "{}::same_seed_same_transcript_in_two_processes",
        path.split_once("::").map_or(path, |(_, rest)| rest)
    );
    let runs: Vec<String> = ALL
        .iter()
        .map(|(name, _)| format!("{name}:{CROSS_PROCESS_SEED}"))
        .collect();
    let runs = runs.join(",");
    let children = [spawn_child(&test, &runs), spawn_child(&test, &runs)];
    let [first, second] = children.map(|child| {
        child
            .join()
            .expect("the thread reading a child")
            .unwrap_or_else(|e| panic!("{e}"))
    });
    for (name, _) in ALL {
        let end = format!("end {name} seed {CROSS_PROCESS_SEED}");
        for (which, lines) in [("first", &first), ("second", &second)] {
            assert!(
                lines.contains(&end),
                "the {which} child printed no transcript of {name} (did `--exact {test}` match the test?)"
            );
        }
    }
    if let Some(difference) = first_difference(&first, &second) {
        panic!("two processes running seed {CROSS_PROCESS_SEED} differ: {difference}");
    }
}
