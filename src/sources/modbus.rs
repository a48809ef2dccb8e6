//! Modbus TCP source: polls holding registers of one device at an interval.
//!
//! tokio-modbus has no request timeout, and after a timed-out request the
//! connection answers one transaction behind (slowtec/tokio-modbus#324), so
//! every request is time-boxed and any timeout or transport error drops the
//! connection; the poller then reconnects with backoff. A device exception
//! (e.g. ILLEGAL DATA ADDRESS) is the device's answer about one tag: that tag
//! is marked bad and the connection is kept.

use crate::backoff::Backoff;
use crate::config::{DataType, ModbusTcpConfig, TagConfig};
use crate::model::{Millis, Quality, Sample, Value};
use crate::status::Telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_modbus::client::{Client as _, Context, Reader};
use tokio_modbus::Slave;

pub struct Poller {
    pub name: String,
    pub config: ModbusTcpConfig,
    pub tags: Vec<TagConfig>,
    pub tx: mpsc::Sender<Sample>,
    pub telemetry: Arc<Telemetry>,
}

/// Why a poll cycle stopped using the connection.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Modbus(#[from] tokio_modbus::Error),
    #[error("the edge stopped")]
    Closed,
}

impl Poller {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.connect().await {
                Ok(mut ctx) => {
                    tracing::info!(source = %self.name, address = %self.config.address, "connected");
                    self.telemetry.source_up(&self.name);
                    backoff.reset();
                    let err = self.poll_loop(&mut ctx, &mut shutdown).await;
                    // Best effort: the connection may already be gone.
                    let _ = tokio::time::timeout(self.config.timeout, ctx.disconnect()).await;
                    match err {
                        None | Some(LinkError::Closed) => return,
                        Some(e) => {
                            let msg = format!("{}: {e}", self.config.address);
                            tracing::warn!(source = %self.name, error = %msg, "device link lost; reconnecting");
                            self.telemetry.source_down(&self.name, &msg);
                        }
                    }
                }
                Err(msg) => {
                    tracing::warn!(source = %self.name, error = %msg, "cannot connect; retrying");
                    self.telemetry.source_down(&self.name, &msg);
                }
            }
            let wait = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn connect(&self) -> Result<Context, String> {
        let addr = &self.config.address;
        let timeout = self.config.timeout;
        let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host(addr.as_str()))
            .await
            .map_err(|_| format!("{addr}: name lookup timed out"))?
            .map_err(|e| format!("{addr}: cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: name resolves to no address"))?;
        let slave = Slave(self.config.unit);
        tokio::time::timeout(
            timeout,
            tokio_modbus::client::tcp::connect_slave(resolved, slave),
        )
        .await
        .map_err(|_| format!("{addr}: connect timed out after {timeout:?}"))?
        .map_err(|e| format!("{addr}: {e}"))
    }

    /// Poll until the link fails (`Some(error)`) or shutdown (`None`).
    async fn poll_loop(
        &self,
        ctx: &mut Context,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<LinkError> {
        let mut ticker = tokio::time::interval(self.config.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return None,
            }
            for tag in &self.tags {
                if let Err(e) = self.read_tag(ctx, tag).await {
                    return Some(e);
                }
            }
        }
    }

    async fn read_tag(&self, ctx: &mut Context, tag: &TagConfig) -> Result<(), LinkError> {
        let count = tag.data_type.registers();
        let timeout = self.config.timeout;
        let answer = tokio::time::timeout(timeout, ctx.read_holding_registers(tag.register, count))
            .await
            .map_err(|_| LinkError::Timeout(timeout))??;
        let time = Millis::now();
        let (value, quality) = match answer {
            Ok(words) => match decode(tag.data_type, &words) {
                Some(v) => (v, Quality::Good),
                None => (
                    Value::Int(0),
                    Quality::Bad(format!("expected {count} registers, got {}", words.len())),
                ),
            },
            Err(exception) => {
                let msg = format!(
                    "tag {}: device exception {exception:?} at register {}",
                    tag.name, tag.register
                );
                tracing::warn!(source = %self.name, "{msg}");
                self.telemetry.source_error(&self.name, &msg);
                (Value::Int(0), Quality::Bad(format!("{exception:?}")))
            }
        };
        self.telemetry.sample(&self.name, time);
        let sample = Sample {
            tag: tag.name.clone(),
            value,
            quality,
            time,
        };
        self.tx.send(sample).await.map_err(|_| LinkError::Closed)
    }
}

/// Registers → value. Multi-register values are big-endian, high word first.
pub fn decode(ty: DataType, words: &[u16]) -> Option<Value> {
    let pair = || -> Option<u32> {
        let hi = *words.first()?;
        let lo = *words.get(1)?;
        Some((u32::from(hi) << 16) | u32::from(lo))
    };
    Some(match ty {
        DataType::U16 => Value::UInt(u64::from(*words.first()?)),
        DataType::I16 => Value::Int(i64::from(*words.first()? as i16)),
        DataType::U32 => Value::UInt(u64::from(pair()?)),
        DataType::I32 => Value::Int(i64::from(pair()? as i32)),
        DataType::F32 => Value::Float(f64::from(f32::from_bits(pair()?))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_big_endian_words() {
        assert_eq!(
            decode(DataType::U32, &[0x0001, 0x0002]),
            Some(Value::UInt(65538))
        );
        assert_eq!(decode(DataType::I16, &[0xFFFF]), Some(Value::Int(-1)));
        assert_eq!(
            decode(DataType::I32, &[0x8000, 0x0000]),
            Some(Value::Int(i64::from(i32::MIN)))
        );
        assert_eq!(
            decode(DataType::F32, &[0x3FC0, 0x0000]),
            Some(Value::Float(1.5))
        );
        assert_eq!(decode(DataType::U32, &[1]), None);
    }
}
