//! TLS to Odoo, against the fake Odoo serving HTTPS with a test PKI: a
//! certificate from a CA the gateway does not trust is refused in words
//! that say what to fix, and nothing is delivered; a public-key pin that
//! does not match is refused naming the pin and the key seen, the right pin
//! delivers; an Odoo behind mutual TLS refuses a gateway without a client
//! certificate and takes one with it; plain http is warned about at start;
//! and the whole gateway (the binary, reading a PLC) delivers over HTTPS
//! with the plant CA in `ca_file`, over JSON-2 (19) and JSON-RPC (16).

mod support;

use plantgate::model::{Event, Millis};
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::DeliveryError;
use plantgate::store::Store;
use std::path::Path;
use std::sync::{Arc, Mutex};
use support::fake_odoo::{FakeOdoo, TestPki};
use support::odoo_sink::{odoo_config, parts_at, sink_store, SINK};

struct Rig {
    odoo: FakeOdoo,
    store: Store,
    wo: i64,
    dir: tempfile::TempDir,
}

/// An HTTPS fake Odoo 19 (mutual TLS when `mtls`) with a work order in
/// progress at PRESS1.
async fn rig(pki: &TestPki, mtls: bool) -> Rig {
    rig_with(pki, 19, mtls).await
}

/// As [`rig`], as Odoo `version`.
async fn rig_with(pki: &TestPki, version: u8, mtls: bool) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_tls(version, pki.acceptor(mtls)).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    let store = sink_store(dir.path());
    Rig {
        odoo,
        store,
        wo,
        dir,
    }
}

fn parts(id: &str, quantity: u64) -> Event {
    parts_at("PRESS1", id, Millis::now(), quantity)
}

impl Rig {
    /// One delivery through a sink made from `extra` `[odoo]` keys.
    async fn deliver(&self, extra: &str, ev: &Event) -> Result<(), DeliveryError> {
        let cfg = odoo_config(self.dir.path(), &self.odoo.url(), extra);
        let mut sink = OdooSink::new(&cfg).expect("sink");
        sink.deliver(&self.store, SINK, ev).await
    }

    fn produced(&self) -> f64 {
        self.odoo.workorder(self.wo).expect("wo").qty_produced
    }
}

fn file_key(key: &str, path: &Path) -> String {
    format!("{key} = \"{}\"\n", path.display())
}

/// A refusal the runner pauses the sink on and retries (not a dead letter).
fn unreachable(r: Result<(), DeliveryError>) -> String {
    match r {
        Err(DeliveryError::Unreachable(why)) => why,
        other => panic!("expected a paused, retried delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_in_plain_words() {
    let pki = TestPki::new();
    let r = rig(&pki, false).await;
    // Neither the system roots nor another CA know the test CA.
    for extra in [String::new(), file_key("ca_file", &pki.other_ca_file)] {
        let why = unreachable(r.deliver(&extra, &parts("e1", 5)).await);
        assert!(
            why.contains("not signed by a CA this gateway trusts") && why.contains("set ca_file"),
            "{why}"
        );
    }
    assert!(r.odoo.calls().is_empty(), "no request got through");
    assert_eq!(r.produced(), 0.0);
    // The right CA: delivered.
    r.deliver(&file_key("ca_file", &pki.ca_file), &parts("e1", 5))
        .await
        .expect("delivered with the right CA");
    assert_eq!(r.produced(), 5.0);
}

#[tokio::test]
async fn a_pin_mismatch_is_refused_naming_the_pin_and_the_key_seen() {
    let pki = TestPki::new();
    let r = rig(&pki, false).await;
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let extra = file_key("ca_file", &pki.ca_file) + &format!("pin_sha256 = [\"{wrong}\"]\n");
    let why = unreachable(r.deliver(&extra, &parts("e1", 3)).await);
    assert!(why.contains(wrong), "names the pin: {why}");
    assert!(
        why.contains(&format!("sha256//{}", pki.server_pin)),
        "names the key seen: {why}"
    );
    assert!(r.odoo.calls().is_empty(), "no request got through");
    assert_eq!(r.produced(), 0.0);

    // The right pin (curl's sha256// form), among others: delivered.
    let extra = file_key("ca_file", &pki.ca_file)
        + &format!(
            "pin_sha256 = [\"{wrong}\", \"sha256//{}\"]\n",
            pki.server_pin
        );
    r.deliver(&extra, &parts("e1", 3))
        .await
        .expect("delivered with the right pin");
    assert_eq!(r.produced(), 3.0);
}

#[tokio::test]
async fn mutual_tls_refuses_a_gateway_without_a_client_certificate_and_takes_one_with_it() {
    let pki = TestPki::new();
    let r = rig(&pki, true).await;
    let ca = file_key("ca_file", &pki.ca_file);
    let why = unreachable(r.deliver(&ca, &parts("e1", 4)).await);
    assert!(why.contains("client_cert_file"), "says what to set: {why}");
    assert!(r.odoo.calls().is_empty(), "no request got through");
    assert_eq!(r.produced(), 0.0);

    let extra = ca
        + &file_key("client_cert_file", &pki.client_cert_file)
        + &file_key("client_key_file", &pki.client_key_file);
    r.deliver(&extra, &parts("e1", 4))
        .await
        .expect("delivered with the client certificate");
    assert_eq!(r.produced(), 4.0);
}

/// Log lines written while `f` runs on this thread, at debug level.
fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().expect("log buffer")).to_string();
    (out, text)
}

#[tokio::test]
async fn plain_http_is_warned_about_at_every_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = odoo_config(dir.path(), "http://127.0.0.1:1", "");
    for _ in 0..2 {
        let (sink, log) = captured(|| OdooSink::new(&cfg));
        sink.expect("sink");
        assert!(
            log.contains("WARN") && log.contains("plain http"),
            "warned: {log}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = odoo_config(dir.path(), "https://127.0.0.1:1", "");
    let (sink, log) = captured(|| OdooSink::new(&cfg));
    sink.expect("sink");
    assert!(!log.contains("plain http"), "no warning for https: {log}");
}

/// The whole gateway over HTTPS: the release binary reads the press
/// (a simulated PLC over Modbus TCP), and delivers to the fake Odoo serving
/// HTTPS with a certificate of the test CA named in `ca_file`; Odoo ends
/// up with exactly the parts made, and no plaintext warning is logged.
async fn the_gateway_delivers_over_https_with_a_plant_ca_on(version: u8) {
    use plantgate::demo::plc::{Registers, SimulatedPlc};
    use std::time::Duration;
    let pki = TestPki::new();
    let r = rig_with(&pki, version, false).await;
    let regs = Registers::default();
    regs.set_u32(support::COUNTER, 500);
    regs.set_u16(support::STATE, 1);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
        .await
        .expect("plc");
    let status = format!("127.0.0.1:{}", support::free_port());
    let text = support::press_config(r.dir.path(), &plc.addr.to_string(), &r.odoo.url(), &status)
        .replace("allow_plaintext = true\n", "")
        + &file_key("ca_file", &pki.ca_file);
    let config = r.dir.path().join("gw.toml");
    std::fs::write(&config, text).expect("config");
    let log_path = r.dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut gateway = std::process::Command::new(support::bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("PLANTGATE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gateway");
    let base = format!("http://{status}");
    support::eventually(Duration::from_secs(20), "counter read", || async {
        let s = support::get(&format!("{base}/status")).await?;
        let v: serde_json::Value = serde_json::from_str(&s).ok()?;
        (v["sources"]["press1"]["samples"].as_u64()? >= 4).then_some(())
    })
    .await;
    for _ in 0..6 {
        regs.set_u32(support::COUNTER, regs.get_u32(support::COUNTER) + 2);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    support::eventually(Duration::from_secs(30), "12 parts in Odoo", || async {
        (r.produced() == 12.0).then_some(())
    })
    .await;
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert!(!r.odoo.calls().is_empty());
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(!log.contains("plain http"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_delivers_over_https_with_a_plant_ca_json2_19() {
    the_gateway_delivers_over_https_with_a_plant_ca_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_delivers_over_https_with_a_plant_ca_jsonrpc_16() {
    the_gateway_delivers_over_https_with_a_plant_ca_on(16).await;
}
