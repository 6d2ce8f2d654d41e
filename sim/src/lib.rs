//! Deterministic simulation of rip-server on turmoil.
//!
//! The core's proptests prove the state machines; this crate runs the real
//! adapters around them (the front door, upstream connections, the control
//! plane and the driver) on a simulated network, with simulated worker
//! processes that hang, crash, refuse or boot slowly, and checks end to end
//! what the clients saw. A seed fixes everything (network latencies, host
//! polling order, service times, faults), so a failing seed replays exactly:
//! `SIM_SEED=<seed> cargo test -p rip-sim --test scenarios <scenario>`.
//!
//! - `lb`: the real `Driver`, `frontdoor::run` on port 80 and `control::run`
//!   on port 9999, wired as `server::serve` wires them, with [`SimTransport`],
//!   the turmoil listeners of [`net`] and [`SimSpawner`].
//! - `p0..pK`: pool hosts; each runs the simulated worker process the spawner
//!   assigns it ([`worker`]).
//! - clients ([`client`]): bursts, steady load, disconnects.
//!
//! The modules form layers; each imports only from layers below it (the
//! `layers` test below enforces it, so there is no import circle):
//!
//! | layer | modules | import from |
//! | --- | --- | --- |
//! | 0 | [`rng`] | nothing |
//! | 1 | [`state`] | `rng` |
//! | 2 | [`config`], [`net`] | `rng`, `state` |
//! | 3 | [`spawner`], [`worker`] | `rng`, `state`, `net` |
//! | 4 | [`client`] | `rng`, `state`, `net`, `worker` |
//! | 5 | [`report`] | `state`, `config` |
//! | 6 | [`harness`] | everything above |
//!
//! See `docs/simulation.md`.

pub mod client;
pub mod config;
pub mod harness;
pub mod net;
pub mod report;
pub mod rng;
pub mod spawner;
pub mod state;
pub mod worker;

pub use client::{ClientPlan, Req};
pub use config::Config;
pub use harness::{AdminCmd, Fault, Harness};
pub use net::SimTransport;
pub use report::{Expect, Report, seeds, sweep};
pub use rng::Rng;
pub use spawner::SimSpawner;
pub use state::{Incarnation, Outcome, Service, WorkerBehavior};

#[cfg(test)]
mod layers {
    use std::collections::BTreeMap;

    /// Each module's layer (see the table in the crate documentation).
    const LAYERS: [(&str, u8); 10] = [
        ("rng", 0),
        ("state", 1),
        ("config", 2),
        ("net", 2),
        ("spawner", 3),
        ("worker", 3),
        ("client", 4),
        ("report", 5),
        ("harness", 6),
        ("lib", 7),
    ];

    /// The modules named by `crate::<module>` or `crate::{<module>, ..}` in a
    /// file, comments left out.
    fn crate_references(source: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in source.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let names = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or(""),
                    None => rest,
                };
                for item in names.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push(name);
                    }
                    if !rest.starts_with('{') {
                        break;
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_module_imports_only_from_lower_layers() {
        let layer: BTreeMap<&str, u8> = LAYERS.into_iter().collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        let mut wrong = Vec::new();
        for path in files {
            let module = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let Some(&own) = layer.get(module.as_str()) else {
                wrong.push(format!("{module} has no layer in LAYERS (add it to the table)"));
                continue;
            };
            let source =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            for used in crate_references(&source) {
                match layer.get(used.as_str()) {
                    Some(&below) if below < own => {}
                    Some(&other) => wrong.push(format!(
                        "{module} (layer {own}) imports crate::{used} (layer {other}): only lower layers"
                    )),
                    None if module == "lib" => {} // the re-exports name items, not modules
                    None => wrong.push(format!("{module} names crate::{used}, which is not a module")),
                }
            }
        }
        assert!(wrong.is_empty(), "module layering broken:\n{}", wrong.join("\n"));
    }

    #[test]
    fn references_are_found() {
        let source =
            "use crate::state::{a, b};\nuse crate::{net, rng::Rng};\n// crate::harness\nlet x = crate::report::f();";
        assert_eq!(crate_references(source), ["state", "net", "rng", "report"]);
    }
}
