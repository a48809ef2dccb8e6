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
//! - exception response (the connection is kept), by what it is about:
//!   - ILLEGAL DATA ADDRESS or VALUE (0x02, 0x03) is about those addresses:
//!     the block is split until the refused tag is alone, and only that tag
//!     is bad; the split is tried whole again every `reprobe_interval`, so
//!     a corrected device map heals without a restart;
//!   - SERVER DEVICE FAILURE, ACKNOWLEDGE, BUSY and the gateway exceptions
//!     (0x04, 0x05, 0x06, 0x0A, 0x0B) are about the unit as a whole: it is
//!     backed off as after a timeout and the plan is kept;
//!   - any other (illegal function, ...) makes the block's tags bad;
//! - garbled reply (bytes that are not the answer to the request, see
//!   `frame`): the unit backs off as after a timeout, with what was wrong;
//! - closed connection or another I/O error: the block's tags bad, reconnect.
//!
//! Each failing tag gets one bad-quality sample with the reason when it
//! fails, and a good one when it recovers; the edge never turns bad samples
//! into events.

pub mod codec;
pub mod frame;
mod link;
mod metrics;
pub mod plan;
pub mod probe;
pub mod types;

pub use metrics::ModbusMetrics;

use super::emit::Emitter;
use super::split_points;
use crate::backoff::Backoff;
use crate::config::modbus::{ModbusSource, ModbusTag};
use crate::config::{TagConfig, TagPoint};
use crate::model::{Millis, Quality, Sample, Value};
use crate::status::{ModbusPlan, PlanBlock, PlanRead, PlanSplit, Telemetry};
use crate::tags::TagTable;
use frame::Framing;
use link::Wire;
use plan::Block;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::client::{Client as _, Context, Reader};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use types::Table;

pub struct Poller {
    pub name: String,
    pub config: ModbusSource,
    /// Sends this source's tags; their Modbus addresses are at the same index.
    out: Emitter,
    points: Vec<ModbusTag>,
    telemetry: Arc<Telemetry>,
    metrics: Arc<ModbusMetrics>,
    framing: Framing,
}

/// How one block read ended.
enum Outcome {
    Data(Data),
    Exception(ExceptionCode),
    /// No byte came back in time: the unit is suspect and the link out of step.
    Timeout,
    /// Bytes came back that are not the answer (the reason says what was
    /// wrong): the unit is suspect and the link out of step.
    Garbled(String),
    /// The link failed: reconnect.
    Broken(String),
}

enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// What an exception is about.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// These addresses (0x02, 0x03): isolate the tag that causes it.
    Addresses,
    /// The unit as a whole (0x04, 0x05, 0x06, 0x0A, 0x0B): back it off.
    Unit,
    /// This request (0x01 illegal function, 0x08, others): its tags are bad.
    Request,
}

fn refusal(code: ExceptionCode) -> Refusal {
    use ExceptionCode::*;
    match code {
        IllegalDataAddress | IllegalDataValue => Refusal::Addresses,
        ServerDeviceFailure
        | Acknowledge
        | ServerDeviceBusy
        | GatewayPathUnavailable
        | GatewayTargetDevice => Refusal::Unit,
        _ => Refusal::Request,
    }
}

/// `IllegalDataAddress (0x02)`: the name tests and people grep for, and the
/// number a device manual lists.
fn exception_name(code: ExceptionCode) -> String {
    format!("{code:?} (0x{:02X})", u8::from(code))
}

/// Why the poll loop left a connection.
enum Leave {
    Shutdown,
    Reconnect(String),
}

struct Group {
    name: String,
    every: Duration,
    blocks: Vec<Planned>,
    due: Instant,
}

/// A block as planned, and how it is read while the device refuses it whole.
struct Planned {
    whole: Block,
    split: Option<Split>,
}

/// A block the device refused for its addresses, read in parts until a
/// re-probe reads it whole again.
struct Split {
    /// The exception that refused the whole block.
    code: ExceptionCode,
    /// Reads that together cover the block's tags.
    parts: Vec<Block>,
    /// Tags the device refuses even alone, with the exception.
    refused: BTreeMap<usize, ExceptionCode>,
    reprobe_at: Instant,
    /// `reprobe_at` on the wall clock, for the status page.
    reprobe_wall: Millis,
}

/// Per-unit health on a shared connection.
struct Unit {
    backoff: Backoff,
    retry_at: Option<Instant>,
}

/// What reading one planned block did.
#[derive(Default)]
struct Step {
    plan_changed: bool,
    leave: Option<Leave>,
}

impl Poller {
    pub fn new(
        name: String,
        config: ModbusSource,
        tags: Vec<TagConfig>,
        names: Arc<TagTable>,
        tx: mpsc::Sender<Sample>,
        telemetry: Arc<Telemetry>,
        metrics: Arc<ModbusMetrics>,
    ) -> Self {
        let (tags, points) = split_points(tags, TagPoint::as_modbus);
        Poller {
            out: Emitter::new(&name, tags, names, tx, telemetry.clone()),
            framing: link::framing(&config.transport),
            name,
            config,
            points,
            telemetry,
            metrics,
        }
    }

    fn plan_groups(&self) -> Vec<Group> {
        let now = Instant::now();
        let mut by_group: BTreeMap<&str, Vec<(usize, &ModbusTag)>> = BTreeMap::new();
        for (i, p) in self.points.iter().enumerate() {
            by_group.entry(&*p.poll_group).or_default().push((i, p));
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
                blocks: plan::plan(&tags, self.config.max_gap)
                    .into_iter()
                    .map(|whole| Planned { whole, split: None })
                    .collect(),
                due: now,
            })
            .collect()
    }

    /// Show the current plan on the status page.
    fn publish_plan(&self, groups: &[Group]) {
        let name = |i: &usize| self.out.name(*i).to_string();
        let mut plan = ModbusPlan::default();
        for g in groups {
            for p in &g.blocks {
                let split = p.split.as_ref().map(|s| PlanSplit {
                    why: format!(
                        "{} for {} {}..{}",
                        exception_name(s.code),
                        p.whole.table.name(),
                        p.whole.start,
                        u32::from(p.whole.start) + u32::from(p.whole.count)
                    ),
                    reads: s
                        .parts
                        .iter()
                        .map(|b| PlanRead {
                            start: b.start,
                            count: b.count,
                            tags: b.tags.iter().map(name).collect(),
                        })
                        .collect(),
                    refused: s
                        .refused
                        .iter()
                        .map(|(i, code)| (name(i), exception_name(*code)))
                        .collect(),
                    reprobe_at: s.reprobe_wall,
                });
                plan.units.entry(p.whole.unit).or_default().push(PlanBlock {
                    group: g.name.clone(),
                    table: p.whole.table.name(),
                    start: p.whole.start,
                    count: p.whole.count,
                    tags: p.whole.tags.len(),
                    split,
                });
            }
        }
        self.telemetry.modbus_plan(&self.name, plan);
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut groups = self.plan_groups();
        let requests: usize = groups.iter().map(|g| g.blocks.len()).sum();
        tracing::info!(source = %self.name, link = %self.config.transport.describe(), tags = self.out.tag_count(),
            requests, "modbus poll plan");
        self.publish_plan(&groups);
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
                Ok((mut ctx, wire)) => {
                    tracing::info!(source = %self.name, link = %self.config.transport.describe(), "connected");
                    link_backoff.reset();
                    let leave = self
                        .poll(&mut ctx, &wire, &mut groups, &mut units, &mut shutdown)
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
        wire: &Wire,
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
            for gi in 0..groups.len() {
                if groups[gi].due > now {
                    continue;
                }
                let started = Instant::now();
                let mut changed = false;
                let mut leave = None;
                for planned in groups[gi].blocks.iter_mut() {
                    let step = self.poll_block(ctx, wire, planned, units).await;
                    changed |= step.plan_changed;
                    if step.leave.is_some() {
                        leave = step.leave;
                        break;
                    }
                }
                let g = &mut groups[gi];
                g.due = (g.due + g.every).max(now);
                self.metrics
                    .cycle(&self.name, &g.name, started.elapsed().as_secs_f64());
                if changed {
                    self.publish_plan(groups);
                }
                if let Some(l) = leave {
                    return l;
                }
            }
        }
    }

    /// Read one planned block: whole, or in the parts of its split (whole
    /// again once its re-probe is due), and keep the plan up to date.
    async fn poll_block(
        &mut self,
        ctx: &mut Context,
        wire: &Wire,
        planned: &mut Planned,
        units: &mut BTreeMap<u8, Unit>,
    ) -> Step {
        let unit_id = planned.whole.unit;
        let backoff_max = self.config.backoff_max;
        let unit = units.entry(unit_id).or_insert_with(|| Unit {
            backoff: Backoff::new(Duration::from_millis(500), backoff_max),
            retry_at: None,
        });
        if unit.retry_at.is_some_and(|t| t > Instant::now()) {
            return Step::default();
        }
        let reprobe = planned
            .split
            .as_ref()
            .is_some_and(|s| s.reprobe_at <= Instant::now());
        let (mut queue, mut refused): (VecDeque<Block>, BTreeMap<usize, ExceptionCode>) =
            match &planned.split {
                Some(s) if !reprobe => (s.parts.iter().cloned().collect(), s.refused.clone()),
                _ => (VecDeque::from([planned.whole.clone()]), BTreeMap::new()),
            };
        let reading_whole = planned.split.is_none() || reprobe;
        // The exception that split a read in this pass, if one did.
        let mut split_by = None;
        let mut whole_ok = false;
        let mut parts = Vec::new();
        let mut step = Step::default();
        // Set when the unit or the link fails: the rest stays as it is.
        let mut stop = false;
        while let Some(block) = queue.pop_front() {
            if stop {
                parts.push(block);
                continue;
            }
            match self.read(ctx, wire, &block).await {
                Outcome::Data(data) => {
                    if let Some(u) = units.get_mut(&unit_id) {
                        u.retry_at = None;
                        u.backoff.reset();
                    }
                    self.telemetry.source_up(&self.name);
                    for t in &block.tags {
                        refused.remove(t);
                    }
                    whole_ok |= block == planned.whole;
                    self.deliver(&block, data).await;
                    parts.push(block);
                }
                Outcome::Exception(code) => match refusal(code) {
                    Refusal::Addresses => match plan::split(&block, &self.points) {
                        // Split and read the halves now: one bad address
                        // must not blind the tags around it.
                        Some((a, b)) => {
                            tracing::info!(source = %self.name, unit = unit_id, table = block.table.name(),
                                start = block.start, count = block.count, exception = %exception_name(code),
                                "block refused for its addresses; splitting it");
                            split_by.get_or_insert(code);
                            queue.push_front(b);
                            queue.push_front(a);
                        }
                        None => {
                            let why = format!(
                                "device exception {} at {} {} (unit {})",
                                exception_name(code),
                                block.table.name(),
                                block.start,
                                block.unit
                            );
                            self.out.bad(&block.tags, &why).await;
                            for t in &block.tags {
                                refused.insert(*t, code);
                            }
                            parts.push(block);
                        }
                    },
                    Refusal::Unit => {
                        let why =
                            format!("unit {unit_id}: device reports {}", exception_name(code));
                        self.unit_failed(unit_id, &why, units).await;
                        stop = true;
                        parts.push(block);
                    }
                    Refusal::Request => {
                        let why = format!(
                            "device exception {} for {} {}..{} (unit {unit_id})",
                            exception_name(code),
                            block.table.name(),
                            block.start,
                            u32::from(block.start) + u32::from(block.count)
                        );
                        self.telemetry.source_error(&self.name, &why);
                        self.out.bad(&block.tags, &why).await;
                        parts.push(block);
                    }
                },
                Outcome::Timeout => {
                    let why = format!("unit {unit_id}: no answer within {:?}", self.config.timeout);
                    self.unit_failed(unit_id, &why, units).await;
                    step.leave = Some(Leave::Reconnect(why));
                    stop = true;
                    parts.push(block);
                }
                // A unit that answers garbage is as suspect as a silent one;
                // backing it off keeps the units after it on the line flowing.
                Outcome::Garbled(what) => {
                    let why = format!("unit {unit_id}: {what}");
                    self.unit_failed(unit_id, &why, units).await;
                    step.leave = Some(Leave::Reconnect(why));
                    stop = true;
                    parts.push(block);
                }
                Outcome::Broken(why) => {
                    self.telemetry.source_down(&self.name, &why);
                    self.out.bad(&block.tags, &why).await;
                    step.leave = Some(Leave::Reconnect(why));
                    stop = true;
                    parts.push(block);
                }
            }
        }
        let was_split = planned.split.is_some();
        if let (true, Some(code)) = (reading_whole, split_by) {
            // The whole block (first read or re-probe) was refused: a new split.
            let names: Vec<&str> = refused.keys().map(|i| self.out.name(*i)).collect();
            tracing::info!(source = %self.name, unit = unit_id, table = planned.whole.table.name(),
                start = planned.whole.start, count = planned.whole.count, exception = %exception_name(code),
                reads = parts.len(), refused = ?names, reprobe = ?self.config.reprobe_interval,
                reprobed = was_split, "block read in parts until its re-probe");
            let interval = self.config.reprobe_interval;
            planned.split = Some(Split {
                code,
                parts,
                refused,
                // A duration past the clock's range means "not in this life".
                reprobe_at: Instant::now()
                    .checked_add(interval)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400)),
                reprobe_wall: Millis(
                    Millis::now()
                        .0
                        .saturating_add(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)),
                ),
            });
            step.plan_changed = true;
        } else if reading_whole && whole_ok && was_split {
            tracing::info!(source = %self.name, unit = unit_id, table = planned.whole.table.name(),
                start = planned.whole.start, count = planned.whole.count,
                "re-probe: block read whole again");
            planned.split = None;
            step.plan_changed = true;
        } else if !reading_whole {
            if let Some(s) = planned.split.as_mut() {
                if s.parts != parts || s.refused != refused {
                    s.parts = parts;
                    s.refused = refused;
                    step.plan_changed = true;
                }
            }
        }
        // Otherwise the block was read whole as planned, or a re-probe was
        // cut short by a unit or link failure: the split and its due
        // re-probe stay.
        step
    }

    /// Back the unit off and mark its tags bad; the source is down when no
    /// unit answers.
    async fn unit_failed(&mut self, unit_id: u8, why: &str, units: &mut BTreeMap<u8, Unit>) {
        tracing::warn!(source = %self.name, unit = unit_id, error = %why, "unit failing; backing off");
        if let Some(u) = units.get_mut(&unit_id) {
            u.retry_at = Some(Instant::now() + u.backoff.next_delay());
        }
        let tags: Vec<usize> = (0..self.points.len())
            .filter(|i| self.points[*i].unit == unit_id)
            .collect();
        self.out.bad(&tags, why).await;
        let now = Instant::now();
        if units.values().all(|u| u.retry_at.is_some_and(|t| t > now)) {
            self.telemetry.source_down(&self.name, why);
        } else {
            self.telemetry.source_error(&self.name, why);
        }
    }

    async fn read(&self, ctx: &mut Context, wire: &Wire, b: &Block) -> Outcome {
        ctx.set_slave(Slave(b.unit));
        wire.begin();
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
            // Bytes that came before the deadline and were not taken as the
            // reply (on RTU: a frame with a bad CRC) make it garbled, not silent.
            Err(_) => match link::garbled(self.framing, wire, None) {
                Some(why) => Outcome::Garbled(why),
                None => Outcome::Timeout,
            },
            Ok(Err(e)) => match link::garbled(self.framing, wire, Some(&e.to_string())) {
                Some(why) => Outcome::Garbled(why),
                None => Outcome::Broken(format!(
                    "{}: {}",
                    self.config.transport.describe(),
                    describe(&e)
                )),
            },
            Ok(Ok(Err(code))) => Outcome::Exception(code),
            Ok(Ok(Ok(data))) => {
                let n = match &data {
                    Data::Words(w) => w.len(),
                    // Bits come back padded to whole bytes.
                    Data::Bits(bits) => bits.len().min(usize::from(b.count)),
                };
                if n != usize::from(b.count) {
                    Outcome::Garbled(format!(
                        "garbled answer: asked {} {kind} items at {}, got {n}; {} bytes",
                        b.count,
                        b.start,
                        wire.exchange().received_total
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
            Outcome::Garbled(_) => "garbled",
            Outcome::Broken(_) => "error",
        };
        self.metrics
            .request(&self.name, label, started.elapsed().as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_address_exceptions_isolate_tags() {
        use ExceptionCode::*;
        for code in [IllegalDataAddress, IllegalDataValue] {
            assert_eq!(refusal(code), Refusal::Addresses, "{code:?}");
        }
        for code in [
            ServerDeviceFailure,
            Acknowledge,
            ServerDeviceBusy,
            GatewayPathUnavailable,
            GatewayTargetDevice,
        ] {
            assert_eq!(refusal(code), Refusal::Unit, "{code:?}");
        }
        for code in [IllegalFunction, MemoryParityError, Custom(0x42)] {
            assert_eq!(refusal(code), Refusal::Request, "{code:?}");
        }
        assert_eq!(
            exception_name(ServerDeviceFailure),
            "ServerDeviceFailure (0x04)"
        );
    }
}
