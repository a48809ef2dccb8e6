//! Interop with an independent OPC UA stack: a server written with Python's
//! `asyncua` (tests/peers/asyncua_server.py). Values arrive in each node id
//! notation; a Basic256Sha256 SignAndEncrypt server with a username login is
//! first refused as untrusted, with the command that trusts it, and after
//! `plantgate opcua trust --yes` its values flow. `opcua browse` shows its
//! arrays, texts and structures as a person reads them (golden output under
//! tests/cases/opcua_browse/), and `--toml` proposes only the machine's
//! nodes unless `--all`.
#![cfg(feature = "opcua")]

#[path = "support/opcua_peer.rs"]
mod opcua_peer;
#[path = "support/opcua_rig.rs"]
mod opcua_rig;
mod support;

use opcua_peer::PyServer;
use opcua_rig::{gateway_config, good, opcua_source, start_sources};
use plantgate::model::{Quality, Value};
use std::collections::BTreeSet;
use std::path::Path;
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

/// Run the plantgate binary: exit code, stdout, stderr.
async fn plantgate(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(support::bin())
            .args(args)
            .env_remove("PLANTGATE_LOG")
            .env("NO_COLOR", "1")
            .output(),
    )
    .await
    .expect("plantgate finishes")
    .expect("run plantgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Compare with tests/cases/opcua_browse/NAME; PLANTGATE_BLESS=1 rewrites it.
fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases/opcua_browse")
        .join(name);
    if std::env::var_os("PLANTGATE_BLESS").is_some() {
        std::fs::write(&path, got).expect("write golden file");
    }
    let want = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(got, want, "{} differs; got:\n{got}", path.display());
}

/// `plantgate check` on a gateway config with these [[tags]] under source "press".
async fn check_tags(dir: &Path, url: &str, tags: &str) {
    let path = dir.join("pasted.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nid = \"gw\"\n\n[[sources]]\nname = \"press\"\nkind = \"opcua\"\nendpoint = \"{url}\"\n\n{tags}\n[odoo]\ndry_run = true\n"
        ),
    )
    .expect("write config");
    let (code, out, err) = plantgate(&["check", "--config", path.to_str().expect("utf-8")]).await;
    assert_eq!(
        code, 0,
        "plantgate check refused the pasted tags:\n{out}{err}\n{tags}"
    );
}

/// Stack warnings that mean nothing to the person at the terminal.
fn assert_quiet(stderr: &str) {
    for noise in [
        "WARN",
        "Endpoint config contains no endpoints",
        "Transport disconnected",
    ] {
        assert!(!stderr.contains(noise), "{noise:?} on stderr:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncua_browse_shows_readable_values_and_proposes_only_the_machines_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = PyServer::start(&["--tick", "0.1"]);
    let url = peer.url();
    let data = dir.path().join("gw");
    let data = data.to_str().expect("utf-8");
    let line = format!("nsu={URI};s=Line");

    let (code, tree, err) =
        plantgate(&["opcua", "browse", &url, "--node", &line, "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    assert_quiet(&err);
    golden("line.txt", &tree);

    let (code, toml_text, err) = plantgate(&[
        "opcua",
        "browse",
        &url,
        "--node",
        &line,
        "--toml",
        "--source",
        "press",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_quiet(&err);
    golden("line.toml", &toml_text);
    check_tags(dir.path(), &url, &toml_text).await;

    // From the Objects folder: the machine's nodes, not the server's own.
    let (code, toml_text, err) = plantgate(&[
        "opcua",
        "browse",
        &url,
        "--toml",
        "--source",
        "press",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let parsed: toml::Table = toml::from_str(&toml_text).expect("valid TOML");
    let nodes: Vec<&str> = parsed["tags"]
        .as_array()
        .expect("[[tags]]")
        .iter()
        .filter_map(|t| t["node"].as_str())
        .collect();
    assert!(
        nodes.contains(&format!("nsu={URI};s=Press.Counter").as_str()),
        "{toml_text}"
    );
    assert!(
        nodes.iter().all(|n| n.starts_with(&format!("nsu={URI};"))),
        "only the machine's namespace: {nodes:?}"
    );
    assert!(
        toml_text.contains(
            "variables of namespace 0 (the server's own nodes) left out; --all includes them"
        ),
        "{toml_text}"
    );
    check_tags(dir.path(), &url, &toml_text).await;

    // --all brings the server's own nodes back (its current time is a tag
    // a gateway can read), still without arrays or structures.
    let (code, all_text, err) = plantgate(&[
        "opcua",
        "browse",
        &url,
        "--toml",
        "--all",
        "--source",
        "press",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(all_text.contains("node = \"i=2258\""), "{all_text}");
    assert!(
        all_text.contains("# skipped ServerStatus [i=2256]: a structure (ServerStatusDataType)"),
        "{all_text}"
    );
    assert!(!all_text.contains("left out"), "{all_text}");
    check_tags(dir.path(), &url, &all_text).await;
}
