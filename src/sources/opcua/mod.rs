//! OPC UA source: one task per server. Tags become monitored items of one
//! subscription (the server reports changes, optionally through a
//! deadband), or, per tag, are read with the Read service every
//! `poll_interval` for servers that limit monitored items.
//!
//! Faults, and what each does:
//! - cannot connect (refused, no matching endpoint, untrusted certificate,
//!   login refused): every tag bad with the reason, retry with backoff;
//! - connection lost: every tag bad, then a new session with namespaces
//!   resolved again and the subscription created anew (the stack's own
//!   reconnect is off, see `client`); nothing is sent for the gap;
//! - a tag the server refuses (unknown node, namespace URI not on the
//!   server): that tag bad with the reason, logged with its name; the
//!   others keep flowing;
//! - a bad status in a data change: a bad sample with the status name, once
//!   per change, like the Modbus source.

pub mod browse;
pub mod buffer;
pub mod client;
pub mod commission;
mod metrics;
pub mod node_id;
pub mod security;
pub mod value;

pub use metrics::OpcUaMetrics;

use super::emit::Emitter;
use super::split_points;
use crate::backoff::Backoff;
use crate::config::opcua::{OpcUaSource, OpcUaTag};
use crate::config::{TagConfig, TagPoint};
use crate::model::{Millis, Quality, Sample};
use crate::status::Telemetry;
use crate::tags::TagTable;
use client::{Connection, LinkEvent};
use opcua::client::DataChangeCallback;
use opcua::types::{
    AttributeId, DataChangeFilter, DataChangeTrigger, DataValue, ExtensionObject,
    MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeId, ReadValueId,
    StatusCode, TimestampsToReturn,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How a tag is acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A monitored item: the server reports changes (the default).
    Subscribe,
    /// The Read service every `poll_interval`, for servers that limit
    /// monitored items.
    Poll,
}

/// A data change filter: which changes the server reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Deadband {
    /// Report a change only when it exceeds this much.
    Absolute(f64),
    /// Percent of the node's EURange (the server must have one).
    Percent(f64),
}

/// Monitored items per CreateMonitoredItems request: servers cap the
/// operations per call, and 1000 stays under common limits.
const ITEMS_PER_REQUEST: usize = 1000;

/// Notifications per Publish response: keeps each message moderate when
/// thousands of items change at once (the rest follow in the next ones).
const MAX_NOTIFICATIONS_PER_PUBLISH: u32 = 10_000;

/// Data changes taken from the subscription per wake-up.
const CHANGE_BATCH: usize = 1024;

/// Data changes held in order between the subscription and this task: more
/// than one full Publish response, so a burst (the first values of
/// thousands of items) is passed on whole; beyond it, while the edge is
/// held back, only each item's newest value is kept (see `buffer`).
const CHANGE_BUFFER: usize = 16_384;

pub struct OpcUaReader {
    pub name: String,
    pub config: OpcUaSource,
    /// Sends this source's tags; their OPC UA points are at the same index.
    out: Emitter,
    points: Vec<OpcUaTag>,
    telemetry: Arc<Telemetry>,
    metrics: Arc<OpcUaMetrics>,
    change_buffer: usize,
}

/// Why a session ended.
enum Leave {
    Shutdown,
    Lost(String),
}

impl OpcUaReader {
    pub fn new(
        name: String,
        config: OpcUaSource,
        tags: Vec<TagConfig>,
        names: Arc<TagTable>,
        tx: mpsc::Sender<Sample>,
        telemetry: Arc<Telemetry>,
        metrics: Arc<OpcUaMetrics>,
    ) -> Self {
        let (tags, points) = split_points(tags, |p| match p {
            TagPoint::OpcUa(x) => Some(x),
            _ => None,
        });
        OpcUaReader {
            out: Emitter::new(&name, tags, names, tx, telemetry.clone()),
            name,
            config,
            points,
            telemetry,
            metrics,
            change_buffer: CHANGE_BUFFER,
        }
    }

    /// Hold at most `changes` data changes in order before coalescing per
    /// item (default 16,384): small, a test sees the pressure at once.
    pub fn with_change_buffer(mut self, changes: usize) -> Self {
        self.change_buffer = changes;
        self
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let all: Vec<usize> = (0..self.out.tag_count()).collect();
        self.metrics.added(&self.name);
        // Making the application certificate (RSA key generation on first
        // start) takes a while: keep it off the async workers.
        let cfg = self.config.clone();
        let made = tokio::task::spawn_blocking(move || client::Link::new(&cfg)).await;
        let made = made.unwrap_or_else(|e| {
            Err(client::ConnectError::Setup {
                endpoint: self.config.endpoint.clone(),
                reason: format!("client setup failed: {e}"),
            })
        });
        let link = match made {
            Ok(l) => l,
            Err(e) => {
                // Setup errors (unwritable data dir) do not heal by retrying.
                let why = e.to_string();
                tracing::error!(source = %self.name, error = %why, "OPC UA source cannot start");
                self.telemetry.source_down(&self.name, &why);
                self.out.bad(&all, &why).await;
                let _ = shutdown.changed().await;
                return;
            }
        };
        tracing::info!(source = %self.name, endpoint = %self.config.endpoint,
            policy = self.config.security_policy.name(), mode = self.config.security_mode.name(),
            tags = self.out.tag_count(), "OPC UA source");
        let mut backoff = Backoff::new(Duration::from_millis(500), self.config.backoff_max);
        let mut lost_before = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let connect = tokio::select! {
                c = link.connect() => c,
                _ = shutdown.changed() => return,
            };
            let why = match connect {
                Ok(conn) => {
                    backoff.reset();
                    if lost_before {
                        self.metrics.reconnect(&self.name);
                    }
                    tracing::info!(source = %self.name, endpoint = %self.config.endpoint, "connected");
                    match self.serve(conn, &mut shutdown).await {
                        Leave::Shutdown => return,
                        Leave::Lost(why) => {
                            lost_before = true;
                            why
                        }
                    }
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(source = %self.name, error = %why, "OPC UA server not available; retrying");
            self.telemetry.source_down(&self.name, &why);
            self.out.bad(&all, &why).await;
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Subscribe and poll on one session until it ends.
    async fn serve(&mut self, mut conn: Connection, shutdown: &mut watch::Receiver<bool>) -> Leave {
        // Up first, so the refusals below stay the source's last error.
        self.telemetry.source_up(&self.name);
        // Bind each tag to this server's namespace table.
        let mut nodes: Vec<Option<NodeId>> = Vec::with_capacity(self.points.len());
        let mut refused = Vec::new();
        for (i, p) in self.points.iter().enumerate() {
            match p.node.resolve(&conn.namespaces) {
                Ok(id) => nodes.push(Some(id)),
                Err(e) => {
                    nodes.push(None);
                    refused.push((i, format!("node {}: {e}", p.node)));
                }
            }
        }
        for (i, why) in refused {
            self.tag_refused(i, &why).await;
        }
        // The stack's callback cannot wait, so it hands over into a bounded
        // buffer that coalesces per item when full; this task drains it in
        // batches into the bounded sample channel.
        let (dtx, mut drx) =
            buffer::change_buffer(self.change_buffer, self.metrics.replaced(&self.name));
        let subscribed: Vec<usize> = (0..self.points.len())
            .filter(|i| nodes[*i].is_some() && self.points[*i].mode == Mode::Subscribe)
            .collect();
        if !subscribed.is_empty() {
            if let Err(why) = self.subscribe(&conn, &nodes, &subscribed, dtx).await {
                conn.close(self.config.timeout).await;
                return Leave::Lost(why);
            }
        }
        let polled: Vec<(usize, NodeId)> = (0..self.points.len())
            .filter(|i| self.points[*i].mode == Mode::Poll)
            .filter_map(|i| nodes[i].clone().map(|n| (i, n)))
            .collect();
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(CHANGE_BATCH);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    conn.close(self.config.timeout).await;
                    return Leave::Shutdown;
                }
                // Without subscribed tags no callback holds the sender.
                n = drx.recv_many(&mut batch, CHANGE_BATCH), if !subscribed.is_empty() => {
                    if n == 0 {
                        return Leave::Lost("subscription ended".to_string());
                    }
                    let mut good = 0;
                    for (handle, dv) in batch.drain(..) {
                        // Client handles are tag index + 1 (0 means "unset" to the stack).
                        if let Some(i) = (handle as usize).checked_sub(1).filter(|i| *i < self.out.tag_count()) {
                            good += u64::from(self.on_value(i, &dv).await);
                        }
                    }
                    if good > 0 {
                        self.telemetry.samples(&self.name, good, Millis::now());
                    }
                }
                ev = conn.events.recv() => match ev {
                    Some(LinkEvent::Connected) => {}
                    Some(LinkEvent::Lost(why)) => return Leave::Lost(why),
                    None => return Leave::Lost("connection closed".to_string()),
                },
                _ = poll.tick(), if !polled.is_empty() => {
                    if let Err(why) = self.read_polled(&conn, &polled).await {
                        conn.close(self.config.timeout).await;
                        return Leave::Lost(why);
                    }
                }
            }
        }
    }

    async fn subscribe(
        &mut self,
        conn: &Connection,
        nodes: &[Option<NodeId>],
        tags: &[usize],
        dtx: buffer::ChangeSender,
    ) -> Result<(), String> {
        let publishing = self.config.publishing_interval;
        // Keep-alive every 10 publishing intervals; the server drops the
        // subscription after 3 missed keep-alives (lifetime ≥ 3 × keep-alive).
        let created = tokio::time::timeout(
            self.config.timeout,
            conn.session.create_subscription(
                publishing,
                30,
                10,
                MAX_NOTIFICATIONS_PER_PUBLISH,
                0,
                true,
                DataChangeCallback::new(move |dv, item| {
                    dtx.send(item.client_handle(), dv);
                }),
            ),
        )
        .await;
        let sub = match created {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Err(format!("cannot create a subscription: {e}")),
            Err(_) => return Err("creating the subscription timed out".to_string()),
        };
        for chunk in tags.chunks(ITEMS_PER_REQUEST) {
            let requests: Vec<MonitoredItemCreateRequest> = chunk
                .iter()
                .filter_map(|&i| nodes[i].clone().map(|n| self.item_request(i, n)))
                .collect();
            let sent = tokio::time::timeout(
                self.config.timeout * 4,
                conn.session
                    .create_monitored_items(sub, TimestampsToReturn::Both, requests),
            )
            .await
            .map_err(|_| "creating monitored items timed out".to_string())?;
            let results = match sent {
                Ok(r) => r,
                // A refusal of the whole request (a server that limits
                // monitored items) is about these tags, not the connection:
                // they are bad, the others keep flowing.
                Err(e) if !is_connection_error(e.status()) => {
                    let status = e.status();
                    for &i in chunk {
                        let why = format!(
                            "node {}: server refused to monitor it: {status}{}",
                            self.points[i].node,
                            limit_hint(status)
                        );
                        self.tag_refused(i, &why).await;
                    }
                    continue;
                }
                Err(e) => return Err(format!("cannot create monitored items: {e}")),
            };
            for (&i, r) in chunk.iter().zip(results.iter()) {
                let status = r.result.status_code;
                if !status.is_good() {
                    let why = format!(
                        "node {}: server refused to monitor it: {status}{}",
                        self.points[i].node,
                        limit_hint(status)
                    );
                    self.tag_refused(i, &why).await;
                }
            }
        }
        Ok(())
    }

    fn item_request(&self, i: usize, node: NodeId) -> MonitoredItemCreateRequest {
        let p = &self.points[i];
        let filter = match p.deadband {
            None => ExtensionObject::null(),
            Some(d) => {
                let (deadband_type, deadband_value) = match d {
                    Deadband::Absolute(v) => (1, v),
                    Deadband::Percent(v) => (2, v),
                };
                ExtensionObject::from_message(DataChangeFilter {
                    trigger: DataChangeTrigger::StatusValue,
                    deadband_type,
                    deadband_value,
                })
            }
        };
        MonitoredItemCreateRequest {
            item_to_monitor: ReadValueId {
                node_id: node,
                attribute_id: AttributeId::Value as u32,
                ..Default::default()
            },
            monitoring_mode: MonitoringMode::Reporting,
            requested_parameters: MonitoringParameters {
                client_handle: i as u32 + 1,
                // -1: sample at the publishing interval.
                sampling_interval: p
                    .sampling_interval
                    .map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
                filter,
                queue_size: p.queue_size,
                discard_oldest: p.discard_oldest,
            },
        }
    }

    async fn read_polled(
        &mut self,
        conn: &Connection,
        polled: &[(usize, NodeId)],
    ) -> Result<(), String> {
        let ids: Vec<ReadValueId> = polled
            .iter()
            .map(|(_, n)| ReadValueId {
                node_id: n.clone(),
                attribute_id: AttributeId::Value as u32,
                ..Default::default()
            })
            .collect();
        let values = tokio::time::timeout(
            self.config.timeout,
            conn.session.read(&ids, TimestampsToReturn::Both, 0.0),
        )
        .await
        .map_err(|_| format!("read timed out after {:?}", self.config.timeout))?
        .map_err(|e| format!("read failed: {e}"))?;
        let mut good = 0;
        for ((i, _), dv) in polled.iter().zip(values.iter()) {
            good += u64::from(self.on_value(*i, dv).await);
        }
        if good > 0 {
            self.telemetry.samples(&self.name, good, Millis::now());
        }
        Ok(())
    }

    /// A tag this server cannot serve: say which and why, keep the rest.
    async fn tag_refused(&mut self, i: usize, why: &str) {
        tracing::error!(source = %self.name, tag = %self.out.name(i), error = %why, "OPC UA tag cannot be read");
        self.telemetry
            .source_error(&self.name, &format!("tag {}: {why}", self.out.name(i)));
        self.out.bad(&[i], why).await;
    }

    /// Send one reported value; true when it was good.
    async fn on_value(&mut self, i: usize, dv: &DataValue) -> bool {
        let time = value::time(dv);
        let server_time = value::server_time(dv);
        let quality = value::quality(dv.status());
        let v = dv.value.as_ref().map(value::value);
        match (quality, v) {
            (Quality::Bad(why), _) => {
                if !self.out.is_bad_for(i, &why) {
                    let why = format!("node {}: {why}", self.points[i].node);
                    tracing::warn!(source = %self.name, tag = %self.out.name(i), error = %why, "OPC UA tag is bad");
                    self.telemetry
                        .source_error(&self.name, &format!("tag {}: {why}", self.out.name(i)));
                }
                self.out.bad(&[i], &why).await;
                false
            }
            (_, None) => {
                self.out.bad(&[i], "no value").await;
                false
            }
            (q, Some(v)) => {
                let good = q == Quality::Good;
                self.out.value(i, v, q, time, server_time).await;
                good
            }
        }
    }
}

/// Status codes that mean the session or channel is gone, not a refusal.
fn is_connection_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadConnectionClosed
            | StatusCode::BadNotConnected
            | StatusCode::BadCommunicationError
            | StatusCode::BadSecureChannelClosed
            | StatusCode::BadSessionClosed
            | StatusCode::BadSessionIdInvalid
            | StatusCode::BadTimeout
            | StatusCode::BadServerNotConnected
            | StatusCode::BadSubscriptionIdInvalid
    )
}

/// What to do when a server limits monitored items.
fn limit_hint(status: StatusCode) -> &'static str {
    if status == StatusCode::BadTooManyMonitoredItems {
        " (the server limits monitored items: set mode = \"poll\" on some tags)"
    } else {
        ""
    }
}
