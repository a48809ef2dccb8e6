//! Commissioning: walk a server's address space from a node and print it as
//! a tree (node ids, data types, current values), or as `[[tags]]` entries
//! ready to paste into a tag map.

use super::node_id::NodeRef;
use super::value;
use opcua::client::Session;
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, NamespaceMap, NodeClass,
    NodeId, ReadValueId, ReferenceTypeId, TimestampsToReturn, Variant,
};
use std::collections::HashSet;
use std::fmt::Write as _;

/// One node found, with its depth below the start node.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub depth: usize,
    pub browse_name: String,
    pub display_name: String,
    pub node: NodeRef,
    pub class: NodeClass,
    /// For variables: the data type's name and the current value.
    pub data_type: Option<String>,
    pub value: Option<String>,
}

/// Names of the built-in data types (namespace 0).
fn builtin_type(id: &NodeId) -> Option<&'static str> {
    if id.namespace != 0 {
        return None;
    }
    let opcua::types::Identifier::Numeric(n) = id.identifier else {
        return None;
    };
    Some(match n {
        1 => "Boolean",
        2 => "SByte",
        3 => "Byte",
        4 => "Int16",
        5 => "UInt16",
        6 => "Int32",
        7 => "UInt32",
        8 => "Int64",
        9 => "UInt64",
        10 => "Float",
        11 => "Double",
        12 => "String",
        13 => "DateTime",
        14 => "Guid",
        15 => "ByteString",
        17 => "NodeId",
        19 => "StatusCode",
        20 => "QualifiedName",
        21 => "LocalizedText",
        22 => "Structure",
        24 => "BaseDataType",
        26 => "Number",
        27 => "Integer",
        28 => "UInteger",
        29 => "Enumeration",
        _ => return None,
    })
}

/// Walk hierarchical references forward from `start`, `depth` levels deep.
pub async fn walk(
    session: &Session,
    namespaces: &NamespaceMap,
    start: NodeId,
    depth: usize,
) -> Result<Vec<Entry>, opcua::types::Error> {
    let mut out = Vec::new();
    let mut seen: HashSet<NodeId> = HashSet::new();
    seen.insert(start.clone());
    // Depth-first with an explicit stack, each node printed before its
    // children, so the output reads as a tree.
    let mut stack: Vec<(NodeId, usize, Option<Entry>)> = vec![(start, 0, None)];
    while let Some((node, level, entry)) = stack.pop() {
        if let Some(e) = entry {
            let browse_into = matches!(e.class, NodeClass::Object | NodeClass::Variable);
            out.push(e);
            if !browse_into {
                continue;
            }
        }
        if level >= depth {
            continue;
        }
        let mut found: Vec<(NodeId, Entry)> = Vec::new();
        for r in children(session, &node).await? {
            let id = r.node_id.node_id.clone();
            if r.node_id.server_index != 0 || !seen.insert(id.clone()) {
                continue;
            }
            let entry = Entry {
                depth: level + 1,
                browse_name: r.browse_name.name.as_ref().to_string(),
                display_name: r.display_name.text.as_ref().to_string(),
                node: NodeRef::from_node_id(&id, namespaces),
                class: r.node_class,
                data_type: None,
                value: None,
            };
            found.push((id, entry));
        }
        let vars: Vec<usize> = (0..found.len())
            .filter(|i| found[*i].1.class == NodeClass::Variable)
            .collect();
        if !vars.is_empty() {
            let mut reads = Vec::new();
            for &i in &vars {
                for attr in [AttributeId::DataType, AttributeId::Value] {
                    reads.push(ReadValueId {
                        node_id: found[i].0.clone(),
                        attribute_id: attr as u32,
                        ..Default::default()
                    });
                }
            }
            let values = session
                .read(&reads, TimestampsToReturn::Neither, 0.0)
                .await?;
            for (k, &i) in vars.iter().enumerate() {
                let dt = values.get(2 * k).and_then(|d| d.value.clone());
                let e = &mut found[i].1;
                e.data_type = Some(match dt {
                    Some(Variant::NodeId(id)) => builtin_type(&id)
                        .map(str::to_string)
                        .unwrap_or_else(|| NodeRef::from_node_id(&id, namespaces).to_string()),
                    _ => "?".to_string(),
                });
                e.value = values.get(2 * k + 1).map(|d| match &d.value {
                    Some(val) if d.status().is_good() => value::value(val).to_string(),
                    _ => format!("({})", d.status()),
                });
            }
        }
        for (id, e) in found.into_iter().rev() {
            stack.push((id, level + 1, Some(e)));
        }
    }
    Ok(out)
}

async fn children(
    session: &Session,
    node: &NodeId,
) -> Result<Vec<opcua::types::ReferenceDescription>, opcua::types::Error> {
    let desc = BrowseDescription {
        node_id: node.clone(),
        browse_direction: BrowseDirection::Forward,
        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
        include_subtypes: true,
        node_class_mask: 0,
        result_mask: BrowseResultMask::All as u32,
    };
    let mut results = session.browse(&[desc], 1000, None).await?;
    let mut refs = Vec::new();
    while let Some(r) = results.pop() {
        refs.extend(r.references.unwrap_or_default());
        if r.continuation_point.is_null() {
            break;
        }
        results = session.browse_next(false, &[r.continuation_point]).await?;
    }
    Ok(refs)
}

/// The tree as text: one line per node, indented by depth.
pub fn render_tree(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        let indent = "  ".repeat(e.depth.saturating_sub(1));
        let _ = write!(out, "{indent}{} [{}]", e.display_name, e.node);
        match (&e.data_type, &e.value) {
            (Some(t), Some(v)) => {
                let _ = write!(out, " {t} = {v}");
            }
            (Some(t), None) => {
                let _ = write!(out, " {t}");
            }
            _ => {
                let _ = write!(out, " ({:?})", e.class);
            }
        }
        out.push('\n');
    }
    out
}

/// A tag name from a browse name: plain characters only, as the config wants.
fn tag_name(s: &str) -> String {
    let mut name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(64);
    if name.is_empty() {
        "tag".to_string()
    } else {
        name
    }
}

/// `[[tags]]` entries for every variable, named after its path.
pub fn render_toml(entries: &[Entry], source: &str) -> String {
    let mut out = String::new();
    let mut path: Vec<String> = Vec::new();
    let mut used = HashSet::new();
    for e in entries {
        path.truncate(e.depth.saturating_sub(1));
        path.push(e.browse_name.clone());
        if e.class != NodeClass::Variable {
            continue;
        }
        // The last two path parts are usually enough to tell tags apart.
        let start = path.len().saturating_sub(2);
        let mut name = tag_name(&path[start..].join("_"));
        let base = name.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let node = e
            .node
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let _ = writeln!(out, "[[tags]]");
        let _ = writeln!(out, "name = \"{name}\"");
        let _ = writeln!(out, "source = \"{source}\"");
        let _ = writeln!(out, "node = \"{node}\"");
        if let Some(t) = &e.data_type {
            let _ = writeln!(
                out,
                "# {t}, value when browsed: {}",
                e.value.as_deref().unwrap_or("?")
            );
        }
        out.push('\n');
    }
    out
}
