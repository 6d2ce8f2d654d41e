use proptest::prelude::*;

use super::*;

const SECRET: &str = "s3cr3t-postgres-password";

fn record(name: &str, hosts: &[&str]) -> AppRecord {
    AppRecord {
        name: name.to_owned(),
        directory: PathBuf::from(format!("/srv/{name}")),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        workers: 2,
        env: BTreeMap::from([
            ("DATABASE_PASSWORD".to_owned(), SECRET.to_owned()),
            ("NODE_ENV".to_owned(), "production".to_owned()),
        ]),
        desired: Desired::Running,
        started_at: None,
    }
}

#[test]
fn a_record_is_checked_against_every_rule() {
    assert_eq!(record("blog", &["blog.test", "www.blog.test"]).validate(), Ok(()));
    let broken: Vec<(AppRecord, AppError)> = vec![
        (
            AppRecord {
                name: "Blog".into(),
                ..record("blog", &[])
            },
            AppError::InvalidName("Blog".into()),
        ),
        (
            AppRecord {
                workers: 0,
                ..record("blog", &[])
            },
            AppError::WorkersOutOfRange(0),
        ),
        (
            AppRecord {
                workers: 1025,
                ..record("blog", &[])
            },
            AppError::WorkersOutOfRange(1025),
        ),
        (
            AppRecord {
                directory: "srv/blog".into(),
                ..record("blog", &[])
            },
            AppError::DirectoryNotAbsolute("srv/blog".into()),
        ),
        (
            AppRecord {
                env: BTreeMap::from([("NODE_OPTIONS".into(), "--require /tmp/x.js".into())]),
                ..record("blog", &[])
            },
            AppError::EnvKeyRefused("NODE_OPTIONS".into()),
        ),
        (
            record("blog", &["blog.test:8080"]),
            AppError::InvalidHost("blog.test:8080".into()),
        ),
        (
            record("blog", &["blog.test", "BLOG.test"]),
            AppError::DuplicateHost("BLOG.test".into()),
        ),
    ];
    for (record, expected) in broken {
        assert_eq!(record.validate(), Err(expected.clone()), "{record:?}");
        let mut apps = Apps::new();
        assert_eq!(apps.insert(record), Err(expected));
        assert!(apps.is_empty());
    }
}

#[test]
fn one_app_per_name_and_per_host() {
    let mut apps = Apps::new();
    apps.insert(record("blog", &["blog.test"])).unwrap();
    assert_eq!(
        apps.insert(record("blog", &[])),
        Err(AppError::NameTaken("blog".into()))
    );
    let err = apps.insert(record("shop", &["BLOG.TEST"])).unwrap_err();
    assert_eq!(
        err,
        AppError::HostTaken {
            host: "BLOG.TEST".into(),
            app: "blog".into()
        }
    );
    assert_eq!(err.status(), 409);
    assert_eq!(apps.len(), 1);
    assert_eq!(apps.host_owner("Blog.Test"), Some("blog"));
    assert_eq!(apps.host_owner("shop.test"), None);

    // An app may keep its own hosts when it is replaced, not take another's.
    apps.insert(record("shop", &["shop.test"])).unwrap();
    let mut blog = apps.get("blog").unwrap().clone();
    blog.workers = 4;
    let old = apps.replace(blog.clone()).unwrap();
    assert_eq!(old.workers, 2);
    assert_eq!(apps.get("blog"), Some(&blog));
    blog.hosts.push("shop.test".into());
    assert!(matches!(apps.replace(blog), Err(AppError::HostTaken { .. })));
    assert_eq!(apps.get("blog").unwrap().hosts, vec!["blog.test"]);
    assert_eq!(
        apps.replace(record("nope", &[])),
        Err(AppError::NotFound("nope".into()))
    );

    assert_eq!(apps.remove("blog").map(|r| r.name), Some("blog".into()));
    assert_eq!(apps.remove("blog"), None);
    // Its host is free again.
    apps.insert(record("other", &["blog.test"])).unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["other", "shop"]);
}

#[test]
fn the_public_view_shows_env_keys_never_values() {
    let record = record("blog", &["blog.test"]);
    let view = record.view();
    assert_eq!(view.env_keys, ["DATABASE_PASSWORD", "NODE_ENV"]);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "blog",
            "directory": "/srv/blog",
            "hosts": ["blog.test"],
            "workers": 2,
            "envKeys": ["DATABASE_PASSWORD", "NODE_ENV"],
            "desired": "running",
            "startedAt": null,
        })
    );
    let text = json.to_string();
    assert!(!text.contains(SECRET) && !text.contains("production"), "{text}");
    // Nor does the record's Debug.
    let debug = format!("{record:?} {:?}", Apps::new());
    assert!(!debug.contains(SECRET), "{debug}");
}

#[test]
fn the_deploy_body_becomes_a_running_record() {
    let body = r#"{"name":"blog","directory":"/srv/blog","hosts":["blog.test"],"env":{"A":"1"}}"#;
    let new: NewApp = serde_json::from_str(body).unwrap();
    let record = new.into_record(3).unwrap();
    assert_eq!(record.workers, 3);
    assert_eq!(record.desired, Desired::Running);
    assert_eq!(record.env, BTreeMap::from([("A".to_owned(), "1".to_owned())]));
    let explicit: NewApp = serde_json::from_str(r#"{"name":"blog","directory":"/srv/blog","workers":5}"#).unwrap();
    assert_eq!(explicit.into_record(3).unwrap().workers, 5);

    let refused: NewApp =
        serde_json::from_str(r#"{"name":"blog","directory":"/srv/blog","env":{"RIP_HOME":"/tmp"}}"#).unwrap();
    assert_eq!(
        refused.into_record(1).err(),
        Some(AppError::EnvKeyRefused("RIP_HOME".into()))
    );
    for bad in [
        r#"{"name":"blog"}"#,
        r#"{"name":"blog","directory":"/srv/blog","workers":-1}"#,
        r#"{"name":"blog","directory":"/srv/blog","typo":1}"#,
        r#"{"name":"blog","directory":"/srv/blog","env":{"A":1}}"#,
    ] {
        assert!(serde_json::from_str::<NewApp>(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_patch_replaces_what_it_names_and_the_env_whole() {
    let before = record("blog", &["blog.test"]);
    let patch: AppPatch = serde_json::from_str(r#"{"workers":4}"#).unwrap();
    let after = patch.applied_to(&before);
    assert_eq!(after.workers, 4);
    assert_eq!((&after.hosts, &after.env), (&before.hosts, &before.env));

    // The env is the whole new map: keys left out are removed.
    let patch: AppPatch = serde_json::from_str(r#"{"env":{"NODE_ENV":"staging"},"hosts":[]}"#).unwrap();
    let after = patch.applied_to(&before);
    assert_eq!(
        after.env,
        BTreeMap::from([("NODE_ENV".to_owned(), "staging".to_owned())])
    );
    assert!(after.hosts.is_empty());
    assert_eq!(after.workers, before.workers);

    assert!(serde_json::from_str::<AppPatch>(r#"{"name":"other"}"#).is_err());
    // Checked where it is applied.
    let mut apps = Apps::new();
    apps.insert(before.clone()).unwrap();
    let patch: AppPatch = serde_json::from_str(r#"{"workers":0}"#).unwrap();
    assert_eq!(
        apps.replace(patch.applied_to(&before)),
        Err(AppError::WorkersOutOfRange(0))
    );
    assert_eq!(apps.get("blog"), Some(&before));
}

proptest! {
    /// Whatever the environment holds, the public view's JSON never
    /// contains a value (values are long enough not to be a key or a field
    /// name by chance).
    #[test]
    fn no_env_value_ever_reaches_the_public_view(
        env in proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,12}", "[ -~]{12,40}", 0..8),
    ) {
        let mut record = record("blog", &["blog.test"]);
        record.env = env.clone();
        let text = serde_json::to_string(&record.view()).unwrap();
        for (key, value) in &env {
            prop_assert!(!text.contains(value.as_str()), "value of {} in {}", key, text);
            let escaped = serde_json::to_string(value).unwrap();
            prop_assert!(!text.contains(escaped.trim_matches('"')), "escaped value of {} in {}", key, text);
        }
        let keys: Vec<String> = env.keys().cloned().collect();
        prop_assert_eq!(record.view().env_keys, keys);
    }
}
