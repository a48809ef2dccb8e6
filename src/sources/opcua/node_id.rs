//! OPC UA node ids as written in a tag map, in the standard notations:
//! `ns=2;s=Press.Counter`, `ns=3;i=1001`, `ns=1;g=<guid>`, `ns=1;b=<base64>`,
//! `i=2258` (namespace 0), and `nsu=URI;s=…` which names the namespace by
//! its URI. Indexes can change when a server restarts, so a URI is resolved
//! against the server's namespace array at every connect.

use opcua::types::{ByteString, Guid, Identifier, NamespaceMap, NodeId, UAString};
use std::fmt;
use std::str::FromStr;

/// The namespace part of a node id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    Index(u16),
    Uri(String),
}

/// The identifier part, kept as text until the node is resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Numeric(u32),
    String(String),
    Guid(String),
    Opaque(String),
}

/// A node id as configured, not yet bound to a server's namespace table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub namespace: Namespace,
    pub id: Id,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeRefError {
    #[error("node id {0:?} is not in a standard notation: write ns=2;s=Name, ns=3;i=1001, nsu=URI;s=Name, or i=2258")]
    Notation(String),
    #[error("node id {0:?}: namespace index must be 0..=65535")]
    NamespaceIndex(String),
    #[error("node id {0:?}: a numeric identifier (i=) is a whole number 0..=4294967295")]
    Numeric(String),
    #[error(
        "node id {0:?}: the guid (g=) is not of the form 09094ac2-5c3e-4d4e-8c2a-7a9a2f5b6e01"
    )]
    Guid(String),
    #[error("node id {0:?}: the identifier after `=` is empty")]
    Empty(String),
}

/// Why a configured node id cannot be used on a given server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("namespace {0:?} is not in the server's namespace array")]
    UnknownNamespace(String),
    #[error("bad opaque (b=) identifier: not base64")]
    Opaque,
    #[error("bad guid (g=) identifier")]
    Guid,
}

impl FromStr for NodeRef {
    type Err = NodeRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        let notation = || NodeRefError::Notation(text.to_string());
        let (namespace, rest) = if let Some(rest) = s.strip_prefix("nsu=") {
            // The URI may itself hold `;`, so split at the last `;x=`.
            let split = ["s=", "i=", "g=", "b="]
                .iter()
                .filter_map(|k| rest.rfind(&format!(";{k}")))
                .max()
                .ok_or_else(notation)?;
            let uri = &rest[..split];
            if uri.is_empty() {
                return Err(notation());
            }
            (Namespace::Uri(uri.to_string()), &rest[split + 1..])
        } else if let Some(rest) = s.strip_prefix("ns=") {
            let (index, rest) = rest.split_once(';').ok_or_else(notation)?;
            let index: u16 = index
                .parse()
                .map_err(|_| NodeRefError::NamespaceIndex(text.to_string()))?;
            (Namespace::Index(index), rest)
        } else {
            (Namespace::Index(0), s)
        };
        let (kind, value) = rest.split_once('=').ok_or_else(notation)?;
        if value.is_empty() {
            return Err(NodeRefError::Empty(text.to_string()));
        }
        let id = match kind {
            "i" => Id::Numeric(
                value
                    .parse()
                    .map_err(|_| NodeRefError::Numeric(text.to_string()))?,
            ),
            "s" => Id::String(value.to_string()),
            "g" => {
                if Guid::from_str(value).is_err() {
                    return Err(NodeRefError::Guid(text.to_string()));
                }
                Id::Guid(value.to_string())
            }
            "b" => Id::Opaque(value.to_string()),
            _ => return Err(notation()),
        };
        Ok(NodeRef { namespace, id })
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Namespace::Index(0) => {}
            Namespace::Index(n) => write!(f, "ns={n};")?,
            Namespace::Uri(u) => write!(f, "nsu={u};")?,
        }
        match &self.id {
            Id::Numeric(n) => write!(f, "i={n}"),
            Id::String(s) => write!(f, "s={s}"),
            Id::Guid(g) => write!(f, "g={g}"),
            Id::Opaque(b) => write!(f, "b={b}"),
        }
    }
}

impl NodeRef {
    /// Bind to a server: a namespace URI becomes that server's index.
    pub fn resolve(&self, namespaces: &NamespaceMap) -> Result<NodeId, ResolveError> {
        let ns = match &self.namespace {
            Namespace::Index(n) => *n,
            Namespace::Uri(u) => namespaces
                .get_index(u)
                .ok_or_else(|| ResolveError::UnknownNamespace(u.clone()))?,
        };
        let identifier = match &self.id {
            Id::Numeric(n) => Identifier::Numeric(*n),
            Id::String(s) => Identifier::String(UAString::from(s.as_str())),
            Id::Guid(g) => Identifier::Guid(Guid::from_str(g).map_err(|_| ResolveError::Guid)?),
            Id::Opaque(b) => {
                Identifier::ByteString(ByteString::from_base64(b).ok_or(ResolveError::Opaque)?)
            }
        };
        Ok(NodeId {
            namespace: ns,
            identifier,
        })
    }

    /// The notation for a server node id, with the namespace written as its
    /// URI when the server names one (robust across server restarts).
    pub fn from_node_id(id: &NodeId, namespaces: &NamespaceMap) -> NodeRef {
        let namespace = if id.namespace == 0 {
            Namespace::Index(0)
        } else {
            namespaces
                .known_namespaces()
                .iter()
                .find(|(_, i)| **i == id.namespace)
                .map(|(u, _)| Namespace::Uri(u.clone()))
                .unwrap_or(Namespace::Index(id.namespace))
        };
        let id = match &id.identifier {
            Identifier::Numeric(n) => Id::Numeric(*n),
            Identifier::String(s) => Id::String(s.as_ref().to_string()),
            Identifier::Guid(g) => Id::Guid(g.to_string()),
            Identifier::ByteString(b) => Id::Opaque(b.as_base64()),
        };
        NodeRef { namespace, id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<NodeRef, NodeRefError> {
        s.parse()
    }

    #[test]
    fn parses_each_notation() {
        let r = p("ns=2;s=Press.Counter").expect("string id");
        assert_eq!(r.namespace, Namespace::Index(2));
        assert_eq!(r.id, Id::String("Press.Counter".into()));
        assert_eq!(p("ns=3;i=1001").expect("numeric").id, Id::Numeric(1001));
        assert_eq!(p("i=2258").expect("ns0").namespace, Namespace::Index(0));
        let u = p("nsu=urn:plant;a=b;s=Oven;Temp").expect("uri with ;");
        assert_eq!(u.namespace, Namespace::Uri("urn:plant;a=b".into()));
        assert_eq!(u.id, Id::String("Oven;Temp".into()));
        assert!(p("ns=1;g=09094ac2-5c3e-4d4e-8c2a-7a9a2f5b6e01").is_ok());
        assert_eq!(p("ns=2;s=A.B").expect("ok").to_string(), "ns=2;s=A.B");
    }

    #[test]
    fn rejects_bad_notation() {
        assert!(matches!(p("Press.Counter"), Err(NodeRefError::Notation(_))));
        assert!(matches!(
            p("ns=x;s=A"),
            Err(NodeRefError::NamespaceIndex(_))
        ));
        assert!(matches!(p("ns=2;i=abc"), Err(NodeRefError::Numeric(_))));
        assert!(matches!(p("ns=2;s="), Err(NodeRefError::Empty(_))));
        assert!(matches!(p("ns=1;g=nope"), Err(NodeRefError::Guid(_))));
        assert!(matches!(p("ns=2;q=1"), Err(NodeRefError::Notation(_))));
    }

    #[test]
    fn resolves_uris_against_the_server_table() {
        let mut map = NamespaceMap::new();
        map.add_namespace("urn:plant");
        let idx = map.get_index("urn:plant").expect("added");
        let id = p("nsu=urn:plant;s=X")
            .expect("parse")
            .resolve(&map)
            .expect("resolve");
        assert_eq!(id.namespace, idx);
        assert_eq!(
            p("nsu=urn:other;s=X").expect("parse").resolve(&map),
            Err(ResolveError::UnknownNamespace("urn:other".into()))
        );
    }
}
