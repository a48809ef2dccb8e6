//! What is wrong with a reply that is not one. tokio-modbus 0.17 reports a
//! reply it cannot decode as a bare I/O error ("failed to fill whole
//! buffer") or a header mismatch in Debug form, and on RTU it drops a frame
//! whose CRC fails and waits on, so that one ends as a timeout. The link
//! taps the bytes of each request and its reply (`link::Wire`); this module
//! compares them field by field. Pure: no I/O.

/// How frames are wrapped on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// MBAP header: transaction id, protocol id, length, unit id.
    Tcp,
    /// Unit id first, CRC-16 last.
    Rtu,
}

/// One thing wrong with a reply, in the words of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("{got} bytes, shorter than any reply ({min})")]
    Short { got: usize, min: usize },
    #[error("not a Modbus TCP frame (protocol id {protocol:#06X}, not 0)")]
    NotModbusTcp { protocol: u16 },
    #[error("not a Modbus reply to function {function:#04X} of unit {unit}")]
    NotAReply { unit: u8, function: u8 },
    #[error("transaction id {got}, sent {sent}")]
    TransactionId { sent: u16, got: u16 },
    #[error("reply from unit {got} to a request for unit {asked}")]
    UnitId { asked: u8, got: u8 },
    #[error("function code {got:#04X} in the reply to {asked:#04X}")]
    FunctionCode { asked: u8, got: u8 },
    #[error("byte count {got}, {expected} expected for {items} items")]
    ByteCount {
        got: u8,
        expected: usize,
        items: u16,
    },
    #[error("length field announces {declared} PDU bytes, the reply needs {need}")]
    Length { declared: usize, need: usize },
    #[error("incomplete: {got} of {need} bytes")]
    Incomplete { got: usize, need: usize },
    #[error("bad CRC (frame says {frame:#06X}, its bytes give {computed:#06X})")]
    Crc { frame: u16, computed: u16 },
}

/// The request as sent, read back from its bytes.
struct Sent {
    transaction: Option<u16>,
    unit: u8,
    function: u8,
    count: u16,
}

impl Sent {
    fn parse(framing: Framing, bytes: &[u8]) -> Option<Sent> {
        let (transaction, pdu_at) = match framing {
            Framing::Tcp => (Some(be16(bytes, 0)?), 7),
            Framing::Rtu => (None, 1),
        };
        let unit = *bytes.get(pdu_at - 1)?;
        let function = *bytes.get(pdu_at)?;
        let count = be16(bytes, pdu_at + 3)?;
        Some(Sent {
            transaction,
            unit,
            function,
            count,
        })
    }

    /// Data bytes a good reply to this read carries.
    fn reply_bytes(&self) -> usize {
        match self.function {
            0x01 | 0x02 => usize::from(self.count).div_ceil(8),
            _ => usize::from(self.count) * 2,
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), as sent low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// What is wrong with `reply` as the answer to `request` (both as they
/// went over the wire); empty when nothing is found.
pub fn diagnose(framing: Framing, request: &[u8], reply: &[u8]) -> Vec<Fault> {
    let Some(sent) = Sent::parse(framing, request) else {
        return Vec::new();
    };
    match framing {
        Framing::Tcp => tcp(&sent, reply),
        Framing::Rtu => rtu(&sent, reply),
    }
}

fn tcp(sent: &Sent, rx: &[u8]) -> Vec<Fault> {
    let mut out = Vec::new();
    // Header (7) + function + exception code: the shortest reply.
    if rx.len() < 7 {
        return vec![Fault::Short {
            got: rx.len(),
            min: 9,
        }];
    }
    let protocol = be16(rx, 2).unwrap_or(0);
    if protocol != 0 {
        // Not MBAP at all: the other header fields mean nothing.
        return vec![Fault::NotModbusTcp { protocol }];
    }
    let transaction = be16(rx, 0).unwrap_or(0);
    if let Some(t) = sent.transaction.filter(|t| *t != transaction) {
        out.push(Fault::TransactionId {
            sent: t,
            got: transaction,
        });
    }
    if rx[6] != sent.unit {
        out.push(Fault::UnitId {
            asked: sent.unit,
            got: rx[6],
        });
    }
    // The length field counts the unit id and the PDU.
    let declared = usize::from(be16(rx, 4).unwrap_or(0)).saturating_sub(1);
    if rx.len() < 7 + declared {
        out.push(Fault::Incomplete {
            got: rx.len(),
            need: 7 + declared,
        });
    }
    let pdu = &rx[7..rx.len().min(7 + declared)];
    out.extend(pdu_faults(sent, pdu, Some(declared)));
    out
}

/// Function code, byte count and (on TCP) the declared PDU length.
fn pdu_faults(sent: &Sent, pdu: &[u8], declared: Option<usize>) -> Vec<Fault> {
    let mut out = Vec::new();
    let Some(&function) = pdu.first() else {
        if let Some(d) = declared {
            out.push(Fault::Length {
                declared: d,
                need: 2,
            });
        }
        return out;
    };
    if function == sent.function | 0x80 {
        if let Some(d) = declared.filter(|d| *d != 2) {
            out.push(Fault::Length {
                declared: d,
                need: 2,
            });
        }
        return out;
    }
    if function != sent.function {
        out.push(Fault::FunctionCode {
            asked: sent.function,
            got: function,
        });
        return out;
    }
    let Some(&count) = pdu.get(1) else {
        return out;
    };
    let expected = sent.reply_bytes();
    if usize::from(count) != expected {
        out.push(Fault::ByteCount {
            got: count,
            expected,
            items: sent.count,
        });
    }
    if let Some(d) = declared.filter(|d| *d != 2 + usize::from(count)) {
        out.push(Fault::Length {
            declared: d,
            need: 2 + usize::from(count),
        });
    }
    out
}

fn rtu(sent: &Sent, rx: &[u8]) -> Vec<Fault> {
    // Unit, function, exception code, CRC: the shortest reply.
    if rx.len() < 5 {
        return vec![Fault::Short {
            got: rx.len(),
            min: 5,
        }];
    }
    let (unit, function) = (rx[0], rx[1]);
    let need = if function == sent.function {
        5 + usize::from(rx[2])
    } else if function == sent.function | 0x80 {
        5
    } else {
        // Not shaped like a reply to this request. Only a CRC that holds
        // over all of it would make it a frame (of another function).
        return if crc_holds(rx) {
            let mut out = Vec::new();
            if unit != sent.unit {
                out.push(Fault::UnitId {
                    asked: sent.unit,
                    got: unit,
                });
            }
            out.push(Fault::FunctionCode {
                asked: sent.function,
                got: function,
            });
            out
        } else {
            vec![Fault::NotAReply {
                unit: sent.unit,
                function: sent.function,
            }]
        };
    };
    if rx.len() < need {
        return vec![Fault::Incomplete {
            got: rx.len(),
            need,
        }];
    }
    let mut out = Vec::new();
    if unit != sent.unit {
        out.push(Fault::UnitId {
            asked: sent.unit,
            got: unit,
        });
    }
    let frame = u16::from_le_bytes([rx[need - 2], rx[need - 1]]);
    let computed = crc16(&rx[..need - 2]);
    if frame != computed {
        out.push(Fault::Crc { frame, computed });
        return out;
    }
    out.extend(pdu_faults(sent, &rx[1..need - 2], None));
    out
}

fn crc_holds(frame: &[u8]) -> bool {
    let n = frame.len();
    n >= 3 && crc16(&frame[..n - 2]) == u16::from_le_bytes([frame[n - 2], frame[n - 1]])
}

/// The faults in one line.
pub fn describe(faults: &[Fault]) -> String {
    faults
        .iter()
        .map(Fault::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
        let crc = crc16(&frame);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame
    }

    /// Read holding 0, 1 register: transaction 5, unit 1.
    const TCP_REQ: [u8; 12] = [0, 5, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1];

    #[test]
    fn crc_matches_the_spec_example() {
        // Modbus over serial line V1.02, read 1 holding register of unit 1.
        assert_eq!(crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x01]), 0x0A84);
    }

    #[test]
    fn a_good_tcp_reply_has_no_fault() {
        let ok = [0, 5, 0, 0, 0, 5, 1, 3, 2, 0, 42];
        assert_eq!(diagnose(Framing::Tcp, &TCP_REQ, &ok), vec![]);
        let exception = [0, 5, 0, 0, 0, 3, 1, 0x83, 2];
        assert_eq!(diagnose(Framing::Tcp, &TCP_REQ, &exception), vec![]);
    }

    #[test]
    fn each_tcp_header_fault_is_named() {
        let d = |rx: &[u8]| diagnose(Framing::Tcp, &TCP_REQ, rx);
        assert_eq!(
            d(&[0, 9, 0, 0, 0, 5, 1, 3, 2, 0, 42]),
            vec![Fault::TransactionId { sent: 5, got: 9 }]
        );
        assert_eq!(
            d(&[0, 5, 0, 0, 0, 5, 7, 3, 2, 0, 42]),
            vec![Fault::UnitId { asked: 1, got: 7 }]
        );
        assert_eq!(
            d(&[0, 5, 0, 0, 0, 5, 1, 4, 2, 0, 42]),
            vec![Fault::FunctionCode { asked: 3, got: 4 }]
        );
        assert_eq!(
            d(&[0, 5, 0, 0, 0, 4, 1, 3, 2, 0, 42]),
            vec![Fault::Length {
                declared: 3,
                need: 4
            }]
        );
        assert_eq!(
            d(&[0x13, 0x37, 0xDE, 0xAD, 0xBE, 0xEF, 0, 0x42]),
            vec![Fault::NotModbusTcp { protocol: 0xDEAD }]
        );
        assert_eq!(d(&[0, 5, 0]), vec![Fault::Short { got: 3, min: 9 }]);
    }

    #[test]
    fn tcp_byte_count_and_truncation() {
        // The test device's garbage: byte count 8 and nothing after it.
        let rx = [0x13, 0x37, 0, 0, 0, 3, 1, 3, 8];
        assert_eq!(
            diagnose(Framing::Tcp, &TCP_REQ, &rx),
            vec![
                Fault::TransactionId {
                    sent: 5,
                    got: 0x1337
                },
                Fault::ByteCount {
                    got: 8,
                    expected: 2,
                    items: 1
                },
                Fault::Length {
                    declared: 2,
                    need: 10
                },
            ]
        );
        let short = [0, 5, 0, 0, 0, 5, 1, 3, 2];
        assert_eq!(
            diagnose(Framing::Tcp, &TCP_REQ, &short),
            vec![Fault::Incomplete { got: 9, need: 11 }]
        );
    }

    #[test]
    fn rtu_faults() {
        let req = with_crc(vec![4, 3, 0, 0, 0, 1]);
        let d = |rx: &[u8]| diagnose(Framing::Rtu, &req, rx);
        let good = with_crc(vec![4, 3, 2, 0, 42]);
        assert_eq!(d(&good), vec![]);
        let mut bad = good.clone();
        bad[6] ^= 0xFF;
        let frame = u16::from_le_bytes([bad[5], bad[6]]);
        assert_eq!(
            d(&bad),
            vec![Fault::Crc {
                frame,
                computed: crc16(&good[..5])
            }]
        );
        assert_eq!(
            d(&with_crc(vec![44, 3, 2, 0, 42])),
            vec![Fault::UnitId { asked: 4, got: 44 }]
        );
        assert_eq!(
            d(&with_crc(vec![4, 4, 2, 0, 42])),
            vec![Fault::FunctionCode { asked: 3, got: 4 }]
        );
        assert_eq!(
            d(&with_crc(vec![4, 3, 4, 0, 42, 0, 1])),
            vec![Fault::ByteCount {
                got: 4,
                expected: 2,
                items: 1
            }]
        );
        assert_eq!(
            d(&[0x13, 0x37, 0xDE, 0xAD, 0xBE, 0xEF]),
            vec![Fault::NotAReply {
                unit: 4,
                function: 3
            }]
        );
        assert_eq!(
            d(&[4, 3, 2, 0, 42]),
            vec![Fault::Incomplete { got: 5, need: 7 }]
        );
        assert_eq!(d(&with_crc(vec![4, 0x83, 2])), vec![]);
    }

    #[test]
    fn bits_count_whole_bytes() {
        let req = with_crc(vec![1, 1, 0, 0, 0, 9]);
        assert_eq!(
            diagnose(Framing::Rtu, &req, &with_crc(vec![1, 1, 2, 0xFF, 1])),
            vec![]
        );
    }
}
