//! A user the server denies the group's buckets to gets a typed permission
//! error from `start()`, quickly — not a startup timeout.

// Test code: unwrap, expect and panic are how it asserts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parti::{Config, Error, Manager};
use parti_core::backend::BackendError;
use parti_core::layout::BucketNames;
use parti_testkit::nats_server::{NatsServer, require_nats_server, unique_group};
use std::time::Instant;

/// Authorization: user `ok` may do anything; user `denied` may not publish to
/// anything about the buckets of `group` (their JetStream API and KV subjects).
fn server_config(group: &str) -> String {
    let names = BucketNames::for_group(group);
    let mut deny = Vec::new();
    for b in [&names.members, &names.leader, &names.assignments] {
        for s in [
            format!("$JS.API.STREAM.*.KV_{b}"),
            format!("$JS.API.CONSUMER.*.KV_{b}"),
            format!("$JS.API.CONSUMER.*.KV_{b}.>"),
            format!("$JS.API.DIRECT.GET.KV_{b}"),
            format!("$JS.API.DIRECT.GET.KV_{b}.>"),
            format!("$KV.{b}.>"),
        ] {
            deny.push(format!("\"{s}\""));
        }
    }
    format!(
        r#"
authorization {{
  users = [
    {{ user: "ok", password: "ok" }}
    {{ user: "denied", password: "denied", permissions: {{
        publish: {{ allow: [">"], deny: [{}] }}
        subscribe: {{ allow: [">"] }}
    }} }}
  ]
}}
"#,
        deny.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_bucket_is_a_permission_error_not_a_timeout() {
    if require_nats_server().is_none() {
        return;
    }
    let group = unique_group("denied");
    let server = NatsServer::start_with_config(&server_config(&group)).unwrap();
    let port = server.port();
    let mut config = Config::for_tests();
    config.group = group.clone();

    let url = format!("nats://127.0.0.1:{port}");
    let client =
        async_nats::ConnectOptions::with_user_and_password("denied".into(), "denied".into())
            .connect(&url)
            .await
            .unwrap();
    let began = Instant::now();
    let result = Manager::builder_nats(client)
        .config(config.clone())
        .start()
        .await;
    let took = began.elapsed();
    println!(
        "denied user: start() failed after {} ms: {result:?}",
        took.as_millis()
    );
    match result {
        Err(Error::Backend(BackendError::PermissionDenied(message))) => {
            assert!(message.contains(&group), "{message}");
        }
        Err(other) => panic!("expected a permission error, got {other:?}"),
        Ok(_) => panic!("a denied user started"),
    }
    assert!(
        took < config.startup_timeout / 2,
        "took {took:?} (startup_timeout {:?})",
        config.startup_timeout
    );

    // The same group works for a user with permission.
    let client = async_nats::ConnectOptions::with_user_and_password("ok".into(), "ok".into())
        .connect(&url)
        .await
        .unwrap();
    let manager = Manager::builder_nats(client)
        .config(config)
        .start()
        .await
        .unwrap();
    assert!(manager.worker_id().is_some());
    manager.stop().await.unwrap();
}
