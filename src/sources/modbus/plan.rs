//! Block reads: the tags of one unit, table and poll group are coalesced
//! into as few requests as the protocol allows (125 registers or 2000 bits,
//! bridging gaps of at most `max_gap` unused items). Pure planning; the
//! poller executes the blocks and splits one that hits an illegal address.

use super::types::Table;
use crate::config::modbus::ModbusTag;

/// One read request and the tags it serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub unit: u8,
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indexes into the poller's tag list.
    pub tags: Vec<usize>,
}

impl Block {
    fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// Plan the blocks for `tags` (index, tag), all of one poll group.
/// Greedy over tags sorted by address: each block takes every following tag
/// that still fits, which gives the fewest requests for contiguous blocks.
pub fn plan(tags: &[(usize, &ModbusTag)], max_gap: u16) -> Vec<Block> {
    let mut sorted: Vec<&(usize, &ModbusTag)> = tags.iter().collect();
    sorted.sort_by_key(|(i, t)| (t.unit, t.table, t.address, *i));
    let mut blocks: Vec<Block> = Vec::new();
    for (i, t) in sorted {
        let (start, end) = (
            u32::from(t.address),
            u32::from(t.address) + u32::from(t.width()),
        );
        if let Some(b) = blocks.last_mut() {
            let max = u32::from(t.table.max_per_request());
            let same = b.unit == t.unit && b.table == t.table;
            let new_end = b.end().max(end);
            let gap_ok = start <= b.end() + u32::from(max_gap);
            if same && gap_ok && new_end - u32::from(b.start) <= max {
                b.count = (new_end - u32::from(b.start)) as u16;
                b.tags.push(*i);
                continue;
            }
        }
        blocks.push(Block {
            unit: t.unit,
            table: t.table,
            start: t.address,
            count: (end - start) as u16,
            tags: vec![*i],
        });
    }
    blocks
}

/// Split a block that failed as a whole into two halves by tag, each
/// re-planned tightly, so that a bad address ends up alone.
pub fn split(block: &Block, tags: &[ModbusTag]) -> Option<(Block, Block)> {
    if block.tags.len() < 2 {
        return None;
    }
    let mut idx = block.tags.clone();
    idx.sort_by_key(|i| tags[*i].address);
    let (a, b) = idx.split_at(idx.len() / 2);
    let tight = |part: &[usize]| -> Block {
        let start = part
            .iter()
            .map(|i| tags[*i].address)
            .min()
            .unwrap_or(block.start);
        let end = part
            .iter()
            .map(|i| u32::from(tags[*i].address) + u32::from(tags[*i].width()))
            .max()
            .unwrap_or(u32::from(start) + 1);
        Block {
            unit: block.unit,
            table: block.table,
            start,
            count: (end - u32::from(start)) as u16,
            tags: part.to_vec(),
        }
    };
    Some((tight(a), tight(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::modbus::types::{ByteOrder, DataType};

    fn tag(table: Table, address: u16, data_type: DataType) -> ModbusTag {
        ModbusTag {
            unit: 1,
            table,
            address,
            data_type,
            order: ByteOrder::Abcd,
            bit: None,
            poll_group: "default".into(),
        }
    }

    fn blocks(tags: &[ModbusTag], gap: u16) -> Vec<(u16, u16)> {
        let indexed: Vec<(usize, &ModbusTag)> = tags.iter().enumerate().collect();
        plan(&indexed, gap)
            .iter()
            .map(|b| (b.start, b.count))
            .collect()
    }

    #[test]
    fn joins_within_gap_and_limit() {
        let h = |a| tag(Table::HoldingRegister, a, DataType::U16);
        assert_eq!(blocks(&[h(0), h(1), h(5)], 3), vec![(0, 6)]);
        assert_eq!(blocks(&[h(0), h(1), h(5)], 2), vec![(0, 2), (5, 1)]);
        assert_eq!(blocks(&[h(0), h(124)], 200), vec![(0, 125)]);
        assert_eq!(blocks(&[h(0), h(125)], 200), vec![(0, 1), (125, 1)]);
        let wide = tag(Table::HoldingRegister, 122, DataType::U32);
        assert_eq!(blocks(&[h(0), wide], 200), vec![(0, 124)]);
        let wider = tag(Table::HoldingRegister, 123, DataType::U64);
        assert_eq!(blocks(&[h(0), wider], 200), vec![(0, 1), (123, 4)]);
    }

    #[test]
    fn tables_and_units_never_mix() {
        let mut other = tag(Table::HoldingRegister, 1, DataType::U16);
        other.unit = 2;
        let tags = [
            tag(Table::HoldingRegister, 0, DataType::U16),
            tag(Table::InputRegister, 1, DataType::U16),
            other,
            tag(Table::Coil, 0, DataType::Bool),
            tag(Table::Coil, 1999, DataType::Bool),
            tag(Table::Coil, 2000, DataType::Bool),
        ];
        assert_eq!(blocks(&tags, 2000).len(), 5);
    }

    #[test]
    fn split_halves_by_tag() {
        let tags: Vec<ModbusTag> = (0..5)
            .map(|a| tag(Table::HoldingRegister, a * 10, DataType::U16))
            .collect();
        let indexed: Vec<(usize, &ModbusTag)> = tags.iter().enumerate().collect();
        let b = &plan(&indexed, 20)[0];
        let (l, r) = split(b, &tags).expect("split");
        assert_eq!((l.start, l.count, l.tags.len()), (0, 11, 2));
        assert_eq!((r.start, r.count, r.tags.len()), (20, 21, 3));
    }
}
