//! Exceptions: what Odoo raises, independent of how it is put on the wire.

use super::*;

#[derive(Clone, Debug)]
pub(super) struct OdooError {
    pub(super) name: &'static str,
    pub(super) message: String,
    pub(super) arguments: Vec<Value>,
    /// Set where Odoo would hit a SQL NOT NULL violation: `load` reports those as
    /// "Missing required value" messages instead of the ValidationError text.
    pub(super) not_null: Option<&'static F>,
}

impl OdooError {
    pub(super) fn new(name: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        OdooError {
            name,
            arguments: vec![json!(message)],
            message,
            not_null: None,
        }
    }
    pub(super) fn user(m: impl Into<String>) -> Self {
        Self::new("odoo.exceptions.UserError", m)
    }
    pub(super) fn validation(m: impl Into<String>) -> Self {
        Self::new("odoo.exceptions.ValidationError", m)
    }
    pub(super) fn type_error(m: impl Into<String>) -> Self {
        Self::new("builtins.TypeError", m)
    }
    pub(super) fn value_error(m: impl Into<String>) -> Self {
        Self::new("builtins.ValueError", m)
    }
    pub(super) fn key_error(key: &str) -> Self {
        OdooError {
            arguments: vec![json!(key)],
            ..Self::new("builtins.KeyError", format!("'{key}'"))
        }
    }
    pub(super) fn missing(model: &str, ids: &[i64]) -> Self {
        let msg = format!(
            "Record does not exist or has been deleted.\n(Record: {model}({}), User: {UID})",
            py_tuple(ids)
        );
        Self::new("odoo.exceptions.MissingError", msg)
    }
    pub(super) fn invalid_field(model: &str, field: &str) -> Self {
        Self::value_error(format!("Invalid field '{field}' on model '{model}'"))
    }
    /// 16/17 `_as_validation_error` text for a NOT NULL violation.
    pub(super) fn not_null(def: &ModelDef, f: &'static F) -> Self {
        let msg = format!(
            "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n\
             - Delete: another model requires the record being deleted. If possible, archive it instead.\n\n\
             Model: {} ({})\nField: {} ({})\n",
            def.desc, def.name, f.label, f.name
        );
        OdooError {
            not_null: Some(f),
            ..Self::validation(msg)
        }
    }
    /// 16/17 `_as_validation_error` text for a foreign key violation.
    pub(super) fn foreign_key(def: &ModelDef, f: &F) -> Self {
        Self::validation(format!(
            "The operation cannot be completed: another model requires the record being deleted. \
             If possible, archive it instead.\n\nModel: {} ({})\nConstraint: {}_{}_fkey\n",
            def.desc,
            def.name,
            def.name.replace('.', "_"),
            f.name
        ))
    }
    pub(super) fn traceback(&self) -> String {
        format!(
            "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/odoo/http.py\", \
             line 1807, in dispatch_rpc\n    return dispatch(method, params)\n  File \
             \"/usr/lib/python3/dist-packages/odoo/service/model.py\", line 156, in retrying\n    \
             result = func()\n{}: {}\n",
            self.name, self.message
        )
    }
}

/// Python's repr of the ids tuple inside a recordset repr: `(7,)`, `(7, 8)`.
pub(super) fn py_tuple(ids: &[i64]) -> String {
    match ids {
        [one] => format!("{one},"),
        _ => ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

pub(super) fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}
