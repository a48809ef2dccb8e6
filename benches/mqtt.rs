//! Load program for the MQTT source's decoding (`cargo bench --bench mqtt`).
//!
//! What each message costs the source on one core, without the network:
//! its topic matched against every tag's filter of a 100-tag map (fixed
//! topics and `+` filters naming tags from levels), then its JSON payload
//! decoded at the tag's pointer with a time pointer. Reports messages per
//! second over 1,000,000 messages.

use plantgate::config::mqtt::{NameTemplate, Payload, TopicFilter, ValueType};
use plantgate::sources::mqtt::payload::decode;
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
}
