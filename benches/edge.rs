//! The edge alone, on one core (`cargo bench --bench edge`; `-- throughput`
//! for the throughput alone).
//!
//! 1. Throughput: samples through a deadband (the source's conditioning)
//!    and then the edge's rules — a part counter, a machine state and an
//!    alarm with an on-delay — in the proportions a press line gives
//!    (a third each), with a tick every 250 ms of sample time. Reports
//!    samples/s and events produced; then again with the state rules'
//!    `debounce` and running/idle/down `intervals` on.
//! 2. Memory per configured tag: the bytes an edge with 10,000 tags (a
//!    third each counter, state and alarm rules, and each tag's
//!    conditioning) holds beyond its config, counted by the allocator, per
//!    tag. (Resident memory cannot tell: the edge reuses what parsing the
//!    config freed.)
//! 3. The tag-value tap the edge feeds for the MQTT sink: the same
//!    samples offered in the edge's batches of 512 with a third of the
//!    tags selected, and nobody taking them (always full: the
//!    drop-oldest path). Reports ns per sample offered.

use plantgate::config::{self, Config};
use plantgate::edge::{Edge, Mono, Now, Output};
use plantgate::model::{Millis, Quality, Sample, Value};
use plantgate::sinks::tap::TagTap;
use plantgate::sources::filter::{Filter, Verdict};
use plantgate::tags::{TagId, TagTable};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The system allocator, keeping a count of the bytes in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// count is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const START: i64 = 1_780_272_000_000;

/// A config of `lines` press lines: counter, state and temperature tags,
/// each with its rule; the temperature has a deadband.
fn config(lines: usize, intervals: bool) -> Config {
    let state_extra = if intervals {
        "debounce = \"200ms\"\nintervals = true\n"
    } else {
        ""
    };
    let mut text = String::from(
        "[gateway]\nid = \"bench\"\n[[sources]]\nname = \"plc\"\nkind = \"modbus_tcp\"\naddress = \"127.0.0.1:502\"\n",
    );
    for i in 0..lines {
        let r = (i * 4) % 60_000;
        let _ = write!(
            text,
            "[[tags]]\nname = \"parts{i}\"\nsource = \"plc\"\nregister = {r}\ntype = \"u32\"\n\
             [[tags]]\nname = \"state{i}\"\nsource = \"plc\"\nregister = {}\n\
             [[tags]]\nname = \"temp{i}\"\nsource = \"plc\"\nregister = {}\nmin_change = 0.5\n\
             [[events]]\nkind = \"production\"\nname = \"p{i}\"\ntag = \"parts{i}\"\nworkcenter = \"WC{i}\"\n\
             [[events]]\nkind = \"downtime\"\nname = \"d{i}\"\ntag = \"state{i}\"\nworkcenter = \"WC{i}\"\nrunning = [1]\nmin_duration = \"3s\"\n{state_extra}\
             [[events]]\nkind = \"alarm\"\nname = \"a{i}\"\ntag = \"temp{i}\"\nequipment = \"EQ{i}\"\nabove = 260.0\nclear_at = 255.0\nfor = \"10s\"\n",
            r + 2,
            r + 3
        );
    }
    text.push_str("[odoo]\ndry_run = true\n");
    config::parse(&text, std::path::Path::new("bench.toml")).expect("bench config")
}

fn now(ms: i64) -> Now {
    Now {
        wall: Millis(START + ms),
        mono: Mono(ms as u64),
    }
}

fn throughput(intervals: bool) {
    const LINES: usize = 100;
    const SAMPLES: usize = 3_000_000;
    let cfg = config(LINES, intervals);
    let mut edge = Edge::new(
        &cfg.gateway.id,
        &cfg.tag_table,
        &cfg.events,
        Default::default(),
    );
    let mut filters: Vec<Filter> = cfg
        .tags
        .iter()
        .map(|t| Filter::new(t.conditioning.clone()))
        .collect();
    // The samples, made before the clock starts: a press line counts a
    // part, stops now and then, and its oven wanders around the limit.
    let samples: Vec<(usize, Sample)> = (0..SAMPLES)
        .map(|n| {
            let line = n % LINES;
            let step = n / LINES;
            let kind = step % 3;
            let t = (step / 3) as i64 * 100;
            let (i, value) = match kind {
                0 => (line * 3, Value::UInt(step as u64 / 3)),
                1 => (
                    line * 3 + 1,
                    Value::Int(if (step / 300) % 7 == 6 { 3 } else { 1 }),
                ),
                _ => (
                    line * 3 + 2,
                    Value::Float(250.0 + ((step / 3) % 40) as f64 * 0.4),
                ),
            };
            (
                i,
                Sample {
                    tag: cfg.tags[i].id,
                    unconfigured: None,
                    value,
                    quality: Quality::Good,
                    time: Millis(START + t),
                    server_time: None,
                    receipt: None,
                },
            )
        })
        .collect();
    let mut events = 0usize;
    let mut next_tick = 250;
    let started = Instant::now();
    let mut out = Output::default();
    for (i, s) in &samples {
        let t = s.time.0 - START;
        while t >= next_tick {
            edge.tick(now(next_tick), &mut out);
            next_tick += 250;
        }
        match filters[*i].apply(s.value.clone(), s.time) {
            Verdict::Send(v) => {
                let sample = Sample {
                    value: v,
                    ..s.clone()
                };
                edge.apply(&sample, now(t), &mut out);
            }
            Verdict::Hold | Verdict::Bad(_) => {}
        }
        if out.events.len() + out.states.len() > 1024 {
            events += out.events.len();
            out = Output::default();
        }
    }
    events += out.events.len();
    let secs = started.elapsed().as_secs_f64();
    let what = if intervals {
        "counter + state with debounce and intervals + alarm"
    } else {
        "counter + state + alarm"
    };
    println!(
        "edge: {SAMPLES} samples (deadband + {what}, {LINES} lines) in {secs:.2} s: {:.0} samples/s, {events} events",
        SAMPLES as f64 / secs
    );
}

fn tap() {
    const SAMPLES: usize = 3_000_000;
    let tags = ["parts", "state", "temp"];
    let names: Vec<String> = (0..300)
        .map(|n| format!("{}{}", tags[n % 3], (n / 3) % 100))
        .collect();
    let table = Arc::new(TagTable::new(names.iter().map(|n| n.as_str())));
    let samples: Vec<Sample> = (0..SAMPLES)
        .map(|n| Sample {
            tag: table.id(&names[n % 300]).unwrap_or(TagId::UNCONFIGURED),
            unconfigured: None,
            value: Value::Float(n as f64),
            quality: Quality::Good,
            time: Millis(START + n as i64),
            server_time: None,
            receipt: None,
        })
        .collect();
    let tap = TagTap::new(vec!["temp*".into()], table);
    let batches: Vec<&[Sample]> = samples.chunks(512).collect();
    let started = Instant::now();
    for b in &batches {
        tap.offer(b);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "tag tap: {} samples offered (a third selected, buffer full) in {secs:.2} s: {:.0} ns per sample, {} dropped",
        samples.len(),
        secs * 1e9 / samples.len() as f64,
        tap.dropped()
    );
}

fn memory_per_tag() {
    const LINES: usize = 3_334;
    let cfg = config(LINES, false);
    let tags = cfg.tags.len();
    let before = IN_USE.load(Ordering::Relaxed);
    let edge = Edge::new(
        &cfg.gateway.id,
        &cfg.tag_table,
        &cfg.events,
        Default::default(),
    );
    let filters: Vec<Filter> = cfg
        .tags
        .iter()
        .map(|t| Filter::new(t.conditioning.clone()))
        .collect();
    let bytes = IN_USE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "edge memory: {tags} tags with their rules and conditioning: {} KiB, {:.0} bytes per tag",
        bytes / 1024,
        bytes as f64 / tags as f64
    );
    drop((edge, filters));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("edge: bench");
        return;
    }
    tap();
    // Memory first, before the throughput run's allocations are freed.
    // `-- throughput` skips it (its 100,000-tag config takes minutes to
    // load), for comparing builds.
    if !std::env::args().any(|a| a == "throughput") {
        memory_per_tag();
    }
    throughput(false);
    throughput(true);
}
