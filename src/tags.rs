//! Tag names interned once, at config load: every configured tag
//! (`[[tags]]`, then `[[derived]]`) gets a [`TagId`], its index in the
//! [`TagTable`]. Samples carry the id and the edge finds a tag's rules by
//! index, so no name is hashed or cloned per sample; whatever needs the
//! name (a log line, the status page) reads it from the table.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

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
#[derive(Clone, Debug, Default)]
pub struct TagTable {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, TagId>,
}

impl TagTable {
    /// Ids in the order given; a repeated name keeps its first id (the
    /// config reports it as defined twice).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> TagTable {
        let mut table = TagTable::default();
        for name in names {
            if table.ids.contains_key(name) {
                continue;
            }
            // Fewer than u32::MAX tags: a config that size cannot be parsed.
            let id = TagId(u32::try_from(table.names.len()).unwrap_or(u32::MAX - 1));
            let name: Arc<str> = Arc::from(name);
            table.ids.insert(name.clone(), id);
            table.names.push(name);
        }
        table
    }

    /// The id of a configured tag.
    pub fn id(&self, name: &str) -> Option<TagId> {
        self.ids.get(name).copied()
    }

    /// A configured tag's name; `None` for an id of no tag.
    pub fn name(&self, id: TagId) -> Option<&str> {
        self.names.get(id.index()).map(|n| &**n)
    }

    /// How many tags there are (every id is below this).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
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
    }
}
