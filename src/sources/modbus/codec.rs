//! Register and bit contents → values, for every data type and byte order.
//! Pure functions: no I/O, exhaustively unit-tested.

use super::types::{ByteOrder, DataType};
use crate::config::modbus::ModbusTag;
use crate::model::Value;

/// Decode a register tag from exactly its registers.
pub fn decode_registers(tag: &ModbusTag, words: &[u16]) -> Result<Value, String> {
    let need = usize::from(tag.data_type.registers());
    if words.len() != need {
        return Err(format!("expected {need} registers, got {}", words.len()));
    }
    if let Some(bit) = tag.bit {
        return Ok(Value::Bool(words[0] >> bit & 1 == 1));
    }
    let bytes = arrange(words, tag.order);
    let be = |n: usize| -> u64 {
        bytes[..n]
            .iter()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
    };
    Ok(match tag.data_type {
        DataType::Bool => Value::Bool(words[0] != 0),
        DataType::U16 => Value::UInt(be(2)),
        DataType::I16 => Value::Int(i64::from(be(2) as u16 as i16)),
        DataType::U32 => Value::UInt(be(4)),
        DataType::I32 => Value::Int(i64::from(be(4) as u32 as i32)),
        DataType::U64 => Value::UInt(be(8)),
        DataType::I64 => Value::Int(be(8) as i64),
        DataType::F32 => Value::Float(f64::from(f32::from_bits(be(4) as u32))),
        DataType::F64 => Value::Float(f64::from_bits(be(8))),
        DataType::Text(_) => {
            let end = bytes
                .iter()
                .rposition(|b| *b != 0 && *b != b' ')
                .map_or(0, |i| i + 1);
            let text: String = bytes[..end]
                .iter()
                .map(|b| {
                    if b.is_ascii() && *b != 0 {
                        char::from(*b)
                    } else {
                        '?'
                    }
                })
                .collect();
            Value::Text(text)
        }
    })
}

/// The value's bytes, most significant first, from registers in `order`.
fn arrange(words: &[u16], order: ByteOrder) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 2);
    let mut push = |w: u16| {
        let [hi, lo] = w.to_be_bytes();
        if order.swaps_bytes() {
            out.extend_from_slice(&[lo, hi]);
        } else {
            out.extend_from_slice(&[hi, lo]);
        }
    };
    if order.swaps_words() {
        words.iter().rev().for_each(|w| push(*w));
    } else {
        words.iter().for_each(|w| push(*w));
    }
    out
}

/// The registers that hold `bytes` (most significant first) in `order`:
/// the inverse of decoding, for tests and simulators.
pub fn encode(bytes: &[u8], order: ByteOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let (hi, lo) = (c[0], c.get(1).copied().unwrap_or(0));
            if order.swaps_bytes() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.swaps_words() {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::modbus::types::Table;

    fn tag(data_type: DataType, order: ByteOrder) -> ModbusTag {
        ModbusTag {
            unit: 1,
            table: Table::HoldingRegister,
            address: 0,
            data_type,
            order,
            bit: None,
            poll_group: "default".into(),
        }
    }

    const ORDERS: [ByteOrder; 4] = [
        ByteOrder::Abcd,
        ByteOrder::Cdab,
        ByteOrder::Badc,
        ByteOrder::Dcba,
    ];

    fn round_trip(data_type: DataType, bytes: &[u8]) -> Vec<Value> {
        ORDERS
            .iter()
            .map(|o| decode_registers(&tag(data_type, *o), &encode(bytes, *o)).expect("decode"))
            .collect()
    }

    #[test]
    fn the_four_orders_lay_out_bytes_as_named() {
        // 0x11223344 as ABCD, CDAB, BADC, DCBA.
        assert_eq!(
            encode(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Abcd),
            vec![0x1122, 0x3344]
        );
        assert_eq!(
            encode(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Cdab),
            vec![0x3344, 0x1122]
        );
        assert_eq!(
            encode(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Badc),
            vec![0x2211, 0x4433]
        );
        assert_eq!(
            encode(&[0x11, 0x22, 0x33, 0x44], ByteOrder::Dcba),
            vec![0x4433, 0x2211]
        );
    }

    #[test]
    fn edge_values_survive_every_order() {
        for v in round_trip(DataType::I32, &i32::MIN.to_be_bytes()) {
            assert_eq!(v, Value::Int(i64::from(i32::MIN)));
        }
        for v in round_trip(DataType::U32, &u32::MAX.to_be_bytes()) {
            assert_eq!(v, Value::UInt(u64::from(u32::MAX)));
        }
        for v in round_trip(DataType::I64, &i64::MIN.to_be_bytes()) {
            assert_eq!(v, Value::Int(i64::MIN));
        }
        for v in round_trip(DataType::U64, &u64::MAX.to_be_bytes()) {
            assert_eq!(v, Value::UInt(u64::MAX));
        }
        for v in round_trip(DataType::F32, &f32::NEG_INFINITY.to_be_bytes()) {
            assert_eq!(v, Value::Float(f64::NEG_INFINITY));
        }
        for v in round_trip(DataType::F64, &f64::NAN.to_be_bytes()) {
            assert!(matches!(v, Value::Float(f) if f.is_nan()));
        }
        for v in round_trip(DataType::F64, &(-1234.5678f64).to_be_bytes()) {
            assert_eq!(v, Value::Float(-1234.5678));
        }
        for v in round_trip(DataType::I16, &(-2i16).to_be_bytes()) {
            assert_eq!(v, Value::Int(-2));
        }
    }

    #[test]
    fn text_and_bits() {
        let words = encode(b"PRESS-7\0", ByteOrder::Abcd);
        assert_eq!(
            decode_registers(&tag(DataType::Text(4), ByteOrder::Abcd), &words),
            Ok(Value::Text("PRESS-7".into()))
        );
        let mut t = tag(DataType::Bool, ByteOrder::Abcd);
        t.bit = Some(15);
        assert_eq!(decode_registers(&t, &[0x8000]), Ok(Value::Bool(true)));
        t.bit = Some(0);
        assert_eq!(decode_registers(&t, &[0x8000]), Ok(Value::Bool(false)));
        assert!(decode_registers(&tag(DataType::U32, ByteOrder::Abcd), &[1]).is_err());
    }
}
