//! `plantgate modbus read`: read a device directly, to check a tag map
//! against it before deploying. Uses the same link and decoding as the
//! source, so what it prints is what the gateway will read.

use super::types::{ByteOrder, DataType, Parity, Table};
use super::{codec, link};
use crate::config::modbus::{parse_modicon, ModbusTag, SerialLine, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio_modbus::client::{Client as _, Reader};

/// What to read, as given on the command line.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `tcp://HOST:PORT` or `rtu:///dev/ttyUSB0`.
    pub target: String,
    pub unit: u8,
    /// `holding:100`, `input:0`, `coil:3`, `discrete:16`, or Modicon `40101`.
    pub item: String,
    /// Values to read (of `data_type`; registers or bits without one).
    pub count: u16,
    pub data_type: Option<String>,
    pub order: Option<String>,
    /// Registers per string, for `--type string`.
    pub length: u16,
    pub baud: u32,
    pub parity: Parity,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Link(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the device answered with exception {0:?}")]
    Exception(tokio_modbus::ExceptionCode),
    /// Bytes came back that are not a reply to the request.
    #[error("{0}")]
    Garbled(String),
}

fn transport(target: &str, p: &Probe) -> Result<Transport, ProbeError> {
    if let Some(addr) = target.strip_prefix("tcp://") {
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:502")
        };
        return Ok(Transport::Tcp { address: addr });
    }
    if let Some(device) = target.strip_prefix("rtu://") {
        return Ok(Transport::Rtu(SerialLine {
            device: device.to_string(),
            baud: p.baud,
            parity: p.parity,
            data_bits: 8,
            stop_bits: 1,
        }));
    }
    Err(ProbeError::Usage(format!(
        "target {target:?}: write tcp://HOST:PORT or rtu:///dev/ttyUSB0"
    )))
}

fn item(s: &str) -> Result<(Table, u16), ProbeError> {
    if let Some((table, addr)) = s.split_once(':') {
        let table = Table::parse(table).ok_or_else(|| {
            ProbeError::Usage(format!(
                "table {table:?}: use holding, input, coil or discrete"
            ))
        })?;
        let addr = addr
            .parse::<u16>()
            .map_err(|_| ProbeError::Usage(format!("address {addr:?} is not 0..=65535")))?;
        return Ok((table, addr));
    }
    parse_modicon(s).map_err(ProbeError::Usage)
}

/// Read and return one printable line per value.
pub async fn run(p: &Probe) -> Result<Vec<String>, ProbeError> {
    let transport = transport(&p.target, p)?;
    let (table, start) = item(&p.item)?;
    let data_type = match &p.data_type {
        Some(t) => Some(DataType::parse(t, p.length).ok_or_else(|| {
            ProbeError::Usage(format!("type {t:?}: use one of {}", DataType::NAMES))
        })?),
        None => None,
    };
    let order = match &p.order {
        Some(o) => ByteOrder::parse(o).ok_or_else(|| {
            ProbeError::Usage(format!("order {o:?}: use ABCD, CDAB, BADC or DCBA"))
        })?,
        None => ByteOrder::Abcd,
    };
    let width = if table.is_bits() {
        1
    } else {
        data_type.map_or(1, DataType::registers)
    };
    if width == 0 {
        return Err(ProbeError::Usage(
            "a string needs --length, in registers".into(),
        ));
    }
    let total = u32::from(width) * u32::from(p.count.max(1));
    if total > u32::from(table.max_per_request()) || u32::from(start) + total > 65536 {
        return Err(ProbeError::Usage(format!(
            "{total} items from {start} is more than one request may read ({} max) or past 65535",
            table.max_per_request()
        )));
    }
    let (mut ctx, wire) = link::connect(&transport, p.unit, p.timeout)
        .await
        .map_err(ProbeError::Link)?;
    let framing = link::framing(&transport);
    wire.begin();
    let total = total as u16;
    let read = async {
        match table {
            Table::HoldingRegister => ctx
                .read_holding_registers(start, total)
                .await
                .map(|r| r.map(Err)),
            Table::InputRegister => ctx
                .read_input_registers(start, total)
                .await
                .map(|r| r.map(Err)),
            Table::Coil => ctx.read_coils(start, total).await.map(|r| r.map(Ok)),
            Table::DiscreteInput => ctx
                .read_discrete_inputs(start, total)
                .await
                .map(|r| r.map(Ok)),
        }
    };
    // Bytes that came back tell a garbled reply from a silent device.
    let answer = tokio::time::timeout(p.timeout, read)
        .await
        .map_err(|_| match link::garbled(framing, &wire, None) {
            Some(why) => ProbeError::Garbled(why),
            None => ProbeError::Timeout(p.timeout),
        })?
        .map_err(|e| {
            let e = e.to_string();
            match link::garbled(framing, &wire, Some(&e)) {
                Some(why) => ProbeError::Garbled(why),
                None => ProbeError::Link(e),
            }
        })?
        .map_err(ProbeError::Exception)?;
    let _ = ctx.disconnect().await;
    let mut out = Vec::new();
    match answer {
        Ok(bits) => {
            for (i, b) in bits.iter().take(usize::from(total)).enumerate() {
                out.push(format!(
                    "{} {} = {}",
                    table.name(),
                    usize::from(start) + i,
                    b
                ));
            }
        }
        Err(words) => match data_type {
            None => {
                for (i, w) in words.iter().enumerate() {
                    out.push(format!(
                        "{} {} = {w} (0x{w:04X})",
                        table.name(),
                        usize::from(start) + i
                    ));
                }
            }
            Some(ty) => {
                for (i, chunk) in words.chunks(usize::from(width)).enumerate() {
                    let tag = ModbusTag {
                        unit: p.unit,
                        table,
                        address: start + i as u16 * width,
                        data_type: ty,
                        order,
                        bit: None,
                        poll_group: Arc::from(""),
                    };
                    let value = codec::decode_registers(&tag, chunk).map_err(ProbeError::Link)?;
                    out.push(format!(
                        "{} {} {} {} = {value}",
                        table.name(),
                        tag.address,
                        ty.name(),
                        order.name()
                    ));
                }
            }
        },
    }
    Ok(out)
}
