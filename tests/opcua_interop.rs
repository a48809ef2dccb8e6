//! Interop with an independent OPC UA stack: a server written with Python's
//! `asyncua` (tests/peers/asyncua_server.py). Values arrive in each node id
//! notation; a Basic256Sha256 SignAndEncrypt server with a username login is
//! first refused as untrusted, with the command that trusts it, and after
//! `plantgate opcua trust --yes` its values flow.

#[path = "support/opcua_peer.rs"]
mod opcua_peer;
#[path = "support/opcua_rig.rs"]
mod opcua_rig;
mod support;

use opcua_peer::PyServer;
use opcua_rig::{gateway_config, good, opcua_source, start_sources};
use plantgate::model::{Quality, Value};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const URI: &str = "urn:plantgate:asyncua";

fn press_tags() -> String {
    format!(
        r#"
[[tags]]
name = "counter"
source = "press"
node = "nsu={URI};s=Press.Counter"

[[tags]]
name = "temperature"
source = "press"
node = "ns=2;i=1001"

[[tags]]
name = "recipe"
source = "press"
node = "ns=2;s=Press.Recipe"
"#
    )
}

fn distinct_counts(values: &[Value]) -> BTreeSet<u64> {
    values.iter().filter_map(Value::as_u64).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncua_values_arrive_in_each_notation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = PyServer::start(&["--tick", "0.1"]);
    let text = gateway_config(dir.path(), &opcua_source(&peer.url(), ""), &press_tags());
    let mut src = start_sources(dir.path(), &text);
    let recipe = src.next("recipe", good).await;
    assert_eq!(recipe.value, Value::Text("R-100".into()));
    let t = src.next("temperature", good).await;
    assert!(matches!(t.value, Value::Float(v) if v >= 20.0), "{t:?}");
    let counts = distinct_counts(&src.values_for("counter", Duration::from_secs(2)).await);
    assert!(counts.len() >= 5, "the counter keeps changing: {counts:?}");
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncua_sign_and_encrypt_with_a_user_after_trusting_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("peer");
    let peer = PyServer::start(&[
        "--tick",
        "0.1",
        "--security",
        "basic256sha256",
        "--user",
        "gateway:s3cret pass",
        "--cert-dir",
        certs.to_str().expect("utf-8 path"),
    ]);
    std::fs::write(dir.path().join("password"), "s3cret pass\n").expect("password file");
    let trust_dir = dir.path().join("trusted");
    let source = opcua_source(
        &peer.url(),
        &format!(
            "security_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"\n\
             user = \"gateway\"\npassword_file = \"password\"\ntrust_dir = \"{}\"",
            trust_dir.display()
        ),
    );
    let text = gateway_config(dir.path(), &source, &press_tags());
    let mut src = start_sources(dir.path(), &text);

    // Not trusted yet: refused, saying exactly how to trust it.
    let refused = src.next("counter", |s| s.quality != Quality::Good).await;
    let Quality::Bad(why) = &refused.quality else {
        panic!("{refused:?}")
    };
    assert!(why.contains("is not trusted"), "{why}");
    assert!(
        why.contains(&format!(
            "plantgate opcua trust {} --trust-dir {}",
            peer.url(),
            trust_dir.display()
        )),
        "{why}"
    );
    assert!(why.contains("thumbprint"), "{why}");

    // A person (or a script) trusts it.
    let out = Command::new(support::bin())
        .args(["opcua", "trust", &peer.url(), "--yes", "--trust-dir"])
        .arg(&trust_dir)
        .output()
        .expect("run plantgate opcua trust");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("asyncua peer"), "subject shown: {stdout}");
    assert!(stdout.contains("thumbprint: "), "{stdout}");
    assert!(stdout.contains("trusted: stored"), "{stdout}");
    assert_eq!(std::fs::read_dir(&trust_dir).expect("trust dir").count(), 1);

    // The source retries with backoff and now reads through the secure channel.
    let first = src.next("recipe", good).await;
    assert_eq!(first.value, Value::Text("R-100".into()));
    let counts = distinct_counts(&src.values_for("counter", Duration::from_secs(2)).await);
    assert!(counts.len() >= 5, "the counter keeps changing: {counts:?}");
    assert!(src.telemetry.snapshot().sources["press"].connected);
    src.stop().await;

    // Without confirmation on stdin nothing is trusted.
    let other = dir.path().join("other");
    let out = Command::new(support::bin())
        .args(["opcua", "trust", &peer.url(), "--trust-dir"])
        .arg(&other)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run plantgate opcua trust");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not trusted"));
    assert!(!other.exists() || std::fs::read_dir(&other).expect("dir").count() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncua_refuses_a_wrong_password_and_the_error_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = PyServer::start(&["--user", "gateway:right"]);
    std::fs::write(dir.path().join("password"), "wrong").expect("password file");
    let source = opcua_source(
        &peer.url(),
        "user = \"gateway\"\npassword_file = \"password\"",
    );
    let text = gateway_config(dir.path(), &source, &press_tags());
    let mut src = start_sources(dir.path(), &text);
    let s = src.next("counter", |s| s.quality != Quality::Good).await;
    let Quality::Bad(why) = &s.quality else {
        panic!("{s:?}")
    };
    assert!(
        why.contains("BadUserAccessDenied") || why.contains("BadIdentityToken"),
        "{why}"
    );
    src.stop().await;
}
