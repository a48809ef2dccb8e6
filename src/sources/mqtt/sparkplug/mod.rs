//! Sparkplug B for one edge node: what its messages mean for its metrics.
//! Pure (the caller passes the time and publishes what it is told to), so
//! the rules are tested here without a broker.
//!
//! - NBIRTH names the node's metrics, with aliases and types, and starts
//!   its sequence and its `bdSeq`; DBIRTH does the same for a device.
//! - NDATA/DDATA carry values by alias (or name); a metric is read as the
//!   type its birth gave.
//! - NDEATH whose `bdSeq` is the birth's (the node's will, delivered by the
//!   broker when the node vanished, is one) makes the whole node dead;
//!   DDEATH one device. Its tags must then be bad: the edge must not act on
//!   values nobody vouches for.
//! - Every message but NDEATH has `seq`, one more than the last (mod 256).
//!   A gap, data before a birth, or an alias no birth named means values
//!   were missed: the node is asked to be born again (NCMD
//!   `Node Control/Rebirth`), at most once per [`REBIRTH_EVERY`].

pub mod proto;

use crate::model::{Millis, Value};
use prost::Message;
use proto::{datatype as dt, Metric, MetricValue, Payload};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The namespace of Sparkplug B topics.
pub const NAMESPACE: &str = "spBv1.0";

/// Rebirth requests to one node are at least this far apart: a node that
/// keeps skipping must not be flooded with commands.
pub const REBIRTH_EVERY: Duration = Duration::from_secs(10);

/// Metrics remembered from one node's births (all devices together).
const MAX_METRICS: usize = 100_000;

/// The metric that asks a node for a rebirth.
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";

/// A Sparkplug message type (the topic's third level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NBirth,
    NData,
    NDeath,
    DBirth,
    DData,
    DDeath,
    /// Commands and anything else: not the node's own reports.
    Other,
}

/// The type and device of a topic `spBv1.0/<group>/<TYPE>/<node>[/<device>]`
/// of this group and node; `None` for any other topic.
pub fn parse_topic<'a>(topic: &'a str, group: &str, node: &str) -> Option<(Kind, Option<&'a str>)> {
    let mut levels = topic.split('/');
    if levels.next()? != NAMESPACE || levels.next()? != group {
        return None;
    }
    let kind = match levels.next()? {
        "NBIRTH" => Kind::NBirth,
        "NDATA" => Kind::NData,
        "NDEATH" => Kind::NDeath,
        "DBIRTH" => Kind::DBirth,
        "DDATA" => Kind::DData,
        "DDEATH" => Kind::DDeath,
        _ => Kind::Other,
    };
    if levels.next()? != node {
        return None;
    }
    let device = levels.next();
    if levels.next().is_some() {
        return None;
    }
    let device_kind = matches!(kind, Kind::DBirth | Kind::DData | Kind::DDeath);
    match (device_kind, device) {
        (true, Some(_)) | (false, None) => Some((kind, device)),
        (_, _) if kind == Kind::Other => Some((kind, device)),
        _ => None,
    }
}

/// The topic a node's commands go to.
pub fn command_topic(group: &str, node: &str) -> String {
    format!("{NAMESPACE}/{group}/NCMD/{node}")
}

/// NCMD `Node Control/Rebirth` = true, as a node expects it.
pub fn rebirth_request(now: Millis) -> Vec<u8> {
    let t = now.0.max(0) as u64;
    Payload {
        timestamp: Some(t),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.into()),
            timestamp: Some(t),
            datatype: Some(dt::BOOLEAN),
            value: Some(MetricValue::BooleanValue(true)),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

/// A message that is not a Sparkplug B payload.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SparkplugError {
    #[error("payload is not Sparkplug B protobuf: {0}")]
    NotProtobuf(String),
}

/// One metric's value (or why it has none) from a message.
#[derive(Debug, PartialEq)]
pub struct Update {
    /// `None`: a metric of the node itself.
    pub device: Option<String>,
    pub metric: String,
    pub reading: Result<Value, String>,
    /// The metric's timestamp, else the payload's.
    pub time: Option<Millis>,
}

/// What went dead.
#[derive(Debug, PartialEq, Eq)]
pub enum Death {
    Node,
    Device(String),
}

/// What one message means.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub updates: Vec<Update>,
    pub dead: Option<Death>,
    /// Why values were missed, when a rebirth request is to be published
    /// now (already rate-limited).
    pub rebirth: Option<String>,
    /// Why values were missed, when a request is held by the rate limit.
    pub rebirth_held: Option<String>,
}

/// What the source knows of one edge node since its last birth.
#[derive(Default)]
pub struct Session {
    born: bool,
    bd_seq: Option<u64>,
    /// The last `seq` seen.
    seq: Option<u8>,
    /// (device, alias) → metric name, from the births.
    aliases: HashMap<(Option<String>, u64), String>,
    /// (device, name) → datatype, from the births.
    types: HashMap<(Option<String>, String), u32>,
    devices: HashSet<String>,
    last_rebirth: Option<Instant>,
}

impl Session {
    /// One message of the node (`device` from its topic). `Err` when the
    /// payload does not decode; the session is then unchanged.
    pub fn handle(
        &mut self,
        kind: Kind,
        device: Option<&str>,
        bytes: &[u8],
        now: Instant,
    ) -> Result<Outcome, SparkplugError> {
        if kind == Kind::Other {
            return Ok(Outcome::default());
        }
        let payload =
            Payload::decode(bytes).map_err(|e| SparkplugError::NotProtobuf(e.to_string()))?;
        let mut out = Outcome::default();
        let mut missed: Option<String> = None;
        let device = device.map(str::to_string);
        // Whether the message's metrics are read as values.
        let mut read = true;
        match kind {
            Kind::NBirth => {
                self.born = true;
                self.aliases.clear();
                self.types.clear();
                self.devices.clear();
                self.seq = payload.seq.map(|s| s as u8);
                self.bd_seq = bd_seq(&payload);
                self.learn(&None, &payload);
            }
            Kind::NDeath => {
                let theirs = bd_seq(&payload);
                // A will from an earlier connection of the node, delivered
                // late, must not kill the session it has now.
                if self.bd_seq.is_some() && theirs.is_some() && theirs != self.bd_seq {
                    return Ok(out);
                }
                self.born = false;
                self.seq = None;
                self.devices.clear();
                out.dead = Some(Death::Node);
                return Ok(out);
            }
            _ if !self.born => {
                missed = Some(format!("{} before the node's NBIRTH", name(kind)));
                read = false;
            }
            _ => {
                if let (Some(last), Some(seq)) = (self.seq, payload.seq) {
                    let expected = last.wrapping_add(1);
                    if seq != u64::from(expected) {
                        missed = Some(format!("sequence gap: expected seq {expected}, got {seq}"));
                    }
                }
                self.seq = payload.seq.map(|s| s as u8).or(self.seq);
                match (kind, &device) {
                    (Kind::DBirth, Some(d)) => {
                        if self.devices.len() < MAX_METRICS {
                            self.devices.insert(d.clone());
                        }
                        self.aliases.retain(|(dev, _), _| dev.as_ref() != Some(d));
                        self.types.retain(|(dev, _), _| dev.as_ref() != Some(d));
                        self.learn(&device, &payload);
                    }
                    (Kind::DDeath, Some(d)) => {
                        self.devices.remove(d);
                        out.dead = Some(Death::Device(d.clone()));
                        read = false;
                    }
                    (Kind::DData, Some(d)) if !self.devices.contains(d) => {
                        missed.get_or_insert_with(|| {
                            format!("DDATA of device {d:?} before its DBIRTH")
                        });
                        read = false;
                    }
                    _ => {}
                }
            }
        }
        if read {
            let time = payload.timestamp.map(|t| Millis(t as i64));
            for m in &payload.metrics {
                let metric = match (&m.name, m.alias) {
                    (Some(n), _) => n.clone(),
                    (None, Some(a)) => match self.aliases.get(&(device.clone(), a)) {
                        Some(n) => n.clone(),
                        None => {
                            missed.get_or_insert_with(|| format!("alias {a} was in no birth"));
                            continue;
                        }
                    },
                    (None, None) => continue,
                };
                let datatype = m
                    .datatype
                    .or_else(|| self.types.get(&(device.clone(), metric.clone())).copied());
                out.updates.push(Update {
                    device: device.clone(),
                    reading: value(datatype, m),
                    time: m.timestamp.map(|t| Millis(t as i64)).or(time),
                    metric,
                });
            }
        }
        if let Some(why) = missed {
            if self
                .last_rebirth
                .is_none_or(|t| now.duration_since(t) >= REBIRTH_EVERY)
            {
                self.last_rebirth = Some(now);
                out.rebirth = Some(why);
            } else {
                out.rebirth_held = Some(why);
            }
        }
        Ok(out)
    }

    fn learn(&mut self, device: &Option<String>, payload: &Payload) {
        for m in &payload.metrics {
            // Births full of garbage must not grow the maps without end.
            if self.types.len().max(self.aliases.len()) >= MAX_METRICS {
                break;
            }
            let Some(name) = &m.name else { continue };
            if let Some(a) = m.alias {
                self.aliases.insert((device.clone(), a), name.clone());
            }
            if let Some(t) = m.datatype {
                self.types.insert((device.clone(), name.clone()), t);
            }
        }
    }
}

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::NBirth => "NBIRTH",
        Kind::NData => "NDATA",
        Kind::NDeath => "NDEATH",
        Kind::DBirth => "DBIRTH",
        Kind::DData => "DDATA",
        Kind::DDeath => "DDEATH",
        Kind::Other => "a command",
    }
}

fn bd_seq(p: &Payload) -> Option<u64> {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(MetricValue::LongValue(v)) => Some(v),
            Some(MetricValue::IntValue(v)) => Some(v.into()),
            _ => None,
        })
}

/// A metric's value as its datatype says (the schema carries signed
/// integers as their two's complement in the unsigned fields).
fn value(datatype: Option<u32>, m: &Metric) -> Result<Value, String> {
    if m.is_null == Some(true) {
        return Err("the metric is null".into());
    }
    let Some(v) = &m.value else {
        return Err("the metric carries no value".into());
    };
    let wrong = || format!("a value of type {datatype:?} in the wrong field");
    Ok(match (datatype, v) {
        (Some(dt::INT8 | dt::INT16 | dt::INT32), MetricValue::IntValue(i)) => {
            Value::Int(i64::from(*i as i32))
        }
        (Some(dt::INT64 | dt::DATETIME), MetricValue::LongValue(l)) => Value::Int(*l as i64),
        (Some(dt::UINT8 | dt::UINT16 | dt::UINT32) | None, MetricValue::IntValue(i)) => {
            Value::UInt((*i).into())
        }
        (Some(dt::UINT32 | dt::UINT64) | None, MetricValue::LongValue(l)) => Value::UInt(*l),
        (Some(dt::FLOAT) | None, MetricValue::FloatValue(f)) => Value::Float((*f).into()),
        (Some(dt::DOUBLE) | None, MetricValue::DoubleValue(f)) => Value::Float(*f),
        (Some(dt::BOOLEAN) | None, MetricValue::BooleanValue(b)) => Value::Bool(*b),
        (Some(dt::STRING | dt::TEXT | dt::UUID) | None, MetricValue::StringValue(s)) => {
            Value::Text(s.clone())
        }
        (
            Some(dt::INT8 | dt::INT16 | dt::INT32 | dt::INT64 | dt::UINT8 | dt::UINT16)
            | Some(dt::UINT32 | dt::UINT64 | dt::FLOAT | dt::DOUBLE | dt::BOOLEAN)
            | Some(dt::STRING | dt::TEXT | dt::UUID | dt::DATETIME),
            _,
        ) => return Err(wrong()),
        _ => {
            return Err(format!(
                "metric type {} is not read by this gateway (numbers, booleans and text are)",
                datatype.map_or("unknown".to_string(), |t| t.to_string())
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: Option<&str>, alias: Option<u64>, t: u32, v: MetricValue) -> Metric {
        Metric {
            name: name.map(str::to_string),
            alias,
            datatype: Some(t),
            value: Some(v),
            ..Default::default()
        }
    }

    fn payload(seq: u64, metrics: Vec<Metric>) -> Vec<u8> {
        Payload {
            timestamp: Some(1_700_000_000_000),
            seq: Some(seq),
            metrics,
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn born() -> (Session, Instant) {
        let mut s = Session::default();
        let now = Instant::now();
        let birth = payload(
            0,
            vec![metric(
                Some("bdSeq"),
                None,
                dt::INT64,
                MetricValue::LongValue(3),
            )],
        );
        s.handle(Kind::NBirth, None, &birth, now).unwrap();
        let dbirth = payload(
            1,
            vec![
                metric(
                    Some("Counts/Good"),
                    Some(10),
                    dt::UINT32,
                    MetricValue::IntValue(5),
                ),
                metric(
                    Some("Temp"),
                    Some(11),
                    dt::INT16,
                    MetricValue::IntValue(-4i32 as u32),
                ),
            ],
        );
        let out = s
            .handle(Kind::DBirth, Some("press1"), &dbirth, now)
            .unwrap();
        assert_eq!(out.updates.len(), 2);
        assert_eq!(out.updates[1].reading, Ok(Value::Int(-4)));
        (s, now)
    }

    #[test]
    fn topics_of_the_node_only() {
        let p = |t| parse_topic(t, "plant1", "gw");
        assert_eq!(p("spBv1.0/plant1/NBIRTH/gw"), Some((Kind::NBirth, None)));
        assert_eq!(
            p("spBv1.0/plant1/DDATA/gw/press1"),
            Some((Kind::DData, Some("press1")))
        );
        assert_eq!(p("spBv1.0/plant1/NCMD/gw"), Some((Kind::Other, None)));
        assert_eq!(p("spBv1.0/plant1/DDATA/gw"), None);
        assert_eq!(p("spBv1.0/plant2/NDATA/gw"), None);
        assert_eq!(p("spBv1.0/plant1/NDATA/other"), None);
        assert_eq!(p("spBv1.0/plant1/DDATA/gw/a/b"), None);
    }

    #[test]
    fn data_by_alias_reads_the_birth_type() {
        let (mut s, now) = born();
        let data = payload(
            2,
            vec![metric(None, Some(10), dt::UINT32, MetricValue::IntValue(7))],
        );
        let out = s.handle(Kind::DData, Some("press1"), &data, now).unwrap();
        assert_eq!(out.rebirth, None);
        assert_eq!(out.updates[0].metric, "Counts/Good");
        assert_eq!(out.updates[0].reading, Ok(Value::UInt(7)));
        assert_eq!(out.updates[0].time, Some(Millis(1_700_000_000_000)));
        // The type may be left out of data: the birth's holds.
        let mut m = metric(None, Some(11), 0, MetricValue::IntValue(-9i32 as u32));
        m.datatype = None;
        let out = s
            .handle(Kind::DData, Some("press1"), &payload(3, vec![m]), now)
            .unwrap();
        assert_eq!(out.updates[0].reading, Ok(Value::Int(-9)));
    }

    #[test]
    fn gaps_and_unknown_aliases_ask_for_a_rebirth_once_per_period() {
        let (mut s, now) = born();
        let data = payload(
            5,
            vec![metric(None, Some(10), dt::UINT32, MetricValue::IntValue(7))],
        );
        let out = s.handle(Kind::DData, Some("press1"), &data, now).unwrap();
        assert_eq!(
            out.rebirth.as_deref(),
            Some("sequence gap: expected seq 2, got 5")
        );
        // The values that did come are still read.
        assert_eq!(out.updates.len(), 1);
        let data = payload(
            6,
            vec![metric(None, Some(99), dt::UINT32, MetricValue::IntValue(1))],
        );
        let out = s.handle(Kind::DData, Some("press1"), &data, now).unwrap();
        assert_eq!(out.rebirth, None);
        assert_eq!(
            out.rebirth_held.as_deref(),
            Some("alias 99 was in no birth")
        );
        let later = now + REBIRTH_EVERY;
        let out = s
            .handle(
                Kind::DData,
                Some("press1"),
                &payload(
                    7,
                    vec![metric(None, Some(99), dt::UINT32, MetricValue::IntValue(1))],
                ),
                later,
            )
            .unwrap();
        assert!(out.rebirth.is_some());
    }

    #[test]
    fn seq_wraps_at_256() {
        let (mut s, now) = born();
        s.seq = Some(255);
        let out = s
            .handle(Kind::NData, None, &payload(0, vec![]), now)
            .unwrap();
        assert_eq!(out.rebirth, None);
    }

    #[test]
    fn deaths_and_data_before_birth() {
        let (mut s, now) = born();
        let out = s
            .handle(Kind::DDeath, Some("press1"), &payload(2, vec![]), now)
            .unwrap();
        assert_eq!(out.dead, Some(Death::Device("press1".into())));
        // A stale will (an older bdSeq) is ignored.
        let stale = payload(
            0,
            vec![metric(
                Some("bdSeq"),
                None,
                dt::INT64,
                MetricValue::LongValue(2),
            )],
        );
        assert_eq!(
            s.handle(Kind::NDeath, None, &stale, now).unwrap().dead,
            None
        );
        let death = payload(
            0,
            vec![metric(
                Some("bdSeq"),
                None,
                dt::INT64,
                MetricValue::LongValue(3),
            )],
        );
        assert_eq!(
            s.handle(Kind::NDeath, None, &death, now).unwrap().dead,
            Some(Death::Node)
        );
        let data = payload(
            3,
            vec![metric(
                Some("Temp"),
                None,
                dt::INT16,
                MetricValue::IntValue(1),
            )],
        );
        let out = s.handle(Kind::NData, None, &data, now).unwrap();
        assert!(out.updates.is_empty());
        assert_eq!(
            out.rebirth.as_deref(),
            Some("NDATA before the node's NBIRTH")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut s = Session::default();
        let now = Instant::now();
        assert!(s
            .handle(Kind::NData, None, &[0xff, 0xff, 0xff, 0x0f], now)
            .is_err());
        // Templates nested past prost's recursion limit do not decode.
        let mut m = metric(
            Some("x"),
            None,
            dt::BOOLEAN,
            MetricValue::BooleanValue(true),
        );
        for _ in 0..200 {
            m = Metric {
                value: Some(MetricValue::TemplateValue(proto::Template {
                    metrics: vec![m],
                    ..Default::default()
                })),
                ..Default::default()
            };
        }
        assert!(s
            .handle(Kind::NBirth, None, &payload(0, vec![m]), now)
            .is_err());
        // A value in the field its type does not use.
        let m = metric(Some("x"), None, dt::BOOLEAN, MetricValue::IntValue(1));
        assert!(value(m.datatype, &m).is_err());
    }
}
