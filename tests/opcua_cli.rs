//! What a commissioning engineer sees from the `plantgate` binary against an
//! OPC UA server (async-opcua, in-process): `opcua browse` as a tree and as
//! paste-ready TOML, and `run` turning OPC UA counter changes into the same
//! production events as a Modbus counter, while a rule fed a string says
//! which tag is wrong and the rest keeps running.
#![cfg(feature = "opcua")]

#[path = "support/opcua_peer.rs"]
mod opcua_peer;
mod support;

use opcua_peer::{TestServer, NS_URI};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

async fn plantgate(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(support::bin())
            .args(args)
            .env_remove("PLANTGATE_LOG")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_prints_a_tree_and_paste_ready_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let data = dir.path().join("gw");
    let data = data.to_str().expect("utf-8");
    let url = server.url();

    let (code, tree, err) =
        plantgate(&["opcua", "browse", &url, "--depth", "1", "--data-dir", data]).await;
    assert_eq!(code, 0, "{err}");
    // The stack's own warnings (a polite close is "Transport disconnected:
    // Good") are not for the person at the terminal.
    assert!(!err.contains("WARN"), "{err}");
    assert!(
        tree.contains(&format!("Press [nsu={NS_URI};s=Press] (Object)")),
        "{tree}"
    );
    assert!(tree.contains("Server [i=2253] (Object)"), "{tree}");

    let press = format!("nsu={NS_URI};s=Press");
    let (code, tree, err) = plantgate(&[
        "opcua",
        "browse",
        &url,
        "--node",
        &press,
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    for line in [
        format!("Counter [nsu={NS_URI};s=Press.Counter] UInt32 = 0"),
        format!("State [nsu={NS_URI};s=Press.State] Int32 = 1"),
        format!("Temperature [nsu={NS_URI};s=Press.Temperature] Double = 20"),
        format!("Recipe [nsu={NS_URI};s=Press.Recipe] String = \"R-100\""),
        format!("Oven [nsu={NS_URI};i=1001] Double = 180"),
    ] {
        assert!(
            tree.lines().any(|l| l == line),
            "missing {line:?} in:\n{tree}"
        );
    }

    let (code, toml_text, err) = plantgate(&[
        "opcua",
        "browse",
        &url,
        "--node",
        &press,
        "--toml",
        "--source",
        "oven1",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let parsed: toml::Table = toml::from_str(&toml_text).expect("valid TOML");
    let tags = parsed["tags"].as_array().expect("[[tags]]");
    assert_eq!(tags.len(), 5, "{toml_text}");
    let counter = tags
        .iter()
        .find(|t| t["node"].as_str() == Some(&format!("nsu={NS_URI};s=Press.Counter")))
        .expect("counter entry");
    assert_eq!(counter["name"].as_str(), Some("counter"));
    assert_eq!(counter["source"].as_str(), Some("oven1"));

    // Pasted under a source of that name, the entries are a valid tag map.
    let config = format!(
        "[gateway]\nid = \"gw\"\n[[sources]]\nname = \"oven1\"\nkind = \"opcua\"\nendpoint = \"{url}\"\n{toml_text}\n[odoo]\ndry_run = true\n"
    );
    plantgate::config::parse(&config, &dir.path().join("gw.toml")).expect("pasted tags validate");

    // A node that does not parse is a clear error, not a crash.
    let (code, _, err) = plantgate(&[
        "opcua",
        "browse",
        &url,
        "--node",
        "Press",
        "--data-dir",
        data,
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("not in a standard notation"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opcua_counter_changes_become_production_and_a_string_counter_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let config = dir.path().join("gw.toml");
    let status = opcua_peer::free_port();
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
id = "gw1"
data_dir = "{data}"

[status]
listen = "127.0.0.1:{status}"

[[sources]]
name = "press"
kind = "opcua"
endpoint = "{url}"
publishing_interval = "50ms"

[[tags]]
name = "parts"
source = "press"
node = "nsu={NS_URI};s=Press.Counter"

[[tags]]
name = "recipe"
source = "press"
node = "nsu={NS_URI};s=Press.Recipe"

[[events]]
kind = "production"
name = "parts"
tag = "parts"
workcenter = "PRESS1"
report_parts = 1

[[events]]
kind = "production"
name = "recipe_parts"
tag = "recipe"
workcenter = "PRESS1"

[odoo]
dry_run = true
"#,
            data = dir.path().join("data").display(),
            url = server.url(),
        ),
    )
    .expect("config");
    let mut child = Command::new(support::bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start plantgate run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = format!("http://127.0.0.1:{status}");
    support::eventually(Duration::from_secs(10), "the counter's baseline", || {
        let base = base.clone();
        async move {
            let m = support::get(&format!("{base}/metrics")).await?;
            (support::metric(&m, "plantgate_samples_total{source=\"press\"}")? >= 2.0).then_some(())
        }
    })
    .await;
    let counter = server.node("Press.Counter");
    let mut produced = Vec::new();
    // Each change only after the one before was printed, so a slow machine
    // cannot merge them into one sample.
    for value in [3u32, 7] {
        server.set(&counter, value);
        let read = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("on the work order running at work center") {
                    return Some(line);
                }
            }
            None
        };
        let line = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("a production event printed for counter {value}"));
        produced.push(line);
    }
    assert!(
        produced[0].contains("\"PRESS1\"") && produced[0].contains(") + 3 on"),
        "{produced:?}"
    );
    assert!(produced[1].contains(") + 4 on"), "{produced:?}");
    let _ = child.start_kill();
    let _ = child.wait().await;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr");
    let complaint = stderr
        .lines()
        .find(|l| l.contains("not a non-negative integer"))
        .unwrap_or_else(|| panic!("no complaint about the string counter in:\n{stderr}"));
    assert!(complaint.contains("tag=recipe"), "{complaint}");
    assert!(complaint.contains("rule=recipe_parts"), "{complaint}");
}
