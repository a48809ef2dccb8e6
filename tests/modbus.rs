//! The Modbus source against real servers: tokio-modbus's server (the
//! simulated PLC), pymodbus over TCP and over RTU on a pseudo-terminal pair,
//! and a device that fails on demand. Proves every data type and byte order,
//! block coalescing, illegal-address isolation, and that each fault is
//! reported, contained and recovered from.

mod support;

use plantgate::config::modbus::ByteOrder;
use plantgate::config::{self, SourceKind};
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::model::{Quality, Sample, Value};
use plantgate::sources::modbus::{codec, Poller};
use plantgate::status::Telemetry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::eventually;
use support::faulty_device::{FaultyDevice, Mode};
use tokio::sync::{mpsc, watch};

/// One tag of the type/order matrix: its TOML, its registers, what it reads as.
struct Case {
    name: String,
    toml: String,
    table: &'static str,
    address: u16,
    words: Vec<u16>,
    bits: Vec<bool>,
    expect: Value,
}

const ORDERS: [(&str, ByteOrder); 4] = [
    ("ABCD", ByteOrder::Abcd),
    ("CDAB", ByteOrder::Cdab),
    ("BADC", ByteOrder::Badc),
    ("DCBA", ByteOrder::Dcba),
];

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut next = 0u16;
    let mut numeric = |ty: &str, bytes: Vec<u8>, expect: Value| {
        for (oname, order) in ORDERS {
            let words = codec::encode(&bytes, order);
            let name = format!("{ty}_{}_{}", oname.to_lowercase(), out.len());
            out.push(Case {
                toml: format!("register = {next}\ntype = \"{ty}\"\norder = \"{oname}\""),
                name,
                table: "holding",
                address: next,
                words: words.clone(),
                bits: vec![],
                expect: expect.clone(),
            });
            next += words.len() as u16 + 1;
        }
    };
    numeric("u16", 65535u16.to_be_bytes().to_vec(), Value::UInt(65535));
    numeric(
        "i16",
        i16::MIN.to_be_bytes().to_vec(),
        Value::Int(i64::from(i16::MIN)),
    );
    numeric(
        "u32",
        u32::MAX.to_be_bytes().to_vec(),
        Value::UInt(u64::from(u32::MAX)),
    );
    numeric(
        "i32",
        i32::MIN.to_be_bytes().to_vec(),
        Value::Int(i64::from(i32::MIN)),
    );
    numeric(
        "u64",
        u64::MAX.to_be_bytes().to_vec(),
        Value::UInt(u64::MAX),
    );
    numeric("i64", i64::MIN.to_be_bytes().to_vec(), Value::Int(i64::MIN));
    numeric(
        "f32",
        f32::INFINITY.to_be_bytes().to_vec(),
        Value::Float(f64::INFINITY),
    );
    numeric(
        "f32",
        f32::NEG_INFINITY.to_be_bytes().to_vec(),
        Value::Float(f64::NEG_INFINITY),
    );
    numeric(
        "f32",
        f32::NAN.to_be_bytes().to_vec(),
        Value::Float(f64::NAN),
    );
    numeric("f32", 21.5f32.to_be_bytes().to_vec(), Value::Float(21.5));
    numeric(
        "f64",
        (-1234.5678f64).to_be_bytes().to_vec(),
        Value::Float(-1234.5678),
    );
    numeric(
        "f64",
        f64::NAN.to_be_bytes().to_vec(),
        Value::Float(f64::NAN),
    );
    let base = 1000u16;
    out.push(Case {
        name: "text".into(),
        toml: format!("register = {base}\ntype = \"string\"\nlength = 5"),
        table: "holding",
        address: base,
        words: codec::encode(b"PRESS-07\0\0", ByteOrder::Abcd),
        bits: vec![],
        expect: Value::Text("PRESS-07".into()),
    });
    out.push(Case {
        name: "flag_bit3".into(),
        toml: format!("register = {}\ntype = \"bool\"\nbit = 3", base + 10),
        table: "holding",
        address: base + 10,
        words: vec![0b1000],
        bits: vec![],
        expect: Value::Bool(true),
    });
    out.push(Case {
        name: "scaled_temp".into(),
        toml: format!(
            "register = {}\nscale = 0.1\noffset = -5.0\nengineering_unit = \"°C\"",
            base + 20
        ),
        table: "holding",
        address: base + 20,
        words: vec![250],
        bits: vec![],
        expect: Value::Float(20.0),
    });
    out.push(Case {
        name: "modicon_input".into(),
        toml: "address = \"30008\"\ntype = \"i16\"".into(),
        table: "input",
        address: 7,
        words: vec![(-7i16) as u16],
        bits: vec![],
        expect: Value::Int(-7),
    });
    out.push(Case {
        name: "door_closed".into(),
        toml: "table = \"coil\"\nregister = 3".into(),
        table: "coils",
        address: 3,
        words: vec![],
        bits: vec![true],
        expect: Value::Bool(true),
    });
    out.push(Case {
        name: "estop".into(),
        toml: "address = \"100017\"".into(),
        table: "discrete",
        address: 16,
        words: vec![],
        bits: vec![false],
        expect: Value::Bool(false),
    });
    out
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) if x.is_nan() && y.is_nan() => true,
        _ => a == b,
    }
}

fn tag_map(source_toml: &str, tags: &[(String, String)]) -> String {
    let mut t = format!("[gateway]\nid = \"t\"\n[odoo]\ndry_run = true\n[[sources]]\nname = \"dev\"\n{source_toml}\n");
    for (name, body) in tags {
        let _ = write!(t, "[[tags]]\nname = \"{name}\"\nsource = \"dev\"\n{body}\n");
    }
    t
}

/// Pollers for every source of a tag map, feeding a shared latest-sample table.
struct Run {
    latest: Arc<Mutex<HashMap<String, Sample>>>,
    telemetry: Arc<Telemetry>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    fn start(text: &str) -> Run {
        let cfg = config::parse(text, Path::new("t.toml")).expect("valid tag map");
        let telemetry = Arc::new(Telemetry::default());
        let (tx, mut rx) = mpsc::channel::<Sample>(10_000);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for s in &cfg.sources {
            let SourceKind::Modbus(m) = &s.kind else {
                panic!("{} is not a Modbus source", s.name)
            };
            let tags = cfg
                .tags
                .iter()
                .filter(|t| t.source == s.name)
                .cloned()
                .collect();
            telemetry.source_added(&s.name);
            let p = Poller::new(
                s.name.clone(),
                m.clone(),
                tags,
                tx.clone(),
                telemetry.clone(),
            );
            tasks.push(tokio::spawn(p.run(stop_rx.clone())));
        }
        let latest = Arc::new(Mutex::new(HashMap::new()));
        let l = latest.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                l.lock().expect("lock").insert(s.tag.clone(), s);
            }
        }));
        Run {
            latest,
            telemetry,
            stop,
            tasks,
        }
    }

    fn sample(&self, tag: &str) -> Option<Sample> {
        self.latest.lock().expect("lock").get(tag).cloned()
    }

    async fn all_read(&self, n: usize) -> HashMap<String, Sample> {
        let latest = self.latest.clone();
        eventually(Duration::from_secs(15), "a sample of every tag", || {
            let m = latest.lock().expect("lock").clone();
            async move { (m.len() >= n).then_some(m) }
        })
        .await
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for t in self.tasks.into_iter().rev().skip(1) {
            let _ = t.await;
        }
    }
}

fn assert_matrix(got: &HashMap<String, Sample>, cases: &[Case]) {
    for c in cases {
        let s = got
            .get(&c.name)
            .unwrap_or_else(|| panic!("no sample for {}", c.name));
        assert_eq!(s.quality, Quality::Good, "{}", c.name);
        assert!(
            same(&s.value, &c.expect),
            "{}: read {:?}, expected {:?}",
            c.name,
            s.value,
            c.expect
        );
    }
}

fn matrix_tags(cases: &[Case]) -> Vec<(String, String)> {
    cases
        .iter()
        .map(|c| (c.name.clone(), c.toml.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_against_tokio_modbus() {
    let cases = cases();
    let regs = Registers::default();
    for c in &cases {
        match c.table {
            "holding" => regs.set_holding(c.address, &c.words),
            "input" => regs.set_input(c.address, &c.words),
            "coils" => regs.set_coil(c.address, c.bits[0]),
            _ => regs.set_discrete(c.address, c.bits[0]),
        }
    }
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc");
    let text = tag_map(
        &format!(
            "kind = \"modbus_tcp\"\naddress = \"{}\"\npoll_interval = \"100ms\"",
            plc.addr
        ),
        &matrix_tags(&cases),
    );
    let run = Run::start(&text);
    let got = run.all_read(cases.len()).await;
    assert_matrix(&got, &cases);
    run.stop().await;
}

// ---- pymodbus, an independent stack -------------------------------------

fn pymodbus_data(cases: &[Case]) -> serde_json::Value {
    let mut data: HashMap<&str, Vec<serde_json::Value>> = HashMap::new();
    for c in cases {
        let entry = if c.words.is_empty() {
            serde_json::json!([c.address, c.bits])
        } else {
            serde_json::json!([c.address, c.words])
        };
        data.entry(c.table).or_default().push(entry);
    }
    serde_json::json!(data)
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pymodbus(args: &[&str], data: &Path) -> Peer {
    use std::io::{BufRead, BufReader};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pymodbus_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with pymodbus (.ci/run installs it)");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("read READY");
    assert_eq!(line.trim(), "READY", "pymodbus server did not start");
    Peer(child)
}

/// Two connected pseudo-terminals (a null-modem cable), made by socat.
async fn pty_pair(dir: &Path) -> (Peer, std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("ttyA"), dir.join("ttyB"));
    let socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (.ci/run installs it)");
    let peer = Peer(socat);
    let (ca, cb) = (a.clone(), b.clone());
    eventually(Duration::from_secs(5), "socat's pty pair", || {
        let ok = ca.exists() && cb.exists();
        async move { ok.then_some(()) }
    })
    .await;
    (peer, a, b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_against_pymodbus_tcp() {
    let cases = cases();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data.json");
    std::fs::write(&data, pymodbus_data(&cases).to_string()).expect("data");
    let port = free_port();
    let _peer = pymodbus(&["--tcp", &port.to_string()], &data);
    let text = tag_map(
        &format!(
            "kind = \"modbus_tcp\"\naddress = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\""
        ),
        &matrix_tags(&cases),
    );
    let run = Run::start(&text);
    let got = run.all_read(cases.len()).await;
    assert_matrix(&got, &cases);
    // pymodbus answers ILLEGAL DATA ADDRESS between its blocks; the planner
    // bridged some of those gaps, so good values prove the split worked too.
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_against_pymodbus_rtu_over_a_pty_pair() {
    let cases = cases();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, a, b) = pty_pair(dir.path()).await;
    let data = dir.path().join("data.json");
    std::fs::write(&data, pymodbus_data(&cases).to_string()).expect("data");
    let _peer = pymodbus(&["--rtu", &a.display().to_string(), "--unit", "7"], &data);
    let text = tag_map(
        &format!(
            "kind = \"modbus_rtu\"\ndevice = \"{}\"\nbaud = 19200\nparity = \"none\"\nunit = 7\npoll_interval = \"200ms\"\ntimeout = \"1s\"",
            b.display()
        ),
        &matrix_tags(&cases),
    );
    let run = Run::start(&text);
    let got = run.all_read(cases.len()).await;
    assert_matrix(&got, &cases);
    run.stop().await;
}

// ---- coalescing --------------------------------------------------------

/// The fewest contiguous blocks for sorted (start, width) items, by dynamic
/// programming: independent of the planner's greedy algorithm.
fn minimum_blocks(items: &[(u32, u32)], max: u32, gap: u32) -> usize {
    let n = items.len();
    let mut best = vec![usize::MAX; n + 1];
    best[0] = 0;
    for i in 0..n {
        if best[i] == usize::MAX {
            continue;
        }
        let start = items[i].0;
        let mut end = start;
        for j in i..n {
            if j > i && items[j].0 > end + gap {
                break;
            }
            end = end.max(items[j].0 + items[j].1);
            if end - start > max {
                break;
            }
            best[j + 1] = best[j + 1].min(best[i] + 1);
        }
    }
    best[n]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tags_take_the_minimum_number_of_requests() {
    // 1,000 tags over holding registers 0..5000, mixed widths, irregular gaps.
    let mut tags = Vec::new();
    let mut items = Vec::new();
    let mut addr = 0u32;
    for i in 0..1000u32 {
        let (ty, width) = if i % 3 == 0 { ("u32", 2) } else { ("u16", 1) };
        tags.push((
            format!("t{i}"),
            format!("register = {addr}\ntype = \"{ty}\""),
        ));
        items.push((addr, width));
        addr += width + (i * 7919 % 8);
    }
    assert!(addr <= 5000, "spread over 0..5000, ends at {addr}");
    let min = minimum_blocks(&items, 125, 4);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), Registers::default())
        .await
        .expect("plc");
    let text = tag_map(
        &format!(
            "kind = \"modbus_tcp\"\naddress = \"{}\"\npoll_interval = \"50ms\"\nmax_gap = 4",
            plc.addr
        ),
        &tags,
    );
    let run = Run::start(&text);
    let telemetry = run.telemetry.clone();
    eventually(Duration::from_secs(15), "five full cycles", || {
        let n = telemetry
            .snapshot()
            .sources
            .get("dev")
            .map_or(0, |s| s.samples);
        async move { (n >= 5000).then_some(()) }
    })
    .await;
    run.stop().await;
    // Shutdown lands between cycles, so both counts cover whole cycles.
    let samples = telemetry.snapshot().sources["dev"].samples;
    let cycles = samples / 1000;
    assert_eq!(samples % 1000, 0);
    assert_eq!(
        plc.registers.requests(),
        cycles * min as u64,
        "{min} requests per cycle expected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_address_blinds_only_its_own_tag() {
    let regs = Registers::default();
    let words: Vec<u16> = (0..40).map(|i| 100 + i).collect();
    regs.set_holding(0, &words);
    regs.make_illegal(17);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc");
    let tags: Vec<(String, String)> = (0..40)
        .map(|i| (format!("r{i}"), format!("register = {i}")))
        .collect();
    let run = Run::start(&tag_map(
        &format!(
            "kind = \"modbus_tcp\"\naddress = \"{}\"\npoll_interval = \"50ms\"",
            plc.addr
        ),
        &tags,
    ));
    let got = run.all_read(40).await;
    for i in 0..40u16 {
        let s = &got[&format!("r{i}")];
        if i == 17 {
            assert!(
                matches!(&s.quality, Quality::Bad(why) if why.contains("IllegalDataAddress") && why.contains("holding 17")),
                "{s:?}"
            );
        } else {
            assert_eq!(
                (&s.quality, &s.value),
                (&Quality::Good, &Value::UInt(u64::from(100 + i))),
                "r{i}"
            );
        }
    }
    let bad = run.telemetry.snapshot().bad_tags;
    assert_eq!(bad.len(), 1, "{bad:?}");
    // The split is kept: later cycles cost a few requests, not a re-split.
    let before = plc.registers.requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_cycle = (plc.registers.requests() - before) as f64 / 10.0;
    assert!(per_cycle <= 8.0, "{per_cycle} requests per cycle");
    run.stop().await;
}

// ---- faults ------------------------------------------------------------

async fn good_again(run: &Run, tag: &str) {
    eventually(Duration::from_secs(20), "recovery", || {
        let s = run.sample(tag);
        let snap = run.telemetry.snapshot();
        let ok = s.is_some_and(|s| s.quality == Quality::Good)
            && snap.bad_tags.is_empty()
            && snap.sources.get("flaky").is_some_and(|f| f.connected);
        async move { ok.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_reported_contained_and_recovered() {
    let regs = Registers::default();
    regs.set_holding(0, &[42, 43]);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc");
    let flaky = FaultyDevice::start(plc.addr).await;
    let text = format!(
        "[gateway]\nid = \"t\"\n[odoo]\ndry_run = true\n\
         [[sources]]\nname = \"flaky\"\nkind = \"modbus_tcp\"\naddress = \"{}\"\npoll_interval = \"50ms\"\ntimeout = \"300ms\"\nbackoff_max = \"1s\"\n\
         [[sources]]\nname = \"steady\"\nkind = \"modbus_tcp\"\naddress = \"{}\"\npoll_interval = \"50ms\"\n\
         [[tags]]\nname = \"f\"\nsource = \"flaky\"\nregister = 0\n\
         [[tags]]\nname = \"s\"\nsource = \"steady\"\nregister = 1\n",
        flaky.addr, plc.addr
    );
    let run = Run::start(&text);
    run.all_read(2).await;
    good_again(&run, "f").await;

    for (mode, expect) in [
        (Mode::Silent, "no answer within 300ms"),
        (Mode::Garbage, "garbled answer"),
        (Mode::HangUp, "connection closed by the device"),
    ] {
        flaky.set(mode);
        let steady_before = run.telemetry.snapshot().sources["steady"].samples;
        let what = format!("{mode:?} reported on the tag as {expect:?}");
        let why = eventually(Duration::from_secs(10), &what, || {
            let s = run.sample("f");
            async move {
                match s.map(|s| s.quality) {
                    Some(Quality::Bad(why)) if why.contains(expect) => Some(why),
                    _ => None,
                }
            }
        })
        .await;
        assert!(why.contains(expect), "{mode:?}: {why}");
        let status = run.telemetry.snapshot();
        assert!(
            status.sources["flaky"]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(expect)),
            "{mode:?}: {:?}",
            status.sources["flaky"]
        );
        // The other device keeps flowing meanwhile.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let steady = run.telemetry.snapshot().sources["steady"].clone();
        assert!(
            steady.connected && steady.samples >= steady_before + 4,
            "{mode:?}: {steady:?}"
        );
        assert_eq!(run.sample("s").map(|s| s.value), Some(Value::UInt(43)));
        flaky.set(Mode::Forward);
        good_again(&run, "f").await;
    }

    // A device that is gone: connection refused, then back on its port.
    let port = flaky.addr.port();
    drop(flaky);
    let why = eventually(Duration::from_secs(10), "refused reported", || {
        let e = run.telemetry.snapshot().sources["flaky"].last_error.clone();
        async move { e.filter(|e| e.contains("refused")) }
    })
    .await;
    assert!(
        !run.telemetry.snapshot().sources["flaky"].connected,
        "{why}"
    );
    let _back = SimulatedPlc::start(([127, 0, 0, 1], port).into(), plc.registers.clone())
        .await
        .expect("same port");
    good_again(&run, "f").await;
    let m = run.telemetry.encode();
    for result in ["ok", "timeout", "error"] {
        assert!(
            m.contains(&format!(
                "plantgate_modbus_requests_total{{source=\"flaky\",result=\"{result}\"}}"
            )),
            "{result}: {m}"
        );
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_on_a_serial_line_does_not_stall_the_live_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, a, b) = pty_pair(dir.path()).await;
    let data = dir.path().join("data.json");
    std::fs::write(&data, r#"{"holding": [[0, [11, 12]]]}"#).expect("data");
    let _peer = pymodbus(
        &[
            "--rtu",
            &a.display().to_string(),
            "--unit",
            "3",
            "--silent-unit",
            "9",
        ],
        &data,
    );
    let text = tag_map(
        &format!(
            "kind = \"modbus_rtu\"\ndevice = \"{}\"\nparity = \"none\"\nbaud = 19200\nunit = 3\npoll_interval = \"100ms\"\ntimeout = \"250ms\"\nbackoff_max = \"5s\"",
            b.display()
        ),
        &[
            ("live".into(), "register = 0".into()),
            ("dead".into(), "register = 1\nunit_id = 9".into()),
        ],
    );
    let run = Run::start(&text);
    let why = eventually(Duration::from_secs(10), "the dead unit reported", || {
        let s = run.sample("dead");
        async move {
            match s.map(|s| s.quality) {
                Some(Quality::Bad(why)) => Some(why),
                _ => None,
            }
        }
    })
    .await;
    assert!(why.contains("unit 9"), "{why}");
    // Over 3 s the live unit keeps its 100 ms rate give or take the few
    // timed-out probes of the dead one, which back off.
    let before = run.telemetry.snapshot().sources["dev"].samples;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = run.telemetry.snapshot().sources["dev"].samples;
    assert!(
        after - before >= 20,
        "live unit starved: {} samples in 3 s",
        after - before
    );
    assert_eq!(
        run.sample("live").map(|s| (s.quality, s.value)),
        Some((Quality::Good, Value::UInt(11)))
    );
    let m = run.telemetry.encode();
    let timeouts = m
        .lines()
        .find(|l| {
            l.starts_with("plantgate_modbus_requests_total{source=\"dev\",result=\"timeout\"}")
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        (1.0..=8.0).contains(&timeouts),
        "dead unit probed with backoff, not every cycle: {timeouts}"
    );
    run.stop().await;
}
