//! `load` (BaseModel.load + ir.fields.converter): data errors become messages,
//! any error message rolls the whole call back, and the RPC still succeeds.

use super::*;

impl Db {
    pub(super) fn load(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        fields: &Value,
        data: &Value,
    ) -> Result<Value, OdooError> {
        let names = fields
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                OdooError::type_error(format!(
                    "load() fields must be a list of strings, got {fields}"
                ))
            })?;
        let cols = names
            .iter()
            .map(|n| parse_col(def, n))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = data.as_array().ok_or_else(|| {
            OdooError::type_error(format!("load() data must be a list of rows, got {data}"))
        })?;
        let module = ctx
            .context
            .get("module")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or("__import__");
        let tz = input_tz(ctx.context);
        let mark = self.journal.len();
        let (mut ids, mut messages) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            let cells = cells_of(row, cols.len(), i)?;
            let (mut vals, mut xmlid, mut dbid, mut ok) = (Map::new(), None, None, true);
            for (col, cell) in cols.iter().zip(&cells) {
                let cell = cell.as_str();
                let converted = match col {
                    Col::Xmlid => {
                        xmlid = Some(cell)
                            .filter(|c| !c.is_empty())
                            .map(|c| qualify(c, module));
                        continue;
                    }
                    Col::DbId if cell.is_empty() => continue,
                    Col::DbId => match cell.trim().parse::<i64>() {
                        Ok(n) => {
                            dbid = Some(n);
                            continue;
                        }
                        Err(_) => Err((
                            format!("Invalid database id '{cell}' for the field '.id'"),
                            None,
                        )),
                    },
                    Col::Field(f) => self
                        .parse_cell(f, cell, &tz)
                        .map(|v| (f, v))
                        .map_err(|m| (m, Some(*f))),
                    Col::RefXmlid(f) => self
                        .ref_xmlid(f, cell, module)
                        .map(|v| (f, v))
                        .map_err(|m| (m, Some(*f))),
                    Col::RefDbId(f) => self
                        .ref_dbid(f, cell)
                        .map(|v| (f, v))
                        .map_err(|m| (m, Some(*f))),
                };
                match converted {
                    Ok((f, v)) if !f.computed => {
                        vals.insert(f.name.to_string(), v);
                    }
                    Ok(_) => {}
                    Err((msg, f)) => {
                        messages.push(load_message(i, msg, f));
                        ok = false;
                    }
                }
            }
            if !ok {
                continue;
            }
            match self.upsert(ctx, def, xmlid, dbid, Value::Object(vals)) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    let (msg, f) = match e.not_null {
                        Some(f) => (
                            format!(
                                "Missing required value for the field '{}' ({})",
                                f.label, f.name
                            ),
                            Some(f),
                        ),
                        None if e.name.starts_with("odoo.exceptions.") => (e.message, None),
                        None => {
                            let class = e.name.trim_start_matches("builtins.");
                            (
                                format!(
                                    "Unknown error during import: <class '{class}'>: {}",
                                    e.message
                                ),
                                None,
                            )
                        }
                    };
                    messages.push(load_message(i, msg, f));
                }
            }
        }
        if !messages.is_empty() {
            self.rollback(mark);
            return Ok(json!({"ids": false, "messages": messages, "nextrow": 0}));
        }
        Ok(json!({"ids": ids, "messages": [], "nextrow": 0}))
    }

    /// `_load_records`: create or update by external id.
    pub(super) fn upsert(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        xmlid: Option<String>,
        dbid: Option<i64>,
        vals: Value,
    ) -> Result<i64, OdooError> {
        let Some(xmlid) = xmlid else {
            return match dbid {
                Some(id) => self.write(ctx, def, &[id], &vals).map(|_| id),
                None => self.create_one(ctx, def, &vals),
            };
        };
        let (module, name) = xmlid.split_once('.').unwrap_or(("", &xmlid));
        if let Some((imd, model, res_id)) = self.find_xmlid(module, name) {
            if model != def.name {
                return Err(OdooError::validation(format!(
                    "For external id {xmlid} when trying to create/update a record of model {} \
                     found record of different model {model} ({res_id})",
                    def.name
                )));
            }
            if self.exists(def.name, res_id) {
                self.write(ctx, def, &[res_id], &vals)?;
                return Ok(res_id);
            }
            self.put(IMD, imd, None); // stale external id: drop it and create anew
        }
        let id = self.create_one(ctx, def, &vals)?;
        self.add_xmlid(module, name, def.name, id);
        Ok(id)
    }

    /// ir.fields.converter `_str_to_<type>`; errors are already-formatted messages.
    pub(super) fn parse_cell(
        &self,
        f: &F,
        s: &str,
        tz: &Result<i64, String>,
    ) -> Result<Value, String> {
        let label = f.label;
        if s.is_empty() {
            return Ok(FALSE);
        }
        match f.ty {
            Ty::Char | Ty::Text => Ok(json!(s)),
            Ty::Bool => Ok(json!(!matches!(
                s.to_lowercase().as_str(),
                "0" | "false" | "no"
            ))),
            Ty::Int => {
                s.trim().parse::<i64>().map(Value::from).map_err(|_| {
                    format!("'{s}' does not seem to be an integer for field '{label}'")
                })
            }
            Ty::Float => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Value::from)
                .ok_or_else(|| format!("'{s}' does not seem to be a number for field '{label}'")),
            Ty::Sel(opts) => opts
                .iter()
                .find(|(k, l)| k.eq_ignore_ascii_case(s) || l.eq_ignore_ascii_case(s))
                .map(|(k, _)| json!(k))
                .ok_or_else(|| format!("Value '{s}' not found in selection field '{label}'")),
            Ty::Datetime => {
                let local = parse_dt(s).ok_or_else(|| {
                    format!("'{s}' does not seem to be a valid datetime for field '{label}'")
                })?;
                let offset = tz.clone()?;
                Ok(json!((local - chrono::TimeDelta::seconds(offset))
                    .format(DT_FMT)
                    .to_string()))
            }
            Ty::M2o(co) => {
                // name_search(name=s, operator='='); work centers also match on code.
                let def = model_def(co).ok_or_else(|| {
                    format!("No matching record found for name '{s}' in field '{label}'")
                })?;
                let active = def.field("active");
                self.rows(co)
                    .map(|(id, _)| id)
                    .filter(|&id| active.is_none_or(|a| truthy(&self.get(def, id, a))))
                    .find(|&id| {
                        self.display_name(def, id) == s
                            || (co == WC && self.val(WC, id, "code") == json!(s))
                    })
                    .map(Value::from)
                    .ok_or_else(|| {
                        format!("No matching record found for name '{s}' in field '{label}'")
                    })
            }
        }
    }

    pub(super) fn ref_xmlid(&self, f: &F, s: &str, module: &str) -> Result<Value, String> {
        let Ty::M2o(co) = f.ty else {
            return Err(format!("Field '{}' is not relational", f.label));
        };
        if s.is_empty() {
            return Ok(FALSE);
        }
        let full = qualify(s, module);
        let (m, n) = full.split_once('.').unwrap_or(("", &full));
        match self.find_xmlid(m, n) {
            Some((_, model, id)) if model == co && self.exists(co, id) => Ok(json!(id)),
            _ => Err(format!(
                "No matching record found for external id '{s}' in field '{}'",
                f.label
            )),
        }
    }

    pub(super) fn ref_dbid(&self, f: &F, s: &str) -> Result<Value, String> {
        let Ty::M2o(co) = f.ty else {
            return Err(format!("Field '{}' is not relational", f.label));
        };
        if s.is_empty() {
            return Ok(FALSE);
        }
        let id: i64 = s
            .trim()
            .parse()
            .map_err(|_| format!("Invalid database id '{s}' for the field '{}'", f.label))?;
        if self.exists(co, id) {
            Ok(json!(id))
        } else {
            Err(format!(
                "No matching record found for database id '{s}' in field '{}'",
                f.label
            ))
        }
    }
}

pub(super) fn parse_col(def: &'static ModelDef, name: &str) -> Result<Col, OdooError> {
    let (fname, sub) = match name.split_once('/') {
        Some((f, s)) => (f, Some(s)),
        None => (name, None),
    };
    match (fname, sub) {
        ("id", None) => return Ok(Col::Xmlid),
        (".id", None) => return Ok(Col::DbId),
        _ => {}
    }
    let f = def
        .field(fname)
        .ok_or_else(|| OdooError::key_error(fname))?;
    match (sub, f.ty) {
        (None, _) => Ok(Col::Field(f)),
        (Some("id"), Ty::M2o(_)) => Ok(Col::RefXmlid(f)),
        (Some(".id"), Ty::M2o(_)) => Ok(Col::RefDbId(f)),
        _ => Err(OdooError::key_error(name)),
    }
}

/// Bare external ids live in the import module (`__import__` unless context `module`).
pub(super) fn qualify(xmlid: &str, module: &str) -> String {
    if xmlid.contains('.') {
        xmlid.to_string()
    } else {
        format!("{module}.{xmlid}")
    }
}

pub(super) fn cells_of(row: &Value, n: usize, index: usize) -> Result<Vec<String>, OdooError> {
    let cells = row
        .as_array()
        .ok_or_else(|| OdooError::type_error(format!("load() row {index} is not a list: {row}")))?;
    if cells.len() != n {
        return Err(OdooError::value_error(format!(
            "load() row {index} has {} values for {n} fields",
            cells.len()
        )));
    }
    cells
        .iter()
        .map(|c| match c {
            Value::String(s) => Ok(s.clone()),
            Value::Null | Value::Bool(false) => Ok(String::new()),
            Value::Number(x) => Ok(x.to_string()),
            other => Err(OdooError::type_error(format!(
                "load() values must be strings, got {other}"
            ))),
        })
        .collect()
}

pub(super) fn load_message(row: usize, message: String, field: Option<&F>) -> Value {
    let mut m = json!({"type": "error", "message": message, "record": row, "rows": {"from": row, "to": row}});
    if let Some(f) = field {
        m["field"] = json!(f.name);
        m["field_name"] = json!(f.label);
    }
    m
}
