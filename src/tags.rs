//! Tag names interned once, at config load: every configured tag
//! (`[[tags]]`, then `[[derived]]`) gets a [`TagId`], its index in the
//! [`TagTable`]. Samples carry the id and the edge finds a tag's rules by
//! index, so no name is hashed or cloned per sample; whatever needs the
//! name (a log line, the status page) reads it from the table.

use std::collections::HashSet;
use std::fmt;

/// A configured tag: its index in the config's [`TagTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagId(u32);

impl TagId {
    /// A name no configured tag has: an MQTT tag named from topic levels
    /// that no entry names. No rule or derived tag can read it.
    pub const UNCONFIGURED: TagId = TagId(u32::MAX);

    /// The index into per-tag vectors (past every one for
    /// [`TagId::UNCONFIGURED`], so a lookup finds nothing).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of the tag at this index of its table.
    pub fn from_index(i: usize) -> TagId {
        TagId(u32::try_from(i).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
impl TagId {
    /// Any id, for a rule's unit test (the rule does not look at it).
    pub(crate) const fn of(n: u32) -> TagId {
        TagId(n)
    }
}

impl fmt::Display for TagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == TagId::UNCONFIGURED {
            f.write_str("#unconfigured")
        } else {
            write!(f, "#{}", self.0)
        }
    }
}

/// The configured tags' names, by id and by name. Built once; shared.
///
/// All names are in one string: a block apiece would scatter tens of
/// thousands of small blocks over the memory the config's parse frees, and
/// each would keep its page of it in use for the gateway's life.
#[derive(Clone, Debug, Default)]
pub struct TagTable {
    /// Every name, one after another, in id order.
    text: String,
    /// Where each id's name ends in `text`.
    ends: Vec<u32>,
    /// The ids sorted by name, for lookups by name.
    by_name: Vec<TagId>,
}

impl TagTable {
    /// Ids in the order given; a repeated name keeps its first id (the
    /// config reports it as defined twice).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> TagTable {
        let mut seen = HashSet::new();
        let names: Vec<&str> = names.into_iter().filter(|n| seen.insert(*n)).collect();
        drop(seen);
        let mut text = String::with_capacity(names.iter().map(|n| n.len()).sum());
        let mut ends = Vec::with_capacity(names.len());
        for name in &names {
            text.push_str(name);
            // Fewer than 4 GiB of names: a config that size cannot be parsed.
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        // Fewer than u32::MAX tags, likewise.
        let mut by_name: Vec<TagId> = (0..names.len()).map(TagId::from_index).collect();
        by_name.sort_unstable_by_key(|id| names[id.index()]);
        TagTable {
            text,
            ends,
            by_name,
        }
    }

    /// The id of a configured tag.
    pub fn id(&self, name: &str) -> Option<TagId> {
        self.by_name
            .binary_search_by(|id| self.name(*id).unwrap_or("").cmp(name))
            .ok()
            .map(|i| self.by_name[i])
    }

    /// A configured tag's name; `None` for an id of no tag.
    pub fn name(&self, id: TagId) -> Option<&str> {
        let i = id.index();
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        self.text.get(start..end)
    }

    /// How many tags there are (every id is below this).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_go_both_ways_and_unknown_names_have_none() {
        let t = TagTable::new(["parts", "state", "parts", "net"]);
        assert_eq!(t.len(), 3, "a repeated name is one tag");
        let net = t.id("net").expect("configured");
        assert_eq!(t.name(net), Some("net"));
        assert_eq!(t.id("press9_count"), None);
        assert_eq!(t.name(TagId::UNCONFIGURED), None);
        assert!(TagId::UNCONFIGURED.index() >= t.len());
        for (i, name) in ["parts", "state", "net"].iter().enumerate() {
            assert_eq!(t.id(name), Some(TagId::from_index(i)), "{name}");
            assert_eq!(t.name(TagId::from_index(i)), Some(*name));
        }
        assert_eq!(t.id(""), None);
        assert_eq!(t.id("partsx"), None, "a name's prefix is not the name");
        assert_eq!(t.id("par"), None);
    }
}
