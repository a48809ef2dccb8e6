//! Modbus parts of the config: the keys of `kind = "modbus_tcp"` and
//! `"modbus_rtu"` sources and of their tags, and their validation into
//! connections (TCP, RTU) and tag addresses. Data types, byte orders and
//! tables are the source's (`sources::modbus::types`).
//!
//! Addresses: `register` is the 0-based protocol address in the tag's
//! `table`. `address` accepts the Modicon notation instead, 1-based with
//! the table in the leading digit: 0xxxx coils, 1xxxx discrete inputs,
//! 3xxxx input registers, 4xxxx holding registers (5 digits up to x9999,
//! 6 digits up to x65536). `40101` and `register = 100` are the same.

use super::raw::{Entry, S};
use super::Validator;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

// The protocol's own types live with the source; the config names them.
pub use crate::sources::modbus::types::{
    ByteOrder, DataType, Parity, Table, MAX_BITS, MAX_REGISTERS,
};

// The raw structs below are parts of an entry, read after its keys were
// checked against the whole kind (`Validator::sort_keys`): hence no
// `deny_unknown_fields`, and a key may not appear in two parts of a kind.

/// `kind = "modbus_tcp"`: the device's address.
#[derive(Debug, Deserialize)]
pub struct RawModbusTcp {
    pub address: Option<S<String>>,
}

/// `kind = "modbus_rtu"`: the serial line.
#[derive(Debug, Deserialize)]
pub struct RawModbusRtu {
    pub device: Option<S<String>>,
    pub baud: Option<S<i64>>,
    pub parity: Option<S<String>>,
    pub data_bits: Option<S<i64>>,
    pub stop_bits: Option<S<i64>>,
}

/// Keys of both Modbus kinds.
#[derive(Debug, Deserialize)]
pub struct RawModbus {
    pub unit: Option<S<i64>>,
    pub max_gap: Option<S<i64>>,
    pub poll_groups: Option<S<BTreeMap<String, S<String>>>>,
    pub reprobe_interval: Option<S<String>>,
    pub poll_interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub backoff_max: Option<S<String>>,
}

/// A Modbus source's transport, by kind.
pub enum RawTransport {
    Tcp(RawModbusTcp),
    Rtu(RawModbusRtu),
}

/// A tag of a Modbus source: where its value is and how it is coded.
#[derive(Debug, Deserialize)]
pub struct RawModbusTag {
    pub table: Option<S<String>>,
    pub register: Option<S<i64>>,
    pub address: Option<S<String>>,
    #[serde(rename = "type")]
    pub data_type: Option<S<String>>,
    pub order: Option<S<String>>,
    pub bit: Option<S<i64>>,
    pub length: Option<S<i64>>,
    pub unit_id: Option<S<i64>>,
    pub poll_group: Option<S<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModbusSource {
    pub transport: Transport,
    /// Unit id for tags that do not name one.
    pub unit: u8,
    pub timeout: Duration,
    /// Unused registers (or bits) a block read may span to join two tags.
    pub max_gap: u16,
    /// Poll group → interval; always holds "default".
    /// Poll groups by name; every tag of a group shares the name's one copy.
    pub poll_groups: BTreeMap<Arc<str>, Duration>,
    /// Longest wait between reconnect attempts.
    pub backoff_max: Duration,
    /// How often a block that was split for an illegal address is tried
    /// whole again, so a corrected device map heals without a restart.
    pub reprobe_interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    /// `host:port`, resolved at each connect so DNS changes are picked up.
    Tcp {
        address: String,
    },
    Rtu(SerialLine),
}

impl Transport {
    pub fn describe(&self) -> String {
        match self {
            Transport::Tcp { address } => format!("tcp://{address}"),
            Transport::Rtu(s) => format!("rtu://{}", s.device),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SerialLine {
    pub device: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

/// Where and how one Modbus tag is read.
#[derive(Clone, Debug, PartialEq)]
pub struct ModbusTag {
    pub unit: u8,
    pub table: Table,
    /// 0-based protocol address of the first register (or bit).
    pub address: u16,
    pub data_type: DataType,
    pub order: ByteOrder,
    /// For a bool in a register: which bit (0 = least significant).
    pub bit: Option<u8>,
    pub poll_group: Arc<str>,
}

impl ModbusTag {
    /// Registers (or bits) the tag occupies.
    pub fn width(&self) -> u16 {
        if self.table.is_bits() {
            1
        } else {
            self.data_type.registers()
        }
    }
}

/// Parse Modicon notation (`40101`, `400101`) → (table, 0-based address).
pub fn parse_modicon(s: &str) -> Result<(Table, u16), String> {
    let digits = s.trim();
    if !(digits.len() == 5 || digits.len() == 6) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "address {s:?} is not Modicon notation: write 5 or 6 digits, like \"40101\" (holding register 100) or \"300001\""
        ));
    }
    let table = match &digits[..1] {
        "0" => Table::Coil,
        "1" => Table::DiscreteInput,
        "3" => Table::InputRegister,
        "4" => Table::HoldingRegister,
        other => {
            return Err(format!(
                "address {s:?} starts with {other}: Modicon addresses start with 0 (coil), 1 (discrete input), 3 (input register) or 4 (holding register)"
            ))
        }
    };
    let n: u32 = digits[1..]
        .parse()
        .map_err(|_| format!("bad address {s:?}"))?;
    if n == 0 || n > 65536 {
        return Err(format!(
            "address {s:?} is out of range: Modicon numbers start at 1 and end at 65536"
        ));
    }
    Ok((table, (n - 1) as u16))
}

impl Validator<'_> {
    pub(super) fn modbus_source(
        &mut self,
        s: &Entry<'_>,
        transport: RawTransport,
        r: &RawModbus,
    ) -> Option<ModbusSource> {
        let transport = match transport {
            RawTransport::Rtu(line) => {
                let device = self.require(
                    s,
                    &line.device,
                    "device",
                    "the serial port, e.g. device = \"/dev/ttyUSB0\"",
                )?;
                let baud = match &line.baud {
                    Some(b) if !(300..=1_000_000).contains(b.get_ref()) => {
                        self.err(
                            b,
                            format!("baud {} is out of range 300..=1000000", b.get_ref()),
                        );
                        9600
                    }
                    Some(b) => *b.get_ref() as u32,
                    None => 9600,
                };
                let parity = match &line.parity {
                    Some(p) => Parity::parse(p.get_ref()).unwrap_or_else(|| {
                        let msg = format!(
                            "parity {:?}: use \"none\", \"even\" or \"odd\"",
                            p.get_ref()
                        );
                        self.err(p, msg);
                        Parity::Even
                    }),
                    // The Modbus serial line spec's default.
                    None => Parity::Even,
                };
                let data_bits = match &line.data_bits {
                    Some(d) if !(5..=8).contains(d.get_ref()) => {
                        self.err(d, "data_bits must be 5, 6, 7 or 8");
                        8
                    }
                    Some(d) => *d.get_ref() as u8,
                    None => 8,
                };
                let stop_bits = match &line.stop_bits {
                    Some(d) if !(1..=2).contains(d.get_ref()) => {
                        self.err(d, "stop_bits must be 1 or 2");
                        1
                    }
                    Some(d) => *d.get_ref() as u8,
                    None => 1,
                };
                Transport::Rtu(SerialLine {
                    device: device.get_ref().clone(),
                    baud,
                    parity,
                    data_bits,
                    stop_bits,
                })
            }
            RawTransport::Tcp(tcp) => {
                let address = self.require(
                    s,
                    &tcp.address,
                    "address",
                    "the device's HOST:PORT, e.g. address = \"192.168.10.20:502\"",
                )?;
                let addr = address.get_ref();
                let port_ok = addr
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    self.err(
                        address,
                        format!(
                            "bad address {addr:?}: write HOST:PORT, like \"192.168.10.20:502\""
                        ),
                    );
                }
                Transport::Tcp {
                    address: addr.clone(),
                }
            }
        };
        let unit = self.unit_id(&r.unit).unwrap_or(1);
        let max_gap = match &r.max_gap {
            Some(g) if !(0..=124).contains(g.get_ref()) => {
                self.err(g, "max_gap must be 0..=124 registers");
                8
            }
            Some(g) => *g.get_ref() as u16,
            None => 8,
        };
        let mut poll_groups = BTreeMap::new();
        poll_groups.insert(
            Arc::from("default"),
            self.duration(&r.poll_interval, Duration::from_secs(1)),
        );
        if let Some(groups) = &r.poll_groups {
            for (name, every) in groups.get_ref() {
                if name == "default" {
                    self.err(every, "the \"default\" poll group is set by poll_interval");
                    continue;
                }
                let d = self.duration(&Some(every.clone()), Duration::from_secs(1));
                poll_groups.insert(Arc::from(name.as_str()), d);
            }
        }
        Some(ModbusSource {
            transport,
            unit,
            timeout: self.duration(&r.timeout, Duration::from_secs(1)),
            max_gap,
            poll_groups,
            backoff_max: self.duration(&r.backoff_max, Duration::from_secs(30)),
            reprobe_interval: self.duration(&r.reprobe_interval, Duration::from_secs(600)),
        })
    }

    fn unit_id(&mut self, v: &Option<S<i64>>) -> Option<u8> {
        let u = v.as_ref()?;
        match u8::try_from(*u.get_ref()) {
            Ok(id) => Some(id),
            Err(_) => {
                self.err(
                    u,
                    format!("unit id {} is out of range 0..=255", u.get_ref()),
                );
                None
            }
        }
    }

    pub(super) fn modbus_tag(
        &mut self,
        t: &Entry<'_>,
        r: &RawModbusTag,
        source: &ModbusSource,
    ) -> Option<ModbusTag> {
        let (table, address) = match (&r.register, &r.address) {
            (Some(reg), Some(addr)) => {
                self.err(addr, "give either `register` (0-based) or `address` (Modicon, like \"40101\"), not both");
                let _ = reg;
                return None;
            }
            (None, Some(addr)) => {
                if let Some(tb) = &r.table {
                    self.err(tb, "`table` comes from the first digit of a Modicon `address`; drop one of them");
                }
                match parse_modicon(addr.get_ref()) {
                    Ok(v) => v,
                    Err(e) => {
                        self.err(addr, e);
                        return None;
                    }
                }
            }
            (Some(reg), None) => {
                let table = match &r.table {
                    Some(tb) => match Table::parse(tb.get_ref()) {
                        Some(t) => t,
                        None => {
                            self.err(
                                tb,
                                format!(
                                    "unknown table {:?}: use holding, input, coil or discrete",
                                    tb.get_ref()
                                ),
                            );
                            Table::HoldingRegister
                        }
                    },
                    None => Table::HoldingRegister,
                };
                match u16::try_from(*reg.get_ref()) {
                    Ok(a) => (table, a),
                    Err(_) => {
                        self.err(reg, format!(
                            "register {} is out of range: protocol addresses are 0..=65535 (0-based; 40101 in Modicon notation is register 100)",
                            reg.get_ref()
                        ));
                        return None;
                    }
                }
            }
            (None, None) => {
                self.err(t, "missing key `register`: the 0-based register address, e.g. register = 100 (or address = \"40101\")");
                return None;
            }
        };
        let length = match &r.length {
            Some(l) if !(1..=i64::from(MAX_REGISTERS)).contains(l.get_ref()) => {
                self.err(l, format!("length must be 1..={MAX_REGISTERS} registers"));
                1
            }
            Some(l) => *l.get_ref() as u16,
            None => 0,
        };
        let default_type = if table.is_bits() { "bool" } else { "u16" };
        let data_type = match &r.data_type {
            Some(ty) => match DataType::parse(ty.get_ref(), length) {
                Some(d) => d,
                None => {
                    self.err(
                        ty,
                        format!(
                            "unknown type {:?}: use one of {}",
                            ty.get_ref(),
                            DataType::NAMES
                        ),
                    );
                    DataType::U16
                }
            },
            None => DataType::parse(default_type, length).unwrap_or(DataType::U16),
        };
        if let (DataType::Text(0), Some(ty)) = (data_type, &r.data_type) {
            self.err(
                ty,
                "a string tag needs `length`, the number of registers it spans (2 characters each)",
            );
        }
        if r.length.is_some() && !matches!(data_type, DataType::Text(_)) {
            if let Some(l) = &r.length {
                self.err(l, "`length` is only for type = \"string\"");
            }
        }
        if table.is_bits() && data_type != DataType::Bool {
            if let Some(ty) = &r.data_type {
                self.err(
                    ty,
                    format!("{} tables hold bits: the type is bool", table.name()),
                );
            }
        }
        let bit = match &r.bit {
            Some(b) if table.is_bits() || data_type != DataType::Bool => {
                self.err(b, "`bit` picks one bit of a register: use it with type = \"bool\" on a holding or input register");
                None
            }
            Some(b) if !(0..=15).contains(b.get_ref()) => {
                self.err(b, "bit must be 0..=15 (0 = least significant)");
                None
            }
            Some(b) => Some(*b.get_ref() as u8),
            None => None,
        };
        if data_type == DataType::Bool && !table.is_bits() && bit.is_none() && r.bit.is_none() {
            if let Some(ty) = &r.data_type {
                self.err(ty, "a bool in a register needs `bit` (0..=15)");
            }
        }
        let order = match &r.order {
            Some(o) => ByteOrder::parse(o.get_ref()).unwrap_or_else(|| {
                self.err(
                    o,
                    format!(
                        "unknown order {:?}: use ABCD, CDAB, BADC or DCBA",
                        o.get_ref()
                    ),
                );
                ByteOrder::Abcd
            }),
            None => ByteOrder::Abcd,
        };
        let width = if table.is_bits() {
            1
        } else {
            data_type.registers().max(1)
        };
        if u32::from(address) + u32::from(width) - 1 > 65535 {
            let at = r
                .register
                .as_ref()
                .map(|v| v.span())
                .or_else(|| r.address.as_ref().map(|v| v.span()))
                .unwrap_or(t.span());
            self.errors.push(super::Diagnostic::at(
                self.text,
                at,
                format!(
                    "register {address} is out of range: a {} tag spans {width} registers, so it must start at 0..={} (0-based protocol address)",
                    data_type.name(),
                    65536 - u32::from(width)
                ),
            ));
        }
        let poll_group = match &r.poll_group {
            Some(g) if !source.poll_groups.contains_key(g.get_ref().as_str()) => {
                let known: Vec<&str> = source.poll_groups.keys().map(|k| &**k).collect();
                self.err(
                    g,
                    format!(
                        "poll group {:?} is not defined on the source; defined: {}",
                        g.get_ref(),
                        known.join(", ")
                    ),
                );
                group(source, "default")
            }
            Some(g) => group(source, g.get_ref()),
            None => group(source, "default"),
        };
        Some(ModbusTag {
            unit: self.unit_id(&r.unit_id).unwrap_or(source.unit),
            table,
            address,
            data_type,
            order,
            bit,
            poll_group,
        })
    }
}

/// The source's own copy of a poll group's name (one per group, not per tag).
fn group(source: &ModbusSource, name: &str) -> Arc<str> {
    source
        .poll_groups
        .get_key_value(name)
        .map_or_else(|| Arc::from(name), |(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modicon_notation() {
        assert_eq!(parse_modicon("40101"), Ok((Table::HoldingRegister, 100)));
        assert_eq!(parse_modicon("300001"), Ok((Table::InputRegister, 0)));
        assert_eq!(parse_modicon("00001"), Ok((Table::Coil, 0)));
        assert_eq!(parse_modicon("465536"), Ok((Table::HoldingRegister, 65535)));
        assert!(parse_modicon("40000").is_err());
        assert!(parse_modicon("20001").is_err());
        assert!(parse_modicon("4001").is_err());
    }
}
