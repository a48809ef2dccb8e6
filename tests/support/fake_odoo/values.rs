//! Small value helpers (Odoo's notion of empty is False, SQL's is NULL).

use super::*;

pub(super) const DT_FMT: &str = "%Y-%m-%d %H:%M:%S";
pub(super) const FALSE: Value = Value::Bool(false);

pub(super) fn is_false(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

pub(super) fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Odoo's `Datetime.to_datetime`: "YYYY-MM-DD HH:MM:SS" or a bare date.
pub(super) fn parse_dt(s: &str) -> Option<NaiveDateTime> {
    match s.len() {
        10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0),
        19 => NaiveDateTime::parse_from_str(s, DT_FMT).ok(),
        _ => None,
    }
}

pub(super) fn now() -> String {
    Utc::now().naive_utc().format(DT_FMT).to_string()
}

/// Offset east of UTC, in seconds, of the context `tz` used by `load`. Only
/// fixed-offset zones can be honoured without a tz database.
pub(super) fn input_tz(context: &Map<String, Value>) -> Result<i64, String> {
    let name = match context.get("tz") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Ok(0), // no tz: the user's tz, and our user has none, so UTC
    };
    const UTC: &[&str] = &[
        "",
        "UTC",
        "Etc/UTC",
        "GMT",
        "Etc/GMT",
        "UCT",
        "Etc/UCT",
        "Universal",
        "Zulu",
        "GMT0",
    ];
    if UTC.contains(&name) {
        return Ok(0);
    }
    // POSIX-style Etc/GMT+5 is five hours *behind* UTC.
    match name
        .strip_prefix("Etc/GMT")
        .and_then(|n| n.parse::<i64>().ok())
    {
        Some(n) if (-14..=12).contains(&n) => Ok(-n * 3600),
        _ => Err(format!(
            "FakeOdoo limitation: timezone '{name}' is not supported (use UTC or Etc/GMT±N)"
        )),
    }
}

pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Ascending order with SQL NULLs last (booleans are never NULL here).
pub(super) fn cmp_asc(a: &Value, b: &Value, ty: Ty) -> Ordering {
    let null = |v: &Value| ty != Ty::Bool && is_false(v);
    match (null(a), null(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => match (a, b) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    }
}

/// Python-style binding of positional and keyword arguments to parameter names.
pub(super) fn bind(
    fname: &str,
    params: &[&str],
    required: usize,
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Vec<Option<Value>>, OdooError> {
    if args.len() > params.len() {
        let takes = if required == params.len() {
            format!("{}", required + 1)
        } else {
            format!("from {} to {}", required + 1, params.len() + 1)
        };
        return Err(OdooError::type_error(format!(
            "{fname}() takes {takes} positional arguments but {} were given",
            args.len() + 1
        )));
    }
    let mut out: Vec<Option<Value>> = args.iter().cloned().map(Some).collect();
    out.resize(params.len(), None);
    for (k, v) in kwargs {
        let i = params.iter().position(|p| p == k).ok_or_else(|| {
            OdooError::type_error(format!(
                "{fname}() got an unexpected keyword argument '{k}'"
            ))
        })?;
        if i < args.len() {
            return Err(OdooError::type_error(format!(
                "{fname}() got multiple values for argument '{k}'"
            )));
        }
        out[i] = Some(v.clone());
    }
    let missing: Vec<String> = (0..required)
        .filter(|&i| out[i].is_none())
        .map(|i| format!("'{}'", params[i]))
        .collect();
    if !missing.is_empty() {
        let names = match missing.as_slice() {
            [one] => one.clone(),
            [a, b] => format!("{a} and {b}"),
            [init @ .., last] => format!("{}, and {last}", init.join(", ")),
            [] => String::new(),
        };
        let s = if missing.len() == 1 { "" } else { "s" };
        return Err(OdooError::type_error(format!(
            "{fname}() missing {} required positional argument{s}: {names}",
            missing.len()
        )));
    }
    Ok(out)
}

/// An optional argument, with JSON null meaning "not given".
pub(super) fn opt(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

pub(super) fn ids_of(v: &Value) -> Result<Vec<i64>, OdooError> {
    let bad = || {
        OdooError::type_error(format!(
            "record ids must be an integer or a list of integers, not {v}"
        ))
    };
    match v {
        Value::Number(n) => Ok(vec![n.as_i64().ok_or_else(bad)?]),
        Value::Array(a) => a.iter().map(|x| x.as_i64().ok_or_else(bad)).collect(),
        Value::Null | Value::Bool(false) => Ok(vec![]),
        _ => Err(bad()),
    }
}

pub(super) fn usize_arg(name: &str, v: Option<&Value>) -> Result<Option<usize>, OdooError> {
    match v {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            OdooError::value_error(format!("{name} must be a non-negative integer, got {n}"))
        }),
        Some(other) => Err(OdooError::type_error(format!(
            "{name} must be an integer, got {other}"
        ))),
    }
}
