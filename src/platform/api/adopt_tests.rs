//! [`Api::adopt_registry`]: a directory `hosts.json` names and no app serves
//! is deployed once, under a name made from the directory; a directory that
//! cannot be deployed is reported once and leaves nothing behind.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use super::tests::Harness;
use crate::config::hosts::{HostName, add_host};
use crate::platform::apps::Desired;

fn register(harness: &Harness, host: &str, dir: &std::path::Path) {
    add_host(&harness.home(), &HostName::parse(host).unwrap(), dir).unwrap();
}

#[tokio::test]
async fn a_registered_directory_no_app_serves_is_deployed_once() {
    let harness = Harness::new();
    let dir = harness.app_dir("My_Site");
    register(&harness, "shop.test", &dir);
    register(&harness, "www.shop.test", &dir);

    let lines = harness.api.adopt_registry().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("deployed app app-my-site for "), "{lines:?}");
    let apps = harness.api.apps();
    let record = apps.get("app-my-site").expect("deployed");
    assert_eq!((record.workers, record.desired), (2, Desired::Running));
    assert!(record.hosts.is_empty(), "its hosts are the registry's: {record:?}");
    assert_eq!(harness.api.control().calls(), vec!["deploy app-my-site".to_owned()]);
    let saved = fs::read_to_string(harness.apps_file()).unwrap();
    assert!(saved.contains("app-my-site"), "{saved}");

    // Served now: a second read deploys nothing.
    assert!(harness.api.adopt_registry().await.is_empty());
    assert_eq!(harness.api.control().calls().len(), 1);
}

#[tokio::test]
async fn a_directory_an_app_serves_already_is_left_alone_and_names_never_clash() {
    let harness = Harness::new();
    let dir = harness.app_dir("blog");
    let (status, body) = harness
        .call(
            "POST",
            "/api/apps",
            Some(serde_json::json!({"name": "app-blog", "directory": harness.app_dir("other")})),
        )
        .await;
    assert_eq!(status, http::StatusCode::CREATED, "{body}");
    let served = harness.app_dir("served");
    let (status, body) = harness
        .call(
            "POST",
            "/api/apps",
            Some(serde_json::json!({"name": "served", "directory": served})),
        )
        .await;
    assert_eq!(status, http::StatusCode::CREATED, "{body}");
    register(&harness, "served.test", &served);
    register(&harness, "blog.test", &dir);

    let lines = harness.api.adopt_registry().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let apps = harness.api.apps();
    assert_eq!(apps.len(), 3);
    assert_eq!(apps.get("app-blog-2").map(|r| r.directory.clone()), Some(dir));
}

#[tokio::test]
async fn a_directory_that_cannot_be_deployed_is_reported_once_and_nothing_is_kept() {
    let harness = Harness::new();
    let dir = harness.app_dir("open");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    register(&harness, "open.test", &dir);
    let before = harness.state();

    let lines = harness.api.adopt_registry().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("cannot deploy "), "{lines:?}");
    assert!(lines[0].contains("other users can write it"), "{lines:?}");
    assert_eq!(harness.state(), before, "a refused directory changed something");
    // The same reason is not reported at every re-read of the registry.
    assert!(harness.api.adopt_registry().await.is_empty());

    // Fixed: deployed at the next read.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let lines = harness.api.adopt_registry().await;
    assert!(
        lines.first().is_some_and(|l| l.starts_with("deployed app app-open")),
        "{lines:?}"
    );
}
