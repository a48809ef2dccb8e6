//! Commissioning: walk a server's address space from a node and print it as
//! a tree (node ids, data types, current values), or as `[[tags]]` entries
//! ready to paste into a tag map.

use super::node_id::NodeRef;
use super::value;
use opcua::client::Session;
use opcua::types::type_loader::{ByteStringBody, JsonBody, XmlBody};
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, ExtensionObject,
    NamespaceMap, NodeClass, NodeId, ReadValueId, ReferenceTypeId, TimestampsToReturn, Variant,
};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// One node found, with its depth below the start node.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub depth: usize,
    pub browse_name: String,
    pub display_name: String,
    pub node: NodeRef,
    /// The namespace index on this server; 0 holds the standard's own nodes
    /// (the server's diagnostics), rarely a machine's signals.
    pub namespace: u16,
    pub class: NodeClass,
    /// For variables: the data type's name and the current value.
    pub data_type: Option<String>,
    pub value: Option<String>,
    /// For variables whose value the gateway cannot make a tag of: what the
    /// value is instead ("an array").
    pub unusable: Option<&'static str>,
}

/// Browse names of data type nodes, read from the server once per type.
#[derive(Default)]
struct TypeNames {
    names: HashMap<NodeId, String>,
}

impl TypeNames {
    /// Read the BrowseName of each type not known yet, in one request. A
    /// failed read only costs the names: those types show as node ids.
    async fn learn(
        &mut self,
        session: &Session,
        namespaces: &NamespaceMap,
        ids: impl IntoIterator<Item = NodeId>,
    ) {
        let mut wanted: Vec<NodeId> = Vec::new();
        for id in ids {
            if !self.names.contains_key(&id) && !wanted.contains(&id) {
                wanted.push(id);
            }
        }
        if wanted.is_empty() {
            return;
        }
        let reads: Vec<ReadValueId> = wanted
            .iter()
            .map(|id| ReadValueId {
                node_id: id.clone(),
                attribute_id: AttributeId::BrowseName as u32,
                ..Default::default()
            })
            .collect();
        let values = session
            .read(&reads, TimestampsToReturn::Neither, 0.0)
            .await
            .unwrap_or_default();
        for (i, id) in wanted.into_iter().enumerate() {
            let name = match values.get(i).and_then(|d| d.value.as_ref()) {
                Some(Variant::QualifiedName(q)) if !q.name.as_ref().is_empty() => {
                    q.name.as_ref().to_string()
                }
                // A type the server cannot name is shown by its node id.
                _ => NodeRef::from_node_id(&id, namespaces).to_string(),
            };
            self.names.insert(id, name);
        }
    }

    fn name(&self, id: &NodeId, namespaces: &NamespaceMap) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| NodeRef::from_node_id(id, namespaces).to_string())
    }
}

/// The data type of a structure the client decoded. None for a server's
/// own types: the client keeps their bytes, under the id of their encoding
/// (not of their data type), so the variable's data type names them.
fn structure_type(eo: &ExtensionObject, namespaces: &NamespaceMap) -> Option<NodeId> {
    if eo.inner_is::<ByteStringBody>() || eo.inner_is::<JsonBody>() || eo.inner_is::<XmlBody>() {
        return None;
    }
    eo.data_type()?
        .try_resolve(namespaces)
        .map(|id| id.into_owned())
}

/// The data types of the structures in a value (an array may hold some).
fn structure_types(v: &Variant, namespaces: &NamespaceMap, out: &mut Vec<NodeId>) {
    match v {
        Variant::ExtensionObject(eo) => out.extend(structure_type(eo, namespaces)),
        Variant::Array(a) => {
            for x in a.values.iter().take(value::ARRAY_SHOWN) {
                structure_types(x, namespaces, out);
            }
        }
        Variant::Variant(inner) => structure_types(inner, namespaces, out),
        Variant::DataValue(dv) => {
            if let Some(inner) = &dv.value {
                structure_types(inner, namespaces, out);
            }
        }
        _ => {}
    }
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
    let mut types = TypeNames::default();
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
                namespace: id.namespace,
                class: r.node_class,
                data_type: None,
                value: None,
                unusable: None,
            };
            found.push((id, entry));
        }
        let vars: Vec<usize> = (0..found.len())
            .filter(|i| found[*i].1.class == NodeClass::Variable)
            .collect();
        if !vars.is_empty() {
            let mut reads = Vec::new();
            for &i in &vars {
                for attr in [
                    AttributeId::DataType,
                    AttributeId::Value,
                    AttributeId::ValueRank,
                ] {
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
            let data_type = |k: usize| match values.get(3 * k).and_then(|d| d.value.as_ref()) {
                Some(Variant::NodeId(id)) => Some((**id).clone()),
                _ => None,
            };
            let good_value = |k: usize| {
                values
                    .get(3 * k + 1)
                    .filter(|d| d.status().is_good())
                    .and_then(|d| d.value.as_ref())
            };
            // 0 and above: one or more dimensions, an array even while null.
            let array = |k: usize| {
                matches!(
                    values.get(3 * k + 2).and_then(|d| d.value.as_ref()),
                    Some(Variant::Int32(rank)) if *rank >= 0
                )
            };
            // The names of all types on this level in one request.
            let mut wanted = Vec::new();
            for k in 0..vars.len() {
                wanted.extend(data_type(k));
                if let Some(v) = good_value(k) {
                    structure_types(v, namespaces, &mut wanted);
                }
            }
            types.learn(session, namespaces, wanted).await;
            for (k, &i) in vars.iter().enumerate() {
                let declared = data_type(k).map(|id| types.name(&id, namespaces));
                let e = &mut found[i].1;
                // Without a value to tell (null, unreadable) only an array's
                // rank shows that a tag cannot carry it.
                if array(k) {
                    e.unusable = Some("an array");
                }
                e.value = values.get(3 * k + 1).map(|d| match good_value(k) {
                    Some(val) => {
                        if !matches!(val, Variant::Empty) {
                            e.unusable = value::unusable(val);
                        }
                        value::display(val, &|eo| match structure_type(eo, namespaces) {
                            Some(id) => types.name(&id, namespaces),
                            None => declared.clone().unwrap_or_else(|| "Structure".into()),
                        })
                    }
                    None => format!("({})", d.status()),
                });
                e.data_type = Some(declared.unwrap_or_else(|| "?".to_string()));
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

/// Text for a TOML comment: one line, whatever the server's names hold.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `[[tags]]` entries for every variable, named after its path. Variables
/// of namespace 0 (the server's own diagnostics) only with `all`; those
/// whose value a tag cannot carry are left out with a comment saying why.
pub fn render_toml(entries: &[Entry], source: &str, all: bool) -> String {
    let mut out = String::new();
    let mut path: Vec<String> = Vec::new();
    let mut used = HashSet::new();
    let mut standard = 0;
    for e in entries {
        path.truncate(e.depth.saturating_sub(1));
        path.push(e.browse_name.clone());
        if e.class != NodeClass::Variable {
            continue;
        }
        if e.namespace == 0 && !all {
            standard += 1;
            continue;
        }
        if let Some(what) = e.unusable {
            let _ = writeln!(
                out,
                "# skipped {} [{}]: {what} ({}), not a value a tag can carry",
                one_line(&e.display_name),
                one_line(&e.node.to_string()),
                one_line(e.data_type.as_deref().unwrap_or("?")),
            );
            out.push('\n');
            continue;
        }
        // The last two path parts are usually enough to tell tags apart.
        let start = path.len().saturating_sub(2);
        let mut name = tag_name(&path[start..].join("_"));
        let base = name.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            // Within the 64 characters a name may have (tag_name's are ASCII).
            let suffix = format!("_{n}");
            name = format!("{}{suffix}", &base[..base.len().min(64 - suffix.len())]);
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
                "# {}, value when browsed: {}",
                one_line(t),
                one_line(e.value.as_deref().unwrap_or("?"))
            );
        }
        out.push('\n');
    }
    if standard > 0 {
        let _ = writeln!(
            out,
            "# {standard} variables of namespace 0 (the server's own nodes) left out; --all includes them"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, node: &str, namespace: u16, value: &str) -> Entry {
        Entry {
            depth: 1,
            browse_name: name.to_string(),
            display_name: name.to_string(),
            node: node.parse().expect("node id"),
            namespace,
            class: NodeClass::Variable,
            data_type: Some("Double".to_string()),
            value: Some(value.to_string()),
            unusable: None,
        }
    }

    #[test]
    fn toml_leaves_out_namespace_0_unless_all_and_says_why_it_skips_a_node() {
        let mut shifts = var("Shifts", "ns=2;s=Shifts", 2, "[\"a\"]");
        shifts.data_type = Some("String".into());
        shifts.unusable = Some("an array");
        let entries = vec![
            var("Speed", "ns=2;s=Speed", 2, "12.5"),
            shifts,
            var("CurrentTime", "i=2258", 0, "2026-12-01T00:00:00+00:00"),
        ];
        let text = render_toml(&entries, "press", false);
        let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
        let tags = parsed["tags"].as_array().expect("[[tags]]");
        assert_eq!(tags.len(), 1, "{text}");
        assert_eq!(tags[0]["node"].as_str(), Some("ns=2;s=Speed"));
        assert!(
            text.contains(
                "# skipped Shifts [ns=2;s=Shifts]: an array (String), not a value a tag can carry"
            ),
            "{text}"
        );
        assert!(text.contains("# 1 variables of namespace 0"), "{text}");

        let all = render_toml(&entries, "press", true);
        let parsed: toml::Table = toml::from_str(&all).expect("valid TOML");
        let nodes: Vec<&str> = parsed["tags"]
            .as_array()
            .expect("[[tags]]")
            .iter()
            .filter_map(|t| t["node"].as_str())
            .collect();
        assert_eq!(nodes, ["ns=2;s=Speed", "i=2258"]);
        assert!(!all.contains("namespace 0"), "{all}");
    }

    #[test]
    fn names_stay_unique_and_within_64_characters() {
        let long = "x".repeat(80);
        let entries = vec![
            var(&long, "ns=2;s=A", 2, "1"),
            var(&long, "ns=2;s=B", 2, "2"),
        ];
        let text = render_toml(&entries, "press", false);
        let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
        let names: Vec<&str> = parsed["tags"]
            .as_array()
            .expect("[[tags]]")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names.len(), 2);
        assert_ne!(names[0], names[1]);
        assert!(names.iter().all(|n| n.len() <= 64), "{names:?}");
    }

    #[test]
    fn a_name_with_a_line_break_stays_in_its_comment() {
        let mut e = var("Bad\nName", "ns=2;s=X", 2, "1");
        e.unusable = Some("a structure");
        let text = render_toml(&[e], "press", false);
        assert!(toml::from_str::<toml::Table>(&text).is_ok(), "{text}");
        assert!(text.contains("# skipped Bad Name"), "{text}");
    }
}
