//! Domains and ordering.

use super::*;

pub(super) enum Dom {
    Const(bool),
    Leaf {
        field: &'static F,
        op: String,
        value: Value,
    },
    Not(Box<Dom>),
    And(Box<Dom>, Box<Dom>),
    Or(Box<Dom>, Box<Dom>),
}

pub(super) const OPS: &[&str] = &[
    "=",
    "!=",
    "in",
    "not in",
    "<",
    ">",
    "<=",
    ">=",
    "ilike",
    "not ilike",
];

/// Prefix-notation domain, read from the end like `expression.normalize_domain`.
pub(super) fn parse_domain(def: &'static ModelDef, domain: &Value) -> Result<Dom, OdooError> {
    let bad = || OdooError::value_error(format!("Invalid domain: {domain}"));
    let items = domain.as_array().ok_or_else(bad)?;
    // Evaluation recurses over the tree: keep hostile domains from blowing the stack.
    if items.len() > 1000 {
        return Err(OdooError::value_error(
            "FakeOdoo limitation: domains are limited to 1000 items",
        ));
    }
    let mut stack: Vec<Dom> = Vec::new();
    for item in items.iter().rev() {
        match item.as_str() {
            Some("!") => {
                let a = stack.pop().ok_or_else(bad)?;
                stack.push(Dom::Not(Box::new(a)));
            }
            Some(op @ ("&" | "|")) => {
                let a = Box::new(stack.pop().ok_or_else(bad)?);
                let b = Box::new(stack.pop().ok_or_else(bad)?);
                stack.push(if op == "&" {
                    Dom::And(a, b)
                } else {
                    Dom::Or(a, b)
                });
            }
            _ => stack.push(parse_leaf(def, item)?),
        }
    }
    Ok(stack
        .into_iter()
        .reduce(|a, b| Dom::And(Box::new(a), Box::new(b)))
        .unwrap_or(Dom::Const(true)))
}

pub(super) fn parse_leaf(def: &'static ModelDef, leaf: &Value) -> Result<Dom, OdooError> {
    let bad = || OdooError::value_error(format!("Invalid leaf {leaf}"));
    let [left, op, right] = leaf.as_array().map(Vec::as_slice).ok_or_else(bad)? else {
        return Err(bad());
    };
    let mut op = op.as_str().ok_or_else(bad)?.to_lowercase();
    if let (Some(n @ (0 | 1)), "=", Some(1)) = (left.as_i64(), op.as_str(), right.as_i64()) {
        return Ok(Dom::Const(n == 1)); // TRUE_LEAF / FALSE_LEAF
    }
    if op == "<>" {
        op = "!=".into();
    }
    if !OPS.contains(&op.as_str()) {
        return Err(OdooError::value_error(format!(
            "Invalid operator '{op}' in leaf {leaf}"
        )));
    }
    // Like normalize_leaf: `=` with a list means `in`.
    if right.is_array() && (op == "=" || op == "!=") {
        op = if op == "=" {
            "in".into()
        } else {
            "not in".into()
        };
    }
    let name = left.as_str().ok_or_else(bad)?;
    let field = def.field(name).ok_or_else(|| {
        OdooError::value_error(format!("Invalid field {}.{name} in leaf {leaf}", def.name))
    })?;
    Ok(Dom::Leaf {
        field,
        op,
        value: right.clone(),
    })
}

impl Dom {
    pub(super) fn mentions(&self, field: &str) -> bool {
        match self {
            Dom::Const(_) => false,
            Dom::Leaf { field: f, .. } => f.name == field,
            Dom::Not(a) => a.mentions(field),
            Dom::And(a, b) | Dom::Or(a, b) => a.mentions(field) || b.mentions(field),
        }
    }
}

pub(super) fn compare(left: &Value, op: &str, right: &Value) -> bool {
    let eq = |r: &Value| {
        if is_false(r) {
            is_false(left)
        } else {
            json_eq(left, r)
        }
    };
    let list = || match right {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    match op {
        "=" => eq(right),
        "!=" => !eq(right), // Odoo includes NULLs in `!=` and `not in`
        "in" => list().iter().any(eq),
        "not in" => !list().iter().any(eq),
        // Case-insensitive substring (`%value%`), as SQL ILIKE.
        "ilike" | "not ilike" => {
            let found = match (left, right) {
                (Value::String(l), Value::String(r)) => {
                    l.to_lowercase().contains(&r.to_lowercase())
                }
                _ => false,
            };
            found == (op == "ilike")
        }
        _ => {
            if is_false(left) || is_false(right) {
                return false;
            }
            let o = match (left, right) {
                (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => {
                    cmp_asc(left, right, Ty::Char)
                }
                _ => return false,
            };
            match op {
                "<" => o == Ordering::Less,
                ">" => o == Ordering::Greater,
                "<=" => o != Ordering::Greater,
                _ => o != Ordering::Less,
            }
        }
    }
}

pub(super) type Order = Vec<(&'static F, bool)>;

pub(super) fn parse_order(def: &'static ModelDef, order: &str) -> Result<Order, OdooError> {
    order
        .split(',')
        .map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (name, desc) = match words.as_slice() {
                [n] => (*n, false),
                [n, d] if d.eq_ignore_ascii_case("asc") => (*n, false),
                [n, d] if d.eq_ignore_ascii_case("desc") => (*n, true),
                _ => {
                    return Err(OdooError::user(format!(
                        "Invalid \"order\" specified ({}). A valid \"order\" specification is a comma-separated \
                         list of valid field names (optionally followed by asc/desc for the direction)",
                        part.trim()
                    )))
                }
            };
            def.field(name).map(|f| (f, desc)).ok_or_else(|| OdooError::invalid_field(def.name, name))
        })
        .collect()
}
