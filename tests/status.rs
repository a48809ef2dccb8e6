//! Operating a gateway through its status listener: latency governance
//! (a lane past its target is alerted and cleared), the bearer token off
//! loopback, TLS, and /metrics as a Prometheus parser reads it.

mod support;

use std::time::Duration;
use support::press::{self, wait_metric};
use support::{cli, eventually, free_port, get, metric, STATE};

const CRITICAL_BREACHED: &str = r#"plantgate_lane_sla_breached{sink="odoo",lane="critical"}"#;

async fn status_json(base: &str) -> serde_json::Value {
    let text = get(&format!("{base}/status")).await.expect("/status");
    serde_json::from_str(&text).expect("status json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_past_its_target_is_alerted_and_cleared() {
    let rig = press::start("\n[store.lanes.critical]\ntarget = \"1s\"\n", "127.0.0.1:0").await;
    let base = rig.base.clone();
    wait_metric(&base, r#"plantgate_samples_total{source="press1"}"#, 2.0).await;
    assert_eq!(
        metric(
            &get(&format!("{base}/metrics")).await.expect("metrics"),
            CRITICAL_BREACHED
        ),
        Some(0.0),
        "every lane is watched from the start"
    );

    // Odoo goes away; the press stops: the stop waits in the critical lane.
    rig.odoo.stop().await;
    rig.regs.set_u16(STATE, 2);
    wait_metric(&base, CRITICAL_BREACHED, 1.0).await;
    let s = status_json(&base).await;
    let late = s["lanes_past_target"].as_array().expect("list");
    assert!(
        late.iter()
            .any(|b| b["sink"] == "odoo" && b["lane"] == "critical"),
        "{s}"
    );
    let m = get(&format!("{base}/metrics")).await.expect("metrics");
    assert_eq!(
        metric(
            &m,
            r#"plantgate_lane_sla_breached{sink="odoo",lane="normal"}"#
        ),
        Some(0.0),
        "an empty lane is never late"
    );

    // Odoo is back: the stop is delivered, the breach clears.
    rig.odoo.resume().await;
    eventually(Duration::from_secs(30), "the breach to clear", || {
        let base = base.clone();
        async move {
            let m = get(&format!("{base}/metrics")).await?;
            (metric(&m, CRITICAL_BREACHED)? == 0.0).then_some(())
        }
    })
    .await;
    assert_eq!(rig.odoo.productivity().len(), 1, "the stop reached Odoo");
    let s = status_json(&base).await;
    assert_eq!(s["lanes_past_target"], serde_json::json!([]));
    let lat = s["delivery_latency"].as_array().expect("latency");
    let started = lat
        .iter()
        .find(|l| l["kind"] == "downtime_started")
        .unwrap_or_else(|| panic!("no latency for the stop: {s}"));
    assert!(
        started["p99_seconds"].as_f64().expect("p99") > 1.0,
        "the stop's latency includes the outage: {started}"
    );
}

/// Write a token file and point the config's `[status]` at it.
fn with_token(text: String, dir: &std::path::Path, token: &str) -> String {
    let path = dir.join("status.token");
    std::fs::write(&path, format!("{token}\n")).expect("token");
    text.replacen(
        "[status]\n",
        &format!("[status]\ntoken_file = \"{}\"\n", path.display()),
        1,
    )
}

async fn status_code(url: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_everything_but_healthz_needs_the_token() {
    plantgate::sinks::odoo::http::install_crypto_provider();
    let port = free_port();
    let rig = press::start_edited(
        |t, dir| with_token(t, dir, "tok-123"),
        &format!("0.0.0.0:{port}"),
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/status", "/metrics", "/queue", "/dlq"] {
        let url = format!("{base}{path}");
        assert_eq!(status_code(&url, None).await, 401, "{path} without a token");
        assert_eq!(
            status_code(&url, Some("tok-12")).await,
            401,
            "{path}, wrong token"
        );
        assert_eq!(
            status_code(&url, Some("tok-123")).await,
            200,
            "{path} with it"
        );
    }
    let resp = reqwest::get(format!("{base}/status")).await.expect("get");
    assert_eq!(
        resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    eventually(Duration::from_secs(30), "/healthz without a token", || {
        let url = format!("{base}/healthz");
        async move { (status_code(&url, None).await == 200).then_some(()) }
    })
    .await;
    // The page is open (it holds no data; it asks /status with the token).
    let page = reqwest::get(format!("{base}/")).await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<title>plantgate</title>"));

    // The CLI reads the token from the same config.
    let cfg = rig.config_path();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli(&cfg, &["queue", "stats", "--json"]))
            .await
            .expect("cli");
    assert_eq!(code, 0, "queue stats on the running gateway: {err}");
    let stats: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(stats["sinks"]["odoo"].is_object(), "{stats}");
}

#[test]
fn check_refuses_a_network_listener_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = support::press_config(
        dir.path(),
        "127.0.0.1:1",
        "http://127.0.0.1:1",
        "0.0.0.0:9811",
    );
    let path = dir.path().join("gw.toml");
    let err = plantgate::config::parse(&text, &path)
        .expect_err("a network listener without a token")
        .to_string();
    assert!(
        err.contains("gw.toml:7:10: the status listener on 0.0.0.0:9811 is reachable from the network: set token_file"),
        "{err}"
    );
    let ok = with_token(text, dir.path(), "t");
    plantgate::config::parse(&ok, &path).expect("with a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_https_and_the_cli() {
    plantgate::sinks::odoo::http::install_crypto_provider();
    let port = free_port();
    let rig = press::start_edited(
        |t, dir| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params =
                rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
                    .expect("params");
            let cert = params.self_signed(&key).expect("cert");
            let cert_path = dir.join("status.pem");
            let key_path = dir.join("status.key");
            std::fs::write(&cert_path, cert.pem()).expect("cert");
            std::fs::write(&key_path, key.serialize_pem()).expect("key");
            t.replacen(
                "[status]\n",
                &format!(
                    "[status]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                    cert_path.display(),
                    key_path.display()
                ),
                1,
            )
        },
        &format!("127.0.0.1:{port}"),
    )
    .await;
    let pem = std::fs::read(rig.dir.path().join("status.pem")).expect("pem");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("cert")])
        .build()
        .expect("client");
    let resp = client
        .get(format!("https://127.0.0.1:{port}/status"))
        .send()
        .await
        .expect("https");
    assert_eq!(resp.status().as_u16(), 200);
    let s: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(s["gateway"], "gw1");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/status"))
            .await
            .is_err(),
        "plain HTTP gets no answer from a TLS listener"
    );
    let untrusting = reqwest::Client::new()
        .get(format!("https://127.0.0.1:{port}/status"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client that does not trust the certificate is refused"
    );

    let cfg = rig.config_path();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || cli(&cfg, &["queue", "stats", "--json"]))
            .await
            .expect("cli");
    assert_eq!(code, 0, "queue stats over TLS: {err}");
    assert!(out.contains("\"odoo\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_read_by_a_prometheus_parser() {
    let rig = press::start("", "127.0.0.1:0").await;
    let base = rig.base.clone();
    // One stop, delivered: the latency histogram then has a series.
    rig.regs.set_u16(STATE, 2);
    wait_metric(
        &base,
        r#"plantgate_events_delivered_total{sink="odoo"}"#,
        1.0,
    )
    .await;
    let text = get(&format!("{base}/metrics")).await.expect("metrics");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse");
    let samples = &scrape.samples;
    let find = |name: &'static str| samples.iter().filter(move |s| s.metric == name);
    for name in [
        "plantgate_queue_depth",
        "plantgate_queue_oldest_age_seconds",
        "plantgate_queue_age_target_seconds",
        "plantgate_dlq_depth",
        "plantgate_lane_sla_breached",
        "plantgate_samples_total",
        "plantgate_events_delivered_total",
        "plantgate_modbus_requests_total",
    ] {
        assert!(find(name).next().is_some(), "{name} missing from:\n{text}");
    }
    for name in ["process_resident_memory_bytes", "process_open_fds"] {
        let v = find(name).next().map(|s| s.value.clone());
        assert!(
            matches!(v, Some(prometheus_parse::Value::Gauge(x)) if x > 0.0),
            "{name}: {v:?}"
        );
    }
    let latency = find("plantgate_delivery_latency_seconds")
        .find(|s| s.labels.get("kind") == Some("downtime_started"))
        .unwrap_or_else(|| panic!("no latency histogram for the stop:\n{text}"));
    assert!(
        matches!(&latency.value, prometheus_parse::Value::Histogram(b) if !b.is_empty()),
        "{latency:?}"
    );
    assert!(
        matches!(
            find("plantgate_modbus_response_seconds")
                .next()
                .map(|s| &s.value),
            Some(prometheus_parse::Value::Histogram(_))
        ),
        "response times are a histogram"
    );
    // Conventions: counters end in _total, units are in the names.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        if kind == "counter" {
            let bare = |l: &&str| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            };
            assert!(
                !text.lines().any(|l| bare(&l)),
                "counter {name} has a sample not named {name}_total"
            );
        }
        if kind == "histogram" {
            assert!(
                name.ends_with("_seconds"),
                "histogram {name} names its unit"
            );
        }
    }
}

/// The opening tag of the first element carrying `attr`, e.g. `<tr class="late" data-lane="critical">`.
fn tag_with<'a>(dom: &'a str, attr: &str) -> &'a str {
    let at = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no element with {attr} in the page:\n{dom}"));
    let start = dom[..at].rfind('<').expect("tag start");
    let end = at + dom[at..].find('>').expect("tag end");
    &dom[start..=end]
}

/// The page as Debian's chromium renders it, scripts run (virtual time
/// lets its refresh loop fetch /status); a screenshot is kept under target/.
async fn render_in_chromium(url: &str, screenshot: &std::path::Path) -> String {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "the status page test needs Debian's chromium: apt-get install chromium (.ci/run does)"
    );
    let profile = tempfile::tempdir().expect("profile");
    let run = |extra: Vec<String>| {
        let profile = profile.path().to_path_buf();
        let url = url.to_string();
        async move {
            let out = tokio::process::Command::new(chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("--virtual-time-budget=8000")
                .args(extra)
                .arg(url)
                .output();
            tokio::time::timeout(Duration::from_secs(120), out)
                .await
                .expect("chromium within 2 minutes")
                .expect("run chromium")
        }
    };
    let dom = run(vec!["--dump-dom".into()]).await;
    assert!(
        dom.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = run(vec![
        format!("--screenshot={}", screenshot.display()),
        "--window-size=1280,1100".into(),
    ])
    .await;
    assert!(
        shot.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    String::from_utf8_lossy(&dom.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_sources_lanes_and_sinks_in_a_browser() {
    let port = free_port();
    let rig = press::start_edited(
        |t, dir| with_token(t, dir, "page-token") + "\n[store.lanes.critical]\ntarget = \"1s\"\n",
        &format!("0.0.0.0:{port}"),
    )
    .await;
    let authed = |path: &'static str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth("page-token")
                .send()
                .await
                .ok()?;
            resp.text().await.ok()
        }
    };
    eventually(Duration::from_secs(30), "a few samples", || async {
        let m = authed("/metrics").await?;
        metric(&m, r#"plantgate_samples_total{source="press1"}"#).filter(|v| *v >= 2.0)
    })
    .await;
    // Odoo away and the press stopped: the critical lane goes past its target.
    rig.odoo.stop().await;
    rig.regs.set_u16(STATE, 2);
    eventually(
        Duration::from_secs(30),
        "the critical lane late",
        || async {
            let m = authed("/metrics").await?;
            metric(&m, CRITICAL_BREACHED).filter(|v| *v >= 1.0)
        },
    )
    .await;
    let status: serde_json::Value =
        serde_json::from_str(&authed("/status").await.expect("status")).expect("json");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let dom =
        render_in_chromium(&format!("http://127.0.0.1:{port}/#token=page-token"), &shot).await;
    assert!(dom.contains(r#"<span id="gateway">gw1</span>"#), "{dom}");
    let hash = status["config_hash"].as_str().expect("hash");
    assert!(
        dom.contains(&format!(r#"<span id="config">{}</span>"#, &hash[..12])),
        "{dom}"
    );
    let source = tag_with(&dom, r#"data-source="press1""#);
    assert!(source.contains(r#"class="ok""#), "{source}");
    assert!(dom.contains("<td>connected</td>"), "{dom}");
    let critical = tag_with(&dom, r#"data-lane="critical""#);
    assert!(
        critical.contains(r#"class="late""#),
        "the late lane is red: {critical}"
    );
    let normal = tag_with(&dom, r#"data-lane="normal""#);
    assert!(
        normal.contains(r#"class="ok""#),
        "an empty lane is green: {normal}"
    );
    let sink = tag_with(&dom, r#"data-sink="odoo"><td>odoo</td><td>"#);
    assert!(
        !sink.contains(r#"class="ok""#),
        "the sink that cannot deliver is not green: {sink}"
    );
    assert!(
        !dom.contains(r#"id="problem" style="display: block"#),
        "{dom}"
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG"),
        "a PNG screenshot at {}",
        shot.display()
    );

    // Without the token the page says how to give it, and shows no data.
    let bare = shot.with_file_name("status-page-no-token.png");
    let dom = render_in_chromium(&format!("http://127.0.0.1:{port}/"), &bare).await;
    assert!(dom.contains("this listener needs its token"), "{dom}");
    assert!(!dom.contains(r#"data-source="press1""#), "{dom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_out_of_its_valid_range_makes_the_tag_bad_not_an_event() {
    const TEMP: u16 = 106;
    let rig = press::start(
        &format!(
            "\n[[tags]]\nname = \"oven_temp\"\nsource = \"press1\"\nregister = {TEMP}\nmin = 0.0\nmax = 300.0\n"
        ),
        "127.0.0.1:0",
    )
    .await;
    let base = rig.base.clone();
    rig.regs.set_u16(TEMP, 412);
    let s = eventually(Duration::from_secs(30), "the tag reported bad", || async {
        let s = status_json(&base).await;
        s["sources"]["press1"]["bad_tags"]["oven_temp"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    assert_eq!(s, "value outside the valid range [0, 300]");
    rig.regs.set_u16(TEMP, 250);
    eventually(Duration::from_secs(30), "the tag good again", || async {
        let s = status_json(&base).await;
        s["sources"]["press1"]["bad_tags"]
            .as_object()
            .is_some_and(|m| !m.contains_key("oven_temp"))
            .then_some(())
    })
    .await;
}
