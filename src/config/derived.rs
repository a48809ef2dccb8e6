//! `[[derived]]` tags: a value computed from other tags by an expression
//! (evalexpr's language: arithmetic, comparisons, `&&`, `||`, `!`, `if`,
//! and pure functions such as `min`, `max`, `math::abs`), which rules read
//! like any tag. A boolean derived tag is a condition: an alarm with
//! `when = true` on `oven_temp > 260 && door_closed`.
//!
//! Checked at load: the expression parses; every name in it is a tag or a
//! derived tag (pointed at inside the string); it type-checks with the
//! tags' types (a number or a boolean comes out); it assigns nothing; and
//! no derived tag depends on itself through others.

use super::raw::S;
use super::{TagConfig, TagPoint, Validator};
use crate::sources::modbus::types::DataType;
use evalexpr::{ContextWithMutableVariables, HashMapContext, Node, Value as Ev};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDerived {
    pub name: Option<S<String>>,
    pub expr: Option<S<String>>,
    pub engineering_unit: Option<S<String>>,
}

/// A validated derived tag. `inputs` are the tags and derived tags its
/// expression names, in order of first use.
#[derive(Clone, Debug)]
pub struct DerivedTag {
    pub name: String,
    /// The name's id in the config's tag table.
    pub id: crate::tags::TagId,
    pub expr: String,
    pub tree: Node,
    pub inputs: Vec<String>,
    /// `inputs`' ids, in the same order.
    pub input_ids: Vec<crate::tags::TagId>,
    pub engineering_unit: Option<String>,
}

/// What a tag's values are, as far as the config tells.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Number,
    Bool,
    Text,
}

fn kind_of(tag: &TagConfig) -> Option<Kind> {
    match &tag.point {
        TagPoint::Modbus(m) => Some(match m.data_type {
            DataType::Bool => Kind::Bool,
            DataType::Text(_) => Kind::Text,
            _ => Kind::Number,
        }),
        #[cfg(feature = "mqtt")]
        TagPoint::Mqtt(m) => m.value_type.map(|t| {
            if t == crate::sources::mqtt::payload::ValueType::Bool {
                Kind::Bool
            } else {
                Kind::Number
            }
        }),
        // The server reports the type with each value, not up front.
        #[cfg(feature = "opcua")]
        TagPoint::OpcUa(_) => None,
    }
}

/// A value of that kind, to type-check an expression by evaluating it.
fn sample_of(kind: Kind) -> Ev {
    match kind {
        Kind::Number => Ev::Float(1.0),
        Kind::Bool => Ev::Boolean(false),
        Kind::Text => Ev::String(String::new()),
    }
}

impl Validator<'_> {
    pub(super) fn derived(&mut self, raw: &[S<RawDerived>], tags: &[TagConfig]) -> Vec<DerivedTag> {
        let tag_kinds: HashMap<&str, Option<Kind>> =
            tags.iter().map(|t| (t.name.as_str(), kind_of(t))).collect();
        let names: HashSet<String> = raw
            .iter()
            .filter_map(|d| d.get_ref().name.as_ref().map(|n| n.get_ref().clone()))
            .collect();
        let mut out: Vec<(DerivedTag, &S<String>)> = Vec::new();
        let mut seen = HashSet::new();
        for d in raw {
            let r = d.get_ref();
            let Some(name) = self.require(d, &r.name, "name", "every derived tag needs a name")
            else {
                continue;
            };
            let name_str = self.plain_name(name, "derived tag name");
            if !seen.insert(name_str.clone()) || tag_kinds.contains_key(name_str.as_str()) {
                self.err(
                    name,
                    format!("tag {name_str:?} is defined twice (tag names are shared by [[tags]] and [[derived]])"),
                );
            }
            self.declared_tags.insert(name_str.clone());
            let Some(expr) = self.require(
                d,
                &r.expr,
                "expr",
                "the expression, e.g. expr = \"good - scrap\" or expr = \"oven_temp > 260 && door_closed\"",
            ) else {
                continue;
            };
            let tree = match evalexpr::build_operator_tree::<evalexpr::DefaultNumericTypes>(
                expr.get_ref(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    self.err(expr, format!("the expression does not parse: {e}"));
                    continue;
                }
            };
            // Expressions compute; they never write a tag or chain steps.
            let assigns = tree.iter().any(|n| {
                use evalexpr::Operator as Op;
                matches!(
                    n.operator(),
                    Op::Assign
                        | Op::AddAssign
                        | Op::SubAssign
                        | Op::MulAssign
                        | Op::DivAssign
                        | Op::ModAssign
                        | Op::ExpAssign
                        | Op::AndAssign
                        | Op::OrAssign
                        | Op::Chain
                )
            });
            if assigns {
                self.err(
                    expr,
                    "an expression computes a value and assigns nothing: write `==` to compare, and no `=` or `;`",
                );
                continue;
            }
            let mut inputs: Vec<String> = Vec::new();
            let mut unknown = false;
            for id in tree.iter_variable_identifiers() {
                if inputs.iter().any(|i| i == id) {
                    continue;
                }
                if !tag_kinds.contains_key(id) && !names.contains(id) {
                    unknown = true;
                    let hint = if expr.get_ref().contains('-') {
                        " (a tag name with `-` reads as a subtraction in an expression: rename the tag with `_`)"
                    } else {
                        ""
                    };
                    self.err_inside(
                        expr,
                        id,
                        format!("{id:?} is not a tag: an expression reads [[tags]] and [[derived]] by name{hint}"),
                    );
                }
                inputs.push(id.to_string());
            }
            if unknown {
                continue;
            }
            out.push((
                DerivedTag {
                    name: name_str,
                    id: crate::tags::TagId::UNCONFIGURED,
                    expr: expr.get_ref().clone(),
                    tree,
                    inputs,
                    input_ids: Vec::new(),
                    engineering_unit: r.engineering_unit.as_ref().map(|u| u.get_ref().clone()),
                },
                expr,
            ));
        }
        let order = self.derived_order(&out);
        // Type-check in dependency order, each with its inputs' kinds.
        let mut kinds: HashMap<String, Option<Kind>> =
            tag_kinds.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        let mut checked = Vec::new();
        for i in order {
            let (d, expr) = &out[i];
            let known: Option<Vec<(&String, Kind)>> = d
                .inputs
                .iter()
                .map(|n| kinds.get(n).copied().flatten().map(|k| (n, k)))
                .collect();
            let kind = match known {
                // An input of unknown type (OPC UA): checked at run time.
                None => None,
                Some(inputs) => {
                    let mut ctx = HashMapContext::<evalexpr::DefaultNumericTypes>::new();
                    for (n, k) in inputs {
                        let _ = ctx.set_value(n.clone(), sample_of(k));
                    }
                    match d.tree.eval_with_context(&ctx) {
                        Ok(Ev::Boolean(_)) => Some(Kind::Bool),
                        Ok(Ev::Float(_) | Ev::Int(_)) => Some(Kind::Number),
                        Ok(other) => {
                            self.err(
                                *expr,
                                format!("the expression gives {other:?}: it must give a number or true/false"),
                            );
                            None
                        }
                        Err(e) => {
                            self.err(
                                *expr,
                                format!("the expression does not type-check: {e} (give numbers to arithmetic and comparisons, true/false to `&&`, `||` and `!`)"),
                            );
                            None
                        }
                    }
                }
            };
            kinds.insert(d.name.clone(), kind);
            checked.push(d.clone());
        }
        checked
    }

    /// The derived tags in an order where each comes after its inputs.
    /// Each loop is reported, and its tags are left out.
    fn derived_order(&mut self, list: &[(DerivedTag, &S<String>)]) -> Vec<usize> {
        let mut out: Vec<bool> = vec![false; list.len()];
        loop {
            match order(list, &out) {
                Ok(order) => return order,
                Err(cycle) => {
                    let names: Vec<&str> = cycle.iter().map(|c| list[*c].0.name.as_str()).collect();
                    let first = names.first().copied().unwrap_or_default();
                    self.err(
                        list[cycle[0]].1,
                        format!(
                            "derived tags depend on each other in a loop ({}): {first} would be computed from itself; break the loop by computing one of them from [[tags]] only",
                            names.join(" uses ")
                        ),
                    );
                    for c in cycle {
                        out[c] = true;
                    }
                }
            }
        }
    }
}

/// A topological order of the tags not left `out`, or a loop among them
/// (its tags in order, the first repeated at the end). A tag whose input
/// is left out is left out too: it cannot be computed.
fn order(list: &[(DerivedTag, &S<String>)], out: &[bool]) -> Result<Vec<usize>, Vec<usize>> {
    let index: HashMap<&str, usize> = list
        .iter()
        .enumerate()
        .map(|(i, (d, _))| (d.name.as_str(), i))
        .collect();
    // 0 = not seen, 1 = on the current path, 2 = placed, 3 = not computable.
    let mut mark: Vec<u8> = out.iter().map(|o| if *o { 3 } else { 0 }).collect();
    let mut placed = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        list: &[(DerivedTag, &S<String>)],
        index: &HashMap<&str, usize>,
        mark: &mut [u8],
        path: &mut Vec<usize>,
        placed: &mut Vec<usize>,
    ) -> Result<bool, Vec<usize>> {
        match mark[i] {
            2 => return Ok(true),
            3 => return Ok(false),
            1 => {
                let from = path.iter().position(|p| *p == i).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            _ => {}
        }
        mark[i] = 1;
        path.push(i);
        let mut computable = true;
        for input in &list[i].0.inputs {
            if let Some(&j) = index.get(input.as_str()) {
                computable &= visit(j, list, index, mark, path, placed)?;
            }
        }
        path.pop();
        if computable {
            mark[i] = 2;
            placed.push(i);
        } else {
            mark[i] = 3;
        }
        Ok(computable)
    }
    for i in 0..list.len() {
        visit(i, list, &index, &mut mark, &mut path, &mut placed)?;
    }
    Ok(placed)
}
