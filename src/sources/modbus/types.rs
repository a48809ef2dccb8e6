//! Modbus protocol types: register tables, data types and byte orders, the
//! serial line's parity, and the spec's per-request limits. The config
//! (`config::modbus`) names them; the codec and the planner work on them.

/// Most registers one read may ask for (Modbus spec, function 3/4).
pub const MAX_REGISTERS: u16 = 125;
/// Most bits one read may ask for (function 1/2).
pub const MAX_BITS: u16 = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

impl Parity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl Table {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "coil" | "coils" => Table::Coil,
            "discrete" | "discrete_input" | "discrete_inputs" => Table::DiscreteInput,
            "input" | "input_register" | "input_registers" => Table::InputRegister,
            "holding" | "holding_register" | "holding_registers" => Table::HoldingRegister,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete",
            Table::InputRegister => "input",
            Table::HoldingRegister => "holding",
        }
    }

    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Most items one request may read from this table.
    pub fn max_per_request(self) -> u16 {
        if self.is_bits() {
            MAX_BITS
        } else {
            MAX_REGISTERS
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// ASCII text over this many registers (two characters each).
    Text(u16),
}

impl DataType {
    pub const NAMES: &'static str = "bool, u16, i16, u32, i32, u64, i64, f32, f64, string";

    pub fn parse(s: &str, length: u16) -> Option<Self> {
        Some(match s {
            "bool" => DataType::Bool,
            "u16" => DataType::U16,
            "i16" => DataType::I16,
            "u32" => DataType::U32,
            "i32" => DataType::I32,
            "u64" => DataType::U64,
            "i64" => DataType::I64,
            "f32" => DataType::F32,
            "f64" => DataType::F64,
            "string" => DataType::Text(length),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::Text(_) => "string",
        }
    }

    /// Registers the type occupies (a bool reads one register, or one bit).
    pub fn registers(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::Text(n) => n,
        }
    }

    /// Largest raw value of an unsigned type, for counter wrap detection.
    pub fn wraps_at(self) -> Option<u64> {
        match self {
            DataType::U16 => Some(u64::from(u16::MAX)),
            DataType::U32 => Some(u64::from(u32::MAX)),
            DataType::U64 => Some(u64::MAX),
            _ => None,
        }
    }
}

/// How the bytes A (most significant) .. of a multi-register value are laid
/// out in the registers. ABCD is big-endian (the Modbus default); CDAB swaps
/// the words; BADC swaps the bytes in each word; DCBA does both. For 64-bit
/// values the same two swaps apply to four words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ByteOrder {
    #[default]
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

impl ByteOrder {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ABCD" => ByteOrder::Abcd,
            "CDAB" => ByteOrder::Cdab,
            "BADC" => ByteOrder::Badc,
            "DCBA" => ByteOrder::Dcba,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ByteOrder::Abcd => "ABCD",
            ByteOrder::Cdab => "CDAB",
            ByteOrder::Badc => "BADC",
            ByteOrder::Dcba => "DCBA",
        }
    }

    pub fn swaps_words(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }

    pub fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }
}
