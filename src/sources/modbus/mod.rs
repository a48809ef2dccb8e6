//! Modbus source (TCP or RTU): one task per connection polls its tags in
//! coalesced block reads, one poll group per rate, requests serialized.
//!
//! Faults, and what each does:
//! - connect fails: every tag bad, reconnect with backoff;
//! - timeout: tokio-modbus has no request timeout and answers one
//!   transaction behind after one (slowtec/tokio-modbus#324), so every
//!   request is time-boxed and a timeout drops the connection; the unit that
//!   did not answer is skipped with its own backoff, so a dead unit on a
//!   shared line does not stall the live ones (slowtec/tokio-modbus#315);
//! - exception response: the device's answer about those addresses. A block
//!   that gets ILLEGAL DATA ADDRESS is split until the bad tag is alone,
//!   and only that tag is bad; gateway exceptions (0x0A, 0x0B) put the unit
//!   in backoff; the connection is kept;
//! - garbled frame, closed connection: every tag of the block bad, reconnect.
//!
//! Each failing tag gets one bad-quality sample with the reason when it
//! fails, and a good one when it recovers; the edge never turns bad samples
//! into events.

pub mod codec;
mod link;
pub mod plan;
pub mod probe;

use super::emit::Emitter;
use super::split_points;
use crate::backoff::Backoff;
use crate::config::modbus::{ModbusSource, ModbusTag, Table};
use crate::config::{TagConfig, TagPoint};
use crate::model::{Millis, Quality, Sample, Value};
use crate::status::Telemetry;
use plan::Block;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::client::{Client as _, Context, Reader};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

pub struct Poller {
    pub name: String,
    pub config: ModbusSource,
    /// Sends this source's tags; their Modbus addresses are at the same index.
    out: Emitter,
    points: Vec<ModbusTag>,
    telemetry: Arc<Telemetry>,
}

/// How one block read ended.
enum Outcome {
    Data(Data),
    Exception(ExceptionCode),
    /// No answer in time: the unit is suspect and the link out of step.
    Timeout,
    /// The link failed or the answer was garbled: reconnect.
    Broken(String),
}

enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// Why the poll loop left a connection.
enum Leave {
    Shutdown,
    Reconnect(String),
}

struct Group {
    name: String,
    every: Duration,
    blocks: Vec<Block>,
    due: Instant,
}

/// Per-unit health on a shared connection.
struct Unit {
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl Poller {
    pub fn new(
        name: String,
        config: ModbusSource,
        tags: Vec<TagConfig>,
        tx: mpsc::Sender<Sample>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let (tags, points) = split_points(tags, |p| match p {
            TagPoint::Modbus(x) => Some(x),
            _ => None,
        });
        Poller {
            out: Emitter::new(&name, tags, tx, telemetry.clone()),
            name,
            config,
            points,
            telemetry,
        }
    }

    fn plan_groups(&self) -> Vec<Group> {
        let now = Instant::now();
        let mut by_group: BTreeMap<&str, Vec<(usize, &ModbusTag)>> = BTreeMap::new();
        for (i, p) in self.points.iter().enumerate() {
            by_group
                .entry(p.poll_group.as_str())
                .or_default()
                .push((i, p));
        }
        by_group
            .into_iter()
            .map(|(name, tags)| Group {
                name: name.to_string(),
                every: self
                    .config
                    .poll_groups
                    .get(name)
                    .copied()
                    .unwrap_or(Duration::from_secs(1)),
                blocks: plan::plan(&tags, self.config.max_gap),
                due: now,
            })
            .collect()
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut groups = self.plan_groups();
        let requests: usize = groups.iter().map(|g| g.blocks.len()).sum();
        tracing::info!(source = %self.name, link = %self.config.transport.describe(), tags = self.out.tag_count(),
            requests, "modbus poll plan");
        let mut units: BTreeMap<u8, Unit> = BTreeMap::new();
        let mut link_backoff = Backoff::new(Duration::from_millis(200), self.config.backoff_max);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let why = match link::connect(
                &self.config.transport,
                self.config.unit,
                self.config.timeout,
            )
            .await
            {
                Ok(mut ctx) => {
                    tracing::info!(source = %self.name, link = %self.config.transport.describe(), "connected");
                    link_backoff.reset();
                    let leave = self
                        .poll(&mut ctx, &mut groups, &mut units, &mut shutdown)
                        .await;
                    let _ = tokio::time::timeout(self.config.timeout, ctx.disconnect()).await;
                    match leave {
                        Leave::Shutdown => return,
                        // Reconnect at once: a fresh connection is the cure for a
                        // link out of step; a dead device is paced by its unit backoff.
                        Leave::Reconnect(why) => {
                            tracing::debug!(source = %self.name, reason = %why, "reconnecting");
                            continue;
                        }
                    }
                }
                Err(why) => why,
            };
            tracing::warn!(source = %self.name, error = %why, "cannot connect; retrying");
            self.telemetry.source_down(&self.name, &why);
            let all: Vec<usize> = (0..self.out.tag_count()).collect();
            self.out.bad(&all, &why).await;
            tokio::select! {
                _ = tokio::time::sleep(link_backoff.next_delay()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn poll(
        &mut self,
        ctx: &mut Context,
        groups: &mut [Group],
        units: &mut BTreeMap<u8, Unit>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Leave {
        loop {
            let next = groups
                .iter()
                .map(|g| g.due)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => return Leave::Shutdown,
            }
            let now = Instant::now();
            for g in groups.iter_mut().filter(|g| g.due <= now) {
                let started = Instant::now();
                let mut queue: VecDeque<Block> = std::mem::take(&mut g.blocks).into();
                let mut done = Vec::with_capacity(queue.len());
                let mut leave = None;
                while let Some(block) = queue.pop_front() {
                    if leave.is_some() {
                        done.push(block);
                        continue;
                    }
                    let unit = units.entry(block.unit).or_insert_with(|| Unit {
                        backoff: Backoff::new(Duration::from_millis(500), self.config.backoff_max),
                        retry_at: None,
                    });
                    if unit.retry_at.is_some_and(|t| t > Instant::now()) {
                        done.push(block);
                        continue;
                    }
                    match self.read(ctx, &block).await {
                        Outcome::Data(data) => {
                            unit.retry_at = None;
                            unit.backoff.reset();
                            self.telemetry.source_up(&self.name);
                            self.deliver(&block, data).await;
                            done.push(block);
                        }
                        Outcome::Exception(code) if is_gateway_fault(code) => {
                            let why = format!("unit {}: gateway reports {code:?}", block.unit);
                            unit.retry_at = Some(Instant::now() + unit.backoff.next_delay());
                            self.unit_failed(&block, &why, units).await;
                            done.push(block);
                        }
                        Outcome::Exception(code) => match plan::split(&block, &self.points) {
                            // Split and read the halves now: one bad address
                            // must not blind the tags around it.
                            Some((a, b)) => {
                                tracing::info!(source = %self.name, start = block.start, count = block.count,
                                    exception = ?code, "block refused; splitting it");
                                queue.push_front(b);
                                queue.push_front(a);
                            }
                            None => {
                                let why = format!(
                                    "device exception {code:?} at {} {} (unit {})",
                                    block.table.name(),
                                    block.start,
                                    block.unit
                                );
                                self.out.bad(&block.tags, &why).await;
                                done.push(block);
                            }
                        },
                        Outcome::Timeout => {
                            let why = format!(
                                "unit {}: no answer within {:?}",
                                block.unit, self.config.timeout
                            );
                            unit.retry_at = Some(Instant::now() + unit.backoff.next_delay());
                            self.unit_failed(&block, &why, units).await;
                            leave = Some(Leave::Reconnect(why));
                            done.push(block);
                        }
                        Outcome::Broken(why) => {
                            self.telemetry.source_down(&self.name, &why);
                            self.out.bad(&block.tags, &why).await;
                            leave = Some(Leave::Reconnect(why));
                            done.push(block);
                        }
                    }
                }
                g.blocks = done;
                g.due = (g.due + g.every).max(now);
                self.telemetry
                    .modbus_cycle(&self.name, &g.name, started.elapsed().as_secs_f64());
                if let Some(l) = leave {
                    return l;
                }
            }
        }
    }

    /// Mark a unit's tags bad; the source is down when no unit answers.
    async fn unit_failed(&mut self, block: &Block, why: &str, units: &BTreeMap<u8, Unit>) {
        tracing::warn!(source = %self.name, unit = block.unit, error = %why, "unit not answering; backing off");
        let tags: Vec<usize> = (0..self.points.len())
            .filter(|i| self.points[*i].unit == block.unit)
            .collect();
        self.out.bad(&tags, why).await;
        let now = Instant::now();
        if units.values().all(|u| u.retry_at.is_some_and(|t| t > now)) {
            self.telemetry.source_down(&self.name, why);
        } else {
            self.telemetry.source_error(&self.name, why);
        }
    }

    async fn read(&self, ctx: &mut Context, b: &Block) -> Outcome {
        ctx.set_slave(Slave(b.unit));
        let started = std::time::Instant::now();
        let timeout = self.config.timeout;
        let (result, kind) = match b.table {
            Table::HoldingRegister => (
                tokio::time::timeout(timeout, ctx.read_holding_registers(b.start, b.count))
                    .await
                    .map(|r| r.map(|r| r.map(Data::Words))),
                "holding",
            ),
            Table::InputRegister => (
                tokio::time::timeout(timeout, ctx.read_input_registers(b.start, b.count))
                    .await
                    .map(|r| r.map(|r| r.map(Data::Words))),
                "input",
            ),
            Table::Coil => (
                tokio::time::timeout(timeout, ctx.read_coils(b.start, b.count))
                    .await
                    .map(|r| r.map(|r| r.map(Data::Bits))),
                "coil",
            ),
            Table::DiscreteInput => (
                tokio::time::timeout(timeout, ctx.read_discrete_inputs(b.start, b.count))
                    .await
                    .map(|r| r.map(|r| r.map(Data::Bits))),
                "discrete",
            ),
        };
        let outcome = match result {
            Err(_) => Outcome::Timeout,
            Ok(Err(e)) => Outcome::Broken(format!(
                "{}: {}",
                self.config.transport.describe(),
                describe(&e)
            )),
            Ok(Ok(Err(code))) => Outcome::Exception(code),
            Ok(Ok(Ok(data))) => {
                let n = match &data {
                    Data::Words(w) => w.len(),
                    // Bits come back padded to whole bytes.
                    Data::Bits(bits) => bits.len().min(usize::from(b.count)),
                };
                if n != usize::from(b.count) {
                    Outcome::Broken(format!(
                        "garbled answer: asked {} {kind} items at {}, got {n}",
                        b.count, b.start
                    ))
                } else {
                    Outcome::Data(data)
                }
            }
        };
        let label = match &outcome {
            Outcome::Data(_) => "ok",
            Outcome::Exception(_) => "exception",
            Outcome::Timeout => "timeout",
            Outcome::Broken(_) => "error",
        };
        self.telemetry
            .modbus_request(&self.name, label, started.elapsed().as_secs_f64());
        outcome
    }

    async fn deliver(&mut self, block: &Block, data: Data) {
        let time = Millis::now();
        for &i in &block.tags {
            let p = &self.points[i];
            let offset = usize::from(p.address - block.start);
            let decoded = match &data {
                Data::Bits(bits) => bits
                    .get(offset)
                    .map(|b| Value::Bool(*b))
                    .ok_or_else(|| "bit missing".to_string()),
                Data::Words(words) => {
                    match words.get(offset..offset + usize::from(p.data_type.registers())) {
                        Some(w) => codec::decode_registers(p, w),
                        None => Err("registers missing from the answer".to_string()),
                    }
                }
            };
            match decoded {
                Ok(v) => self.out.value(i, v, Quality::Good, time, None).await,
                Err(why) => self.out.bad(&[i], &why).await,
            }
        }
        self.telemetry
            .samples(&self.name, block.tags.len() as u64, time);
    }
}

/// tokio-modbus's errors in the words an engineer needs. When the device
/// closes the stream, tokio-modbus reports whatever errno was last set
/// (often 0 or EAGAIN), so those mean "closed" here.
fn describe(e: &tokio_modbus::Error) -> String {
    use std::io::ErrorKind;
    match e {
        tokio_modbus::Error::Transport(io)
            if matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            format!("garbled answer: {io}")
        }
        tokio_modbus::Error::Transport(io)
            if matches!(io.raw_os_error(), Some(0) | Some(11))
                || matches!(
                    io.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                        | ErrorKind::NotConnected
                        | ErrorKind::WouldBlock
                ) =>
        {
            "connection closed by the device".to_string()
        }
        tokio_modbus::Error::Protocol(p) => format!("garbled answer: {p}"),
        other => other.to_string(),
    }
}

fn is_gateway_fault(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice
    )
}
