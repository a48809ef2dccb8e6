//! `plantgate config try NEW --config CURRENT`, the shadow run, against a
//! real device peer (the simulated PLC, a tokio-modbus server): a scripted
//! press makes parts, stops with fault code 310 and runs again. A
//! candidate that maps code 310 to another loss is reported with exactly
//! that difference (on the stop's two events) and nothing else, exit 1;
//! the same config tried against itself is "no difference", exit 0. Odoo
//! gets no call and the store is never created.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::press::Peers;
use support::{eventually, COUNTER, STATE};

const FAULT: u16 = 103;

/// The press config with a fault-code tag whose code 310 is `loss`.
fn config(peers: &Peers, dir: &Path, loss: &str) -> String {
    peers
        .config(dir, "127.0.0.1:0")
        // Announced at the next reading of the stop: the script holds it
        // for polls, not for a time.
        .replacen("min_duration = \"300ms\"", "min_duration = \"1ms\"", 1)
        .replacen(
            "running = [1]\n",
            &format!("running = [1]\nreason_tag = \"fault_code\"\n[[events.code]]\ncode = 310\nloss = \"{loss}\"\ndescription = \"Motor overload (310)\"\n"),
            1,
        )
        .replacen(
            "[odoo]",
            &format!("[[tags]]\nname = \"fault_code\"\nsource = \"press1\"\nregister = {FAULT}\n\n[odoo]"),
            1,
        )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn spawn_try(current: &Path, candidate: &Path) -> Child {
    Command::new(support::bin())
        .args(["config", "try"])
        .arg(candidate)
        .arg("--config")
        .arg(current)
        .args(["--for", "10m"])
        .env("PLANTGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plantgate config try")
}

/// Wait until the PLC has answered `n` more read requests: the try has
/// polled (and so seen) what was set before. A try that ended is a failure
/// with what it said.
async fn polls(peers: &Peers, child: &mut Child, n: u64) {
    let start = peers.regs.requests();
    eventually(Duration::from_secs(30), "the try polling the press", || {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the try ended early ({status}): {err}");
        }
        let done = peers.regs.requests() >= start + n;
        async move { done.then_some(()) }
    })
    .await;
}

/// Parts, a stop with fault 310, running again, more parts.
async fn script(peers: &Peers, child: &mut Child) {
    polls(peers, child, 3).await;
    for _ in 0..3 {
        peers.regs.set_u32(COUNTER, peers.regs.get_u32(COUNTER) + 1);
        polls(peers, child, 2).await;
    }
    // The PLC latches the fault code, then the press stops.
    peers.regs.set_u16(FAULT, 310);
    polls(peers, child, 2).await;
    peers.regs.set_u16(STATE, 3);
    polls(peers, child, 4).await;
    peers.regs.set_u16(STATE, 1);
    polls(peers, child, 2).await;
    peers.regs.set_u16(FAULT, 0);
    for _ in 0..2 {
        peers.regs.set_u32(COUNTER, peers.regs.get_u32(COUNTER) + 1);
        polls(peers, child, 2).await;
    }
}

/// End the try early (Ctrl-C): it reports what it saw.
fn interrupt(child: Child) -> (i32, String, String) {
    let ok = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -INT");
    let out = child.wait_with_output().expect("wait for the try");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_loss_mapping_is_exactly_the_difference_reported() {
    let peers = Peers::start(1000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let current = write(
        dir.path(),
        "gateway.toml",
        &config(&peers, dir.path(), "mrp.block_reason2"),
    );
    let candidate = write(
        dir.path(),
        "gateway.new.toml",
        &config(&peers, dir.path(), "mrp.block_reason4"),
    );
    let mut child = spawn_try(&current, &candidate);
    script(&peers, &mut child).await;
    let (code, out, err) = interrupt(child);
    assert_eq!(code, 1, "differences exit 1:\n{out}{err}");

    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("tried for ") && lines[0].contains(" samples (press1: "),
        "{out}"
    );
    let parts = lines
        .iter()
        .find(|l| l.starts_with("  = rule parts (production): "))
        .unwrap_or_else(|| panic!("production the same in both:\n{out}"));
    assert!(parts.ends_with(" events, the same"), "{out}");
    assert!(
        !parts.contains(": 0 events"),
        "the parts were seen: {parts}"
    );
    assert!(
        lines.contains(&"  ~ rule stops (downtime): current sends 2 events, candidate 2; 2 differ"),
        "{out}"
    );
    // Exactly the stop's two events, and only their loss.
    let differences: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("      "))
        .collect();
    assert_eq!(differences.len(), 2, "{out}");
    for (line, kind) in differences
        .iter()
        .zip(["downtime_started", "downtime_ended"])
    {
        assert!(
            line.starts_with(&format!("      ~ {kind} gw1-stops-")),
            "{out}"
        );
        assert!(line.contains(" at PRESS1 ("), "{line}");
        assert_eq!(
            line.split_once(" UTC): ").map(|(_, fields)| fields),
            Some("loss \"mrp.block_reason2\" → \"mrp.block_reason4\""),
            "only the loss differs: {line}"
        );
    }
    assert_eq!(lines.last(), Some(&"differences in rules: stops"), "{out}");
    assert!(
        !lines.iter().any(|l| l.starts_with("note:")),
        "both read the same tags: {out}"
    );

    // A dry run: nothing reached Odoo, and no store was made.
    assert!(peers.odoo.calls().is_empty(), "{:?}", peers.odoo.calls());
    assert!(
        !dir.path().join("data").exists(),
        "the store is not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_config_tried_is_no_difference() {
    let peers = Peers::start(1000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(&peers, dir.path(), "mrp.block_reason2");
    let current = write(dir.path(), "gateway.toml", &text);
    let candidate = write(dir.path(), "gateway.new.toml", &text);
    let mut child = spawn_try(&current, &candidate);
    script(&peers, &mut child).await;
    let (code, out, err) = interrupt(child);
    assert_eq!(code, 0, "the same exits 0:\n{out}{err}");
    assert!(
        out.contains("  = rule stops (downtime): 2 events, the same\n"),
        "{out}"
    );
    assert!(out.ends_with("\nno difference\n"), "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("      ")),
        "no event listed: {out}"
    );
}

#[test]
fn an_invalid_candidate_is_refused_with_where_it_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let current =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/examples/press-line.toml");
    let text = std::fs::read_to_string(&current).expect("example");
    let bad = write(
        dir.path(),
        "new.toml",
        &text.replace("register = 0\n", "register = 70000\n"),
    );
    let out = Command::new(support::bin())
        .args(["config", "try"])
        .arg(&bad)
        .arg("--config")
        .arg(&current)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("new.toml:"), "FILE:LINE:COL: {err}");
    assert!(out.stdout.is_empty());
}
