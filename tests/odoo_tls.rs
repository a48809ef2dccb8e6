//! TLS to Odoo, against the fake Odoo serving HTTPS with a test PKI: a
//! certificate from a CA the gateway does not trust is refused in words
//! that say what to fix, and nothing is delivered; a public-key pin that
//! does not match is refused naming the pin and the key seen, the right pin
//! delivers; an Odoo behind mutual TLS refuses a gateway without a client
//! certificate and takes one with it; plain http is warned about at start.

mod support;

use plantgate::config::{self, OdooConfig};
use plantgate::model::{Event, EventBody, Millis, Production};
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::DeliveryError;
use plantgate::store::{migrate::NoUpgrade, Store, StoreOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};
use support::fake_odoo::{FakeOdoo, TestPki};

const SINK: &str = "odoo";

struct Rig {
    odoo: FakeOdoo,
    store: Store,
    wo: i64,
    dir: tempfile::TempDir,
}

/// An HTTPS fake Odoo 19 (mutual TLS when `mtls`) with a work order in
/// progress at PRESS1.
async fn rig(pki: &TestPki, mtls: bool) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_tls(19, pki.acceptor(mtls)).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    let store = Store::open(
        &dir.path().join("store"),
        &[SINK],
        &StoreOptions::default(),
        &NoUpgrade,
    )
    .expect("store");
    Rig {
        odoo,
        store,
        wo,
        dir,
    }
}

fn odoo_config(dir: &Path, url: &str, extra: &str) -> OdooConfig {
    let text = support::press_config(dir, "127.0.0.1:1", url, "127.0.0.1:0") + extra;
    config::parse(&text, &dir.join("gw.toml"))
        .expect("config")
        .odoo
}

fn parts(id: &str, quantity: u64) -> Event {
    Event {
        id: id.into(),
        rule: "parts".into(),
        time: Millis::now(),
        body: EventBody::Production(Production {
            workcenter: "PRESS1".into(),
            quantity,
            counter_from: 0,
            counter_to: quantity,
        }),
    }
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
