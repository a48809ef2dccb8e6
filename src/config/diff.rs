//! `plantgate config diff OLD NEW`: what a change to a tag map does, in
//! words a controls engineer reviews before it reaches production. Sources,
//! tags and rules are matched by name and compared key by key as written;
//! every rule that changes, or reads a tag that changes, is listed with the
//! Odoo records it writes. Both files must be valid configs.

use super::{Config, EventRule, ProductionTarget};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use toml::{Table, Value};

/// The sections that hold named entries; everything else is compared by key.
const LISTS: [(&str, &str); 4] = [
    ("sources", "source"),
    ("tags", "tag"),
    ("derived", "derived tag"),
    ("events", "rule"),
];

/// A change report; empty input differences give "no change".
pub fn diff(
    old: &Config,
    old_text: &str,
    new: &Config,
    new_text: &str,
) -> Result<String, toml::de::Error> {
    let old_t: Table = toml::from_str(old_text)?;
    let new_t: Table = toml::from_str(new_text)?;
    let mut out = String::new();
    let mut changed_tags = BTreeSet::new();
    for (section, what) in LISTS {
        let a = named(&old_t, section);
        let b = named(&new_t, section);
        let entries = entry_changes(&a, &b, section, what);
        if section == "tags" || section == "derived" {
            changed_tags.extend(entries.iter().map(|(n, _)| n.clone()));
        }
        if section == "derived" {
            // A derived tag whose inputs changed gives other values too
            // (in dependency order, so a chain is followed).
            for d in &new.derived {
                if d.inputs.iter().any(|i| changed_tags.contains(i)) {
                    changed_tags.insert(d.name.clone());
                }
            }
        }
        let lines = if section == "events" {
            rule_lines(old, new, &a, &b, &changed_tags, entries)
        } else {
            entries.into_iter().map(|(_, l)| l).collect()
        };
        if !lines.is_empty() {
            let header = if section == "events" {
                "rules"
            } else {
                section
            };
            let _ = writeln!(out, "{header}:");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
    }
    let rest = |t: &Table| {
        let mut m = BTreeMap::new();
        for (k, v) in t {
            if !LISTS.iter().any(|(s, _)| s == k) {
                flatten(k, v, &mut m);
            }
        }
        m
    };
    let (ra, rb) = (rest(&old_t), rest(&new_t));
    let other = changes(&ra, &rb);
    if !other.is_empty() {
        let _ = writeln!(out, "settings:");
        for c in other {
            let _ = writeln!(out, "  ~ {c}");
        }
        // Where production goes in Odoo changes for every production rule.
        if ra.get("odoo.production_target") != rb.get("odoo.production_target") {
            for rule in new
                .events
                .iter()
                .filter(|r| matches!(r, EventRule::Production(_)))
            {
                let _ = writeln!(
                    out,
                    "      rule {} now writes {}",
                    rule.name(),
                    writes(rule, new)
                );
            }
        }
    }
    if out.is_empty() {
        out.push_str("no change\n");
    }
    Ok(out)
}

/// Added (+), changed (~) and removed (-) entries: (name, line).
fn entry_changes(
    a: &BTreeMap<String, Table>,
    b: &BTreeMap<String, Table>,
    section: &str,
    what: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, entry) in b {
        match a.get(name) {
            None => out.push((
                name.clone(),
                format!("  + {what} {name}{}", summary(section, entry)),
            )),
            Some(before) => {
                let ch = changes(&flat(before), &flat(entry));
                if !ch.is_empty() {
                    out.push((
                        name.clone(),
                        format!("  ~ {what} {name}: {}", ch.join("; ")),
                    ));
                }
            }
        }
    }
    for (name, entry) in a {
        if !b.contains_key(name) {
            out.push((
                name.clone(),
                format!("  - {what} {name}{}", summary(section, entry)),
            ));
        }
    }
    out
}

/// Rule lines with what each affected rule writes in Odoo, plus the rules
/// that did not change but read a tag that did.
fn rule_lines(
    old: &Config,
    new: &Config,
    a: &BTreeMap<String, Table>,
    b: &BTreeMap<String, Table>,
    changed_tags: &BTreeSet<String>,
    entries: Vec<(String, String)>,
) -> Vec<String> {
    let find = |c: &'_ Config, name: &str| c.events.iter().find(|r| r.name() == name).cloned();
    let mut out = Vec::new();
    for (name, line) in entries {
        out.push(line);
        // A removed rule writes what it wrote under the old config.
        let rule = find(new, &name)
            .map(|r| (r, new))
            .or_else(|| find(old, &name).map(|r| (r, old)));
        if let Some((rule, cfg)) = rule {
            out.push(format!("      writes {}", writes(&rule, cfg)));
        }
    }
    for rule in &new.events {
        let name = rule.name();
        let unchanged = a
            .get(name)
            .is_some_and(|x| b.get(name).is_some_and(|y| flat(x) == flat(y)));
        if !unchanged {
            continue;
        }
        let read: Vec<&str> = rule_tags(rule)
            .filter(|t| changed_tags.contains(*t))
            .collect();
        if !read.is_empty() {
            out.push(format!(
                "  ! rule {name}: unchanged, but reads changed tag {}",
                read.join(", ")
            ));
            out.push(format!("      writes {}", writes(rule, new)));
        }
    }
    out
}

fn rule_tags(rule: &EventRule) -> Box<dyn Iterator<Item = &str> + '_> {
    match rule {
        EventRule::Production(p) => Box::new(
            std::iter::once(p.tag.as_str()).chain(p.scrap.as_ref().map(|s| s.tag.as_str())),
        ),
        EventRule::Downtime(d) => Box::new(d.tags()),
        EventRule::Alarm(a) => Box::new(std::iter::once(a.tag.as_str())),
        EventRule::Measurement(m) => {
            Box::new(std::iter::once(m.tag.as_str()).chain(m.product_tag.as_deref()))
        }
        EventRule::Window(w) => Box::new(std::iter::once(w.tag.as_str())),
        EventRule::Stock(s) => Box::new(std::iter::once(s.tag.as_str())),
    }
}

/// The Odoo records a rule writes, as its config says.
fn writes(rule: &EventRule, cfg: &Config) -> String {
    match rule {
        EventRule::Production(p) => {
            let target = match cfg.odoo.production_target {
                ProductionTarget::Workorder => {
                    "mrp.workorder qty_produced (Odoo carries it to the MO's qty_producing)"
                }
                ProductionTarget::Production => "mrp.production qty_producing",
                ProductionTarget::Both => {
                    "mrp.workorder qty_produced and mrp.production qty_producing"
                }
            };
            let scrap = p
                .scrap
                .as_ref()
                .map(|s| format!(", and a validated stock.scrap on its MO for the parts {} counts", s.tag))
                .unwrap_or_default();
            format!(
                "{target} of the work order running at work center {}{scrap}",
                p.workcenter
            )
        }
        EventRule::Downtime(d) => {
            let losses: BTreeSet<&str> = d
                .reasons
                .iter()
                .map(|r| r.loss.as_str())
                .chain(d.codes.iter().map(|c| c.loss.as_str()))
                .chain(std::iter::once(d.default_loss.as_str()))
                .collect();
            let intervals = if d.intervals {
                "; running, idle and down intervals to MQTT and metrics only"
            } else {
                ""
            };
            format!(
                "mrp.workcenter.productivity time logs at work center {} (losses {}){intervals}",
                d.workcenter,
                losses.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
        EventRule::Alarm(a) => format!(
            "maintenance.request (corrective) on equipment {}, once per alarm, updated when it clears",
            a.equipment
        ),
        EventRule::Measurement(m) => format!(
            "quality.check (and quality.alert on a run of failures) at work center {}, or notes on the manufacturing order without the Quality app",
            m.workcenter
        ),
        EventRule::Window(w) => format!(
            "a note every {} in the chatter of work center {} (summary of {})",
            humantime::format_duration(w.every),
            w.workcenter,
            w.tag
        ),
        EventRule::Stock(s) => format!(
            "stock.quant counted quantity (inventory_quantity, applied) of product {} at location {}",
            s.product, s.location
        ),
    }
}

/// A section's entries by name.
fn named(t: &Table, section: &str) -> BTreeMap<String, Table> {
    let Some(Value::Array(items)) = t.get(section) else {
        return BTreeMap::new();
    };
    items
        .iter()
        .filter_map(|v| v.as_table())
        .filter_map(|e| Some((e.get("name")?.as_str()?.to_string(), e.clone())))
        .collect()
}

/// What an added or removed entry is, briefly.
fn summary(section: &str, e: &Table) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str);
    match section {
        "sources" => s("kind").map(|k| format!(" ({k})")).unwrap_or_default(),
        "tags" => s("source")
            .map(|k| format!(" (source {k})"))
            .unwrap_or_default(),
        "derived" => s("expr").map(|x| format!(" ({x})")).unwrap_or_default(),
        "events" => {
            let kind = s("kind").unwrap_or("?");
            match s("tag") {
                Some(t) => format!(" ({kind}, reads {t})"),
                None => format!(" ({kind})"),
            }
        }
        _ => String::new(),
    }
}

fn flat(t: &Table) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in t {
        if k != "name" {
            flatten(k, v, &mut m);
        }
    }
    m
}

/// Dotted keys to values as TOML writes them. Arrays of tables are keyed by
/// what identifies an element (`state` of a reason, `code` of a fault
/// code, a `name`), else by position.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Table(t) => {
            for (k, v) in t {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_table) => {
            for (i, item) in items.iter().enumerate() {
                let t = item.as_table().cloned().unwrap_or_default();
                let id = ["state", "code", "name"]
                    .iter()
                    .find_map(|k| t.get(*k).map(|v| format!("{k} {}", inline(v))))
                    .unwrap_or_else(|| format!("#{}", i + 1));
                for (k, v) in &t {
                    flatten(&format!("{prefix}[{id}].{k}"), v, out);
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), inline(other));
        }
    }
}

/// `key old → new` per changed key, in key order; a shadow run
/// (`config try`) words its changed event fields the same way.
pub(crate) fn changes(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (Some(x), Some(y)) => Some(format!("{k} {x} → {y}")),
            (None, Some(y)) => Some(format!("{k} = {y} (new)")),
            (Some(x), None) => Some(format!("{k} removed (was {x})")),
            (None, None) => None,
        })
        .collect()
}

/// A value as TOML writes it inline (strings quoted).
fn inline(v: &Value) -> String {
    match v {
        // A JSON string is a valid TOML basic string.
        Value::String(s) => serde_json::Value::from(s.as_str()).to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{k} = {}", inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
