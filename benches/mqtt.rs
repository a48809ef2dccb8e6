//! Load program for the MQTT source's decoding (`cargo bench --bench mqtt`).
//!
//! What each message costs the source on one core, without the network:
//! its topic matched against every tag's filter of a 100-tag map (fixed
//! topics and `+` filters naming tags from levels), then its JSON payload
//! decoded at the tag's pointer with a time pointer. Reports messages per
//! second over 1,000,000 messages.
//!
//! Then Sparkplug B: an edge node born with a device of 100 metrics
//! (aliases and types in its DBIRTH), and DDATA messages of 10 metrics by
//! alias each, in sequence: each message decoded (protobuf), its sequence
//! checked, its aliases resolved and values read as the birth's types, and
//! each metric mapped to its tag. Reports messages and metrics per second.

use plantgate::config::mqtt::{NameTemplate, Payload, TopicFilter, ValueType};
use plantgate::sources::mqtt::payload::decode;
use plantgate::sources::mqtt::sparkplug::proto::{self, datatype, Metric, MetricValue};
use plantgate::sources::mqtt::sparkplug::{Kind, Session};
use prost::Message;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

const MESSAGES: usize = 1_000_000;

fn main() {
    // 98 fixed topics and two wildcard entries, as a line's tag map might be.
    let mut tags: Vec<(TopicFilter, NameTemplate)> = (0..98)
        .map(|i| {
            let f = TopicFilter::parse(&format!("plant1/line1/m{i}/count")).expect("filter");
            let n = NameTemplate::parse(&format!("m{i}_count"), 0).expect("name");
            (f, n)
        })
        .collect();
    for (filter, name) in [("plant1/+/+/qc", "{1}_{2}_qc"), ("plant1/+/env", "{1}_env")] {
        let f = TopicFilter::parse(filter).expect("filter");
        let n = NameTemplate::parse(name, f.captures()).expect("name");
        tags.push((f, n));
    }
    let payload = Payload::Json {
        pointer: "/value".into(),
        time_pointer: Some("/ts".into()),
    };
    let topics: Vec<String> = (0..100)
        .map(|i| match i % 10 {
            0 => format!("plant1/line1/m{i}/qc"),
            _ => format!("plant1/line1/m{i}/count"),
        })
        .collect();
    let bodies: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            format!(
                r#"{{"value": {}, "ts": "2026-03-04T05:06:{:02}.250Z", "unit": "pcs"}}"#,
                1000 + i,
                i % 60
            )
            .into_bytes()
        })
        .collect();

    let start = Instant::now();
    let mut samples = 0usize;
    for k in 0..MESSAGES {
        let topic = &topics[k % topics.len()];
        let body = &bodies[k % bodies.len()];
        for (filter, name) in &tags {
            let Some(levels) = filter.matches(topic) else {
                continue;
            };
            let name = name.render(&levels);
            if let Ok(v) = decode(&payload, Some(ValueType::U32), body) {
                black_box((name, v));
                samples += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "mqtt decode+map: {MESSAGES} messages ({samples} samples) in {secs:.2} s = {:.0} messages/s on one core",
        MESSAGES as f64 / secs
    );
    sparkplug();
}

const SPARKPLUG_MESSAGES: usize = 500_000;

fn sparkplug() {
    let metric = |name: Option<String>, alias: u64, t: Option<u32>, v: u32| Metric {
        name,
        alias: Some(alias),
        datatype: t,
        value: Some(MetricValue::IntValue(v)),
        timestamp: Some(1_772_600_767_250),
        ..Default::default()
    };
    let encode = |seq: u64, metrics: Vec<Metric>| {
        proto::Payload {
            timestamp: Some(1_772_600_767_250),
            seq: Some(seq),
            metrics,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let mut session = Session::default();
    let now = std::time::Instant::now();
    let names: Vec<String> = (0..100)
        .map(|i| format!("Station{i}/Counts/Good"))
        .collect();
    session
        .handle(Kind::NBirth, None, &encode(0, vec![]), now)
        .expect("NBIRTH");
    let birth = (0..100)
        .map(|i| metric(Some(names[i].clone()), i as u64, Some(datatype::UINT32), 0))
        .collect();
    session
        .handle(Kind::DBirth, Some("press1"), &encode(1, birth), now)
        .expect("DBIRTH");
    // The reader's map: (device, metric) → tags.
    let tags: HashMap<(Option<String>, String), Vec<usize>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ((Some("press1".to_string()), n.clone()), vec![i]))
        .collect();
    // One message per seq value, sent in order: the sequence holds.
    let bodies: Vec<Vec<u8>> = (0..256u64)
        .map(|k| {
            let seq = (k + 2) % 256;
            let metrics = (0..10)
                .map(|j| metric(None, (k * 10 + j) % 100, None, (1000 + k) as u32))
                .collect();
            encode(seq, metrics)
        })
        .collect();
    let start = std::time::Instant::now();
    let mut samples = 0usize;
    for k in 0..SPARKPLUG_MESSAGES {
        let out = session
            .handle(Kind::DData, Some("press1"), &bodies[k % 256], now)
            .expect("DDATA");
        assert!(out.rebirth.is_none() && out.rebirth_held.is_none());
        for u in out.updates {
            if let (Some(t), Ok(v)) = (tags.get(&(u.device, u.metric)), u.reading) {
                black_box((t, v, u.time));
                samples += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sparkplug DDATA decode+map: {SPARKPLUG_MESSAGES} messages ({samples} metrics) in {secs:.2} s = {:.0} messages/s, {:.0} metrics/s on one core",
        SPARKPLUG_MESSAGES as f64 / secs,
        samples as f64 / secs
    );
}
