//! The files in `deploy/` (Kubernetes manifests, the Dockerfile) against
//! the binary they run: they parse, and their ports, probe paths, flags,
//! environment and timeouts are the ones the binary takes. There is no
//! cluster and no Docker engine here, so this is what can be checked; the
//! systemd units are checked with systemd's own tools in `tests/e2e/systemd.rs`.

use std::path::PathBuf;

use rip_server::cli::{self, Command, ENV_VARIABLES};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn manifest(name: &str) -> Yaml {
    let path = deploy_dir().join("kubernetes").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// `--name=value` among `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[test]
fn the_deployment_s_ports_probes_and_timeouts_are_the_binary_s() {
    let config_map = manifest("configmap.yaml");
    assert_eq!(config_map["kind"].as_str(), Some("ConfigMap"));
    let env: Vec<(String, String)> = config_map["data"]
        .as_hash()
        .expect("data")
        .iter()
        .map(|(k, v)| (text(k), text(v)))
        .collect();
    for (key, _) in &env {
        assert!(
            ENV_VARIABLES.contains(&key.as_str()),
            "the ConfigMap sets {key}, which the binary does not read"
        );
    }

    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"].as_vec().expect("args").iter().map(text).collect();
    let refers_to = container["envFrom"][0]["configMapRef"]["name"].as_str();
    assert_eq!(
        refers_to,
        config_map["metadata"]["name"].as_str(),
        "envFrom names the ConfigMap"
    );

    // The arguments parse as the binary parses them, with the ConfigMap's
    // environment.
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let config = match cli::parse(&args, &lookup) {
        Ok(Command::Serve(config)) => config,
        other => panic!("the container's args {args:?} do not parse as a serve command: {other:?}"),
    };

    let ports: Vec<(String, i64)> = container["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .map(|p| (text(&p["name"]), p["containerPort"].as_i64().expect("containerPort")))
        .collect();
    let port = |name: &str| ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p);
    assert_eq!(port("http"), Some(i64::from(config.http_port)), "http port");
    let metrics = flag(&args, "--metrics-port").expect("--metrics-port");
    assert_eq!(
        port("metrics"),
        metrics.parse().ok(),
        "the metrics port is --metrics-port"
    );
    assert_eq!(
        flag(&args, "--admin-bind").as_deref(),
        Some("0.0.0.0"),
        "the kubelet reaches the probes"
    );
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/live")] {
        assert_eq!(container[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"].as_str(), Some("metrics"), "{probe}");
    }

    // The grace period covers the drain delay and the stop timeout.
    let drain_ms: u64 = flag(&args, "--drain-delay-ms")
        .expect("--drain-delay-ms")
        .parse()
        .unwrap();
    let stop_ms = config.stop_timeout.as_millis() as u64;
    assert_eq!(
        flag(&args, "--stop-timeout-ms").map(|v| v.parse::<u64>().unwrap()),
        Some(stop_ms)
    );
    let grace_s = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        (grace_s as u64) * 1000 > drain_ms + stop_ms,
        "terminationGracePeriodSeconds {grace_s} s does not cover {drain_ms} ms + {stop_ms} ms"
    );

    let service = manifest("service.yaml");
    assert_eq!(service["kind"].as_str(), Some("Service"));
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some("http"));
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/name"].as_str(),
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
        "the Service selects the Deployment's pods"
    );
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_the_binary_unprivileged() {
    let path = deploy_dir().join("docker/Dockerfile");
    let text = std::fs::read_to_string(&path).expect("Dockerfile");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "two stages: {from:?}");
    assert!(from[0].ends_with(" AS build"), "{from:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=build ") && l.ends_with(" /usr/local/bin/rip-server")),
        "the second stage copies the binary"
    );
    let user = lines.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as root: USER {user}");
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/rip-server"]"#));
    let cmd = lines.iter().find_map(|l| l.strip_prefix("CMD ")).expect("CMD");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form (JSON)");
    let none = |_: &str| None;
    match cli::parse(&args, &none) {
        Ok(Command::Serve(config)) => assert_eq!(config.http_port, 5002),
        other => panic!("CMD {args:?} does not parse as a serve command: {other:?}"),
    }
    let exposed: Vec<&str> = lines
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .split_whitespace()
        .collect();
    assert_eq!(
        exposed,
        [
            "5002",
            flag(&args, "--metrics-port").as_deref().expect("--metrics-port")
        ]
    );
    let ignore = std::fs::read_to_string(deploy_dir().join("docker/Dockerfile.dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target"),
        "the build context leaves target/ out"
    );
}
