//! The Modbus source against real servers: tokio-modbus's server (the
//! simulated PLC), pymodbus over TCP and over RTU on a pseudo-terminal pair,
//! and a device that fails on demand. Proves every data type and byte order,
//! block coalescing, illegal-address isolation, and that each fault is
//! reported, contained and recovered from.

mod support;

use plantgate::config;
use plantgate::config::modbus::{ByteOrder, Parity};
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::model::{Quality, Sample, Value};
use plantgate::sources::modbus::{codec, probe, Poller};
use plantgate::status::{PlanBlock, Telemetry};
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
        let metrics = Arc::new(plantgate::sources::modbus::ModbusMetrics::default());
        let telemetry = Arc::new(Telemetry::new(|r| metrics.register(r)));
        let (tx, mut rx) = mpsc::channel::<Sample>(10_000);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for s in &cfg.sources {
            let Some(m) = s.kind.as_modbus() else {
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
                cfg.tag_table.clone(),
                tx.clone(),
                telemetry.clone(),
                metrics.clone(),
            );
            tasks.push(tokio::spawn(p.run(stop_rx.clone())));
        }
        let latest = Arc::new(Mutex::new(HashMap::new()));
        let l = latest.clone();
        let names = cfg.tag_table.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                l.lock()
                    .expect("lock")
                    .insert(s.name(&names).to_string(), s);
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

    /// Why `tag` is bad, once it is bad for a reason `accept` takes.
    async fn bad(&self, tag: &str, limit: Duration, accept: impl Fn(&str) -> bool) -> String {
        eventually(limit, tag, || {
            let s = self.sample(tag);
            let why = match s.map(|s| s.quality) {
                Some(Quality::Bad(why)) if accept(&why) => Some(why),
                _ => None,
            };
            async move { why }
        })
        .await
    }

    /// Wait for `n` more samples of `source` than it has now.
    async fn more_samples(&self, source: &str, n: u64, limit: Duration, what: &str) {
        let before = self.telemetry.snapshot().sources[source].samples;
        eventually(limit, what, || {
            let got = self.telemetry.snapshot().sources[source].samples;
            async move { (got >= before + n).then_some(()) }
        })
        .await;
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for t in self.tasks.into_iter().rev().skip(1) {
            let _ = t.await;
        }
    }
}

/// The holding registers r0..r`n` read good as 100 + i, but for
/// r`refused`, which is bad for a reason `why` takes.
fn assert_one_refused(
    got: &HashMap<String, Sample>,
    n: u16,
    refused: u16,
    why: impl Fn(&str) -> bool,
) {
    for i in 0..n {
        let s = &got[&format!("r{i}")];
        if i == refused {
            assert!(matches!(&s.quality, Quality::Bad(w) if why(w)), "{s:?}");
        } else {
            assert_eq!(
                (&s.quality, &s.value),
                (&Quality::Good, &Value::UInt(u64::from(100 + i))),
                "r{i}"
            );
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

/// A pymodbus server, steered over its stdin (see the script's doc).
struct Pymodbus {
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    _peer: Peer,
}

impl Pymodbus {
    /// Send one control command; returns its answer once it is in force.
    fn send(&mut self, command: &str) -> String {
        use std::io::{BufRead, Write};
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{command}").expect("write command");
            self.stdin.flush().expect("flush command");
            let mut line = String::new();
            self.stdout.read_line(&mut line).expect("read answer");
            line.trim().to_string()
        })
    }

    fn must(&mut self, command: &str) {
        let answer = self.send(command);
        assert_eq!(answer, "OK", "{command}");
    }

    /// Requests the server received for `unit`, and exception replies it sent.
    fn count(&mut self, unit: u8) -> (u64, u64) {
        let answer = self.send(&format!("count {unit}"));
        let n: Vec<u64> = answer
            .strip_prefix("COUNT ")
            .map(|r| r.split(' ').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        assert_eq!(n.len(), 2, "{answer}");
        (n[0], n[1])
    }
}

fn pymodbus(args: &[&str], data: &Path) -> Pymodbus {
    use std::io::{BufRead, BufReader};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pymodbus_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with pymodbus (.ci/run installs it)");
    let stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let peer = Peer(child);
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read READY");
    assert_eq!(line.trim(), "READY", "pymodbus server did not start");
    Pymodbus {
        stdin,
        stdout,
        _peer: peer,
    }
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
    assert_one_refused(&got, 40, 17, |why| {
        why.contains("IllegalDataAddress") && why.contains("holding 17")
    });
    let bad = run.telemetry.snapshot().bad_tags;
    assert_eq!(bad.len(), 1, "{bad:?}");
    // The split is kept: later cycles cost a few requests, not a re-split.
    // Counted over ten cycles the gateway made (40 samples each), however
    // long they take.
    let samples = |run: &Run| {
        run.telemetry
            .snapshot()
            .sources
            .values()
            .map(|s| s.samples)
            .sum::<u64>()
    };
    let (before, start) = (plc.registers.requests(), samples(&run));
    eventually(Duration::from_secs(30), "ten more cycles", || {
        let n = samples(&run);
        async move { (n >= start + 400).then_some(()) }
    })
    .await;
    let cycles = (samples(&run) - start) as f64 / 40.0;
    let per_cycle = (plc.registers.requests() - before) as f64 / cycles;
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
        let steady = eventually(Duration::from_secs(20), "the other device flowing", || {
            let s = run.telemetry.snapshot().sources["steady"].clone();
            async move { (s.connected && s.samples >= steady_before + 4).then_some(s) }
        })
        .await;
        assert!(steady.connected, "{mode:?}: {steady:?}");
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
    // While the live unit is read 20 more times, the dead one is probed
    // only a few times (it backs off): counted, not timed.
    let timeouts = |run: &Run| {
        run.telemetry
            .encode()
            .lines()
            .find(|l| {
                l.starts_with("plantgate_modbus_requests_total{source=\"dev\",result=\"timeout\"}")
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let probes_before = timeouts(&run);
    let before = run.telemetry.snapshot().sources["dev"].samples;
    eventually(
        Duration::from_secs(60),
        "20 more reads of the live unit",
        || {
            let n = run.telemetry.snapshot().sources["dev"].samples;
            async move { (n >= before + 20).then_some(()) }
        },
    )
    .await;
    let probes = timeouts(&run) - probes_before;
    assert!(
        probes <= 10.0,
        "the dead unit is probed with backoff, not every cycle: {probes} probes in 20 reads"
    );
    assert_eq!(
        run.sample("live").map(|s| (s.quality, s.value)),
        Some((Quality::Good, Value::UInt(11)))
    );
    assert!(timeouts(&run) >= 1.0, "the dead unit was probed");
    run.stop().await;
}

// ---- exceptions and garbled replies, against pymodbus -------------------

/// Ten u16 tags r0..r9 on holding 0..9 of unit 1 (one block), and the
/// server's data for them (100 + i).
fn ten_registers(dir: &Path) -> (std::path::PathBuf, Vec<(String, String)>) {
    let data = dir.join("data.json");
    let words: Vec<u16> = (0..10).map(|i| 100 + i).collect();
    std::fs::write(
        &data,
        serde_json::json!({ "holding": [[0, words]] }).to_string(),
    )
    .expect("data");
    let tags = (0..10)
        .map(|i| (format!("r{i}"), format!("register = {i}")))
        .collect();
    (data, tags)
}

/// The one planned block of unit 1 as `/status` shows it.
fn block_of(run: &Run) -> Option<PlanBlock> {
    run.telemetry
        .snapshot()
        .sources
        .get("dev")?
        .plan
        .as_ref()?
        .units
        .get(&1)?
        .first()
        .cloned()
}

async fn all_good(run: &Run, n: usize) {
    eventually(Duration::from_secs(20), "every tag good", || {
        let m = run.latest.lock().expect("lock").clone();
        let bad = run.telemetry.snapshot().bad_tags;
        let ok = m.len() >= n && bad.is_empty() && m.values().all(|s| s.quality == Quality::Good);
        async move { ok.then_some(()) }
    })
    .await;
}

/// Requests the server gets per poll of the ten-tag block, over 20 polls
/// counted by the samples the gateway took. The two counts are read a
/// moment apart at each end, so they may disagree by one request there.
async fn requests_per_poll(run: &Run, peer: &mut Pymodbus) -> (u64, u64) {
    let samples = |run: &Run| run.telemetry.snapshot().sources["dev"].samples;
    let (r0, _) = peer.count(1);
    let s0 = samples(run);
    eventually(Duration::from_secs(20), "20 more polls", || {
        let n = samples(run);
        async move { (n >= s0 + 200).then_some(()) }
    })
    .await;
    let (r1, _) = peer.count(1);
    let polls = (samples(run) - s0) / 10;
    (r1 - r0, polls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_failure_backs_the_unit_off_and_keeps_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, tags) = ten_registers(dir.path());
    let port = free_port();
    let mut peer = pymodbus(&["--tcp", &port.to_string()], &data);
    let run = Run::start(&tag_map(
        &format!(
            "kind = \"modbus_tcp\"\naddress = \"127.0.0.1:{port}\"\npoll_interval = \"50ms\"\ntimeout = \"500ms\"\nbackoff_max = \"1s\""
        ),
        &tags,
    ));
    all_good(&run, 10).await;

    // The device fails every read of the block for a while (3 refusals,
    // the unit backing off between them).
    peer.must("exception 1 holding 3 4");
    eventually(Duration::from_secs(20), "three refused reads", || {
        let (_, refused) = peer.count(1);
        async move { (refused >= 3).then_some(()) }
    })
    .await;
    // Every tag of the unit turns bad with the device's word for it.
    eventually(Duration::from_secs(10), "the unit's tags bad", || {
        let all = (0..10).all(|i| {
            run.sample(&format!("r{i}")).is_some_and(|s| {
                matches!(&s.quality, Quality::Bad(why) if why == "unit 1: device reports ServerDeviceFailure (0x04)")
            })
        });
        async move { all.then_some(()) }
    })
    .await;
    let block = block_of(&run).expect("plan");
    assert_eq!((block.start, block.count, block.tags), (0, 10, 10));
    assert!(block.split.is_none(), "{block:?}");

    peer.must("clear");
    all_good(&run, 10).await;
    let (requests, polls) = requests_per_poll(&run, &mut peer).await;
    assert!(
        requests <= polls + 2,
        "{requests} requests in {polls} polls: the unsplit plan reads one block per poll"
    );
    assert_eq!(block_of(&run).map(|b| b.requests()), Some(1));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_address_is_isolated_then_healed_at_the_reprobe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, tags) = ten_registers(dir.path());
    let port = free_port();
    let mut peer = pymodbus(&["--tcp", &port.to_string()], &data);
    // The device map lacks register 7 from the start.
    peer.must("exception 1 holding 7 2");
    let run = Run::start(&tag_map(
        &format!(
            "kind = \"modbus_tcp\"\naddress = \"127.0.0.1:{port}\"\npoll_interval = \"50ms\"\nreprobe_interval = \"1s\""
        ),
        &tags,
    ));
    let got = run.all_read(10).await;
    assert_one_refused(&got, 10, 7, |why| {
        why == "device exception IllegalDataAddress (0x02) at holding 7 (unit 1)"
    });
    let bad = run.telemetry.snapshot().bad_tags;
    assert_eq!(bad.len(), 1, "{bad:?}");
    // The plan is published once the poll that split the block is done.
    let split = eventually(Duration::from_secs(10), "the split on /status", || {
        let s = block_of(&run).and_then(|b| b.split);
        async move { s }
    })
    .await;
    assert_eq!(split.why, "IllegalDataAddress (0x02) for holding 0..10");
    assert_eq!(
        split.refused.get("r7").map(String::as_str),
        Some("IllegalDataAddress (0x02)")
    );
    assert!(split.reads.iter().any(|r| r.tags == ["r7"]), "{split:?}");
    let covered: usize = split.reads.iter().map(|r| r.tags.len()).sum();
    assert_eq!(covered, 10, "{split:?}");
    // As /status shows it.
    let plan = run.telemetry.snapshot().sources["dev"]
        .plan
        .clone()
        .expect("plan");
    let json = plan.to_json();
    assert_eq!(
        json["1"]["blocks"][0]["split"]["refused"]["r7"],
        "IllegalDataAddress (0x02)"
    );
    assert_eq!(json["1"]["requests_per_poll"], split.reads.len());

    // A re-probe while the address is still refused keeps the split.
    let first = split.reprobe_at;
    let again = eventually(Duration::from_secs(15), "a re-probe", || {
        let s = block_of(&run).and_then(|b| b.split);
        async move { s.filter(|s| s.reprobe_at > first) }
    })
    .await;
    assert!(again.refused.contains_key("r7"), "{again:?}");

    // The device map is fixed: the next re-probe reads the block whole.
    peer.must("clear");
    eventually(Duration::from_secs(15), "the block whole again", || {
        let whole = block_of(&run).is_some_and(|b| b.split.is_none());
        let r7 = run.sample("r7").map(|s| (s.quality, s.value));
        let ok = whole && r7 == Some((Quality::Good, Value::UInt(107)));
        async move { ok.then_some(()) }
    })
    .await;
    all_good(&run, 10).await;
    let (requests, polls) = requests_per_poll(&run, &mut peer).await;
    assert!(
        requests <= polls + 2,
        "{requests} requests in {polls} polls: healed, the block is one read"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_rtu_replies_are_named_and_the_live_unit_keeps_flowing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_socat, a, b) = pty_pair(dir.path()).await;
    let data = dir.path().join("data.json");
    std::fs::write(&data, r#"{"holding": [[0, [11, 12]]]}"#).expect("data");
    let mut peer = pymodbus(
        &[
            "--rtu",
            &a.display().to_string(),
            "--unit",
            "2",
            "--unit",
            "4",
            "--unit",
            "6",
            "--unit",
            "7",
        ],
        &data,
    );
    peer.must("fault 2 garbage");
    peer.must("fault 4 wrong-unit");
    peer.must("fault 6 bad-crc");
    // The live unit is read last in each cycle, after the failing ones.
    let text = tag_map(
        &format!(
            "kind = \"modbus_rtu\"\ndevice = \"{}\"\nparity = \"none\"\nbaud = 19200\nunit = 7\npoll_interval = \"100ms\"\ntimeout = \"250ms\"\nbackoff_max = \"2s\"",
            b.display()
        ),
        &[
            ("garbage".into(), "register = 0\nunit_id = 2".into()),
            ("wrong_unit".into(), "register = 0\nunit_id = 4".into()),
            ("bad_crc".into(), "register = 0\nunit_id = 6".into()),
            ("live".into(), "register = 0".into()),
        ],
    );
    let run = Run::start(&text);
    let mut seen = Vec::new();
    for (tag, expect) in [
        (
            "garbage",
            "unit 2: garbled answer: not a Modbus reply to function 0x03 of unit 2; 6 bytes",
        ),
        (
            "wrong_unit",
            "unit 4: garbled answer: reply from unit 44 to a request for unit 4; 7 bytes",
        ),
        ("bad_crc", "unit 6: garbled answer: bad CRC (frame says 0x"),
    ] {
        let why = run.bad(tag, Duration::from_secs(15), |_| true).await;
        assert!(why.starts_with(expect), "{tag}: {why}");
        seen.push(why);
    }
    assert!(seen[2].ends_with("; 7 bytes"), "{}", seen[2]);
    // The live unit keeps flowing meanwhile.
    run.more_samples(
        "dev",
        20,
        Duration::from_secs(20),
        "20 more samples of the live unit",
    )
    .await;
    assert_eq!(
        run.sample("live").map(|s| (s.quality, s.value)),
        Some((Quality::Good, Value::UInt(11)))
    );
    let m = run.telemetry.encode();
    assert!(
        support::metric(
            &m,
            "plantgate_modbus_requests_total{source=\"dev\",result=\"garbled\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "{m}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_tcp_replies_are_named_and_another_device_keeps_flowing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data.json");
    std::fs::write(&data, r#"{"holding": [[0, [42, 43]]]}"#).expect("data");
    let port = free_port();
    let mut peer = pymodbus(
        &["--tcp", &port.to_string(), "--unit", "1", "--unit", "2"],
        &data,
    );
    let text = format!(
        "[gateway]\nid = \"t\"\n[odoo]\ndry_run = true\n\
         [[sources]]\nname = \"flaky\"\nkind = \"modbus_tcp\"\naddress = \"127.0.0.1:{port}\"\npoll_interval = \"50ms\"\ntimeout = \"300ms\"\nbackoff_max = \"1s\"\n\
         [[sources]]\nname = \"steady\"\nkind = \"modbus_tcp\"\naddress = \"127.0.0.1:{port}\"\nunit = 2\npoll_interval = \"50ms\"\n\
         [[tags]]\nname = \"f\"\nsource = \"flaky\"\nregister = 0\n\
         [[tags]]\nname = \"s\"\nsource = \"steady\"\nregister = 1\n"
    );
    let run = Run::start(&text);
    run.all_read(2).await;
    good_again(&run, "f").await;
    for (fault, expect) in [
        // Noticed only at the deadline: the header announces more bytes.
        (
            "garbage",
            "unit 1: garbled answer: not a Modbus TCP frame (protocol id 0xDEAD, not 0); 8 bytes",
        ),
        (
            "wrong-unit",
            "unit 1: garbled answer: reply from unit 41 to a request for unit 1; 11 bytes",
        ),
        ("wrong-transaction", "unit 1: garbled answer: transaction id "),
        (
            "wrong-function",
            "unit 1: garbled answer: function code 0x04 in the reply to 0x03; 11 bytes",
        ),
        (
            "bad-length",
            "unit 1: garbled answer: length field announces 3 PDU bytes, the reply needs 4; 11 bytes",
        ),
    ] {
        peer.must(&format!("fault 1 {fault}"));
        let why = run
            .bad("f", Duration::from_secs(10), |why| why.starts_with(expect))
            .await;
        let status = run.telemetry.snapshot();
        assert_eq!(
            status.sources["flaky"].last_error.as_deref(),
            Some(why.as_str()),
            "{fault}"
        );
        // The other device on the same server keeps flowing meanwhile.
        run.more_samples("steady", 5, Duration::from_secs(10), "steady samples")
            .await;
        assert_eq!(
            run.sample("s").map(|s| (s.quality, s.value)),
            Some((Quality::Good, Value::UInt(43)))
        );
        // `plantgate modbus read` says the same.
        let probe = probe::Probe {
            target: format!("tcp://127.0.0.1:{port}"),
            unit: 1,
            item: "holding:0".into(),
            count: 1,
            data_type: None,
            order: None,
            length: 0,
            baud: 9600,
            parity: Parity::None,
            timeout: Duration::from_millis(300),
        };
        match probe::run(&probe).await {
            Err(probe::ProbeError::Garbled(why)) => assert!(
                expect.strip_prefix("unit 1: ").is_some_and(|e| why.starts_with(e)),
                "{fault}: {why}"
            ),
            other => panic!("{fault}: {other:?}"),
        }
        peer.must("clear");
        good_again(&run, "f").await;
    }
    run.stop().await;
}
