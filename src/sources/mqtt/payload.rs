//! Message payloads → values: plain text, or JSON with an RFC 6901
//! pointer to the value and, optionally, to the sample's time. Pure: a
//! payload that does not decode is a [`PayloadError`], never a panic.

use crate::model::{Millis, Value};

/// How a tag's messages are coded.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// The whole payload is the value as text: `42`, `3.5`, `true`, `idle`.
    Plain,
    /// A JSON document; `pointer` ("" = the whole document) finds the
    /// value, `time_pointer` the time (RFC 3339 text or epoch ms).
    Json {
        pointer: String,
        time_pointer: Option<String>,
    },
    /// A metric of a Sparkplug B edge node (`device` = `None`) or of one
    /// of its devices; decoded by the source's session (`sparkplug`), not
    /// by [`decode`].
    Sparkplug {
        device: Option<String>,
        metric: String,
    },
}

/// The type a tag's value is read as. Without one, a number keeps its own
/// form (integer or not), `true`/`false` is a bool, anything else text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    String,
}

impl ValueType {
    pub const NAMES: &'static str = "bool, u16, i16, u32, i32, u64, i64, f32, f64, string";

    pub fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "bool" => ValueType::Bool,
            "u16" => ValueType::U16,
            "i16" => ValueType::I16,
            "u32" => ValueType::U32,
            "i32" => ValueType::I32,
            "u64" => ValueType::U64,
            "i64" => ValueType::I64,
            "f32" => ValueType::F32,
            "f64" => ValueType::F64,
            "string" => ValueType::String,
            _ => return None,
        })
    }

    /// Where a counter of this type wraps, for production rules.
    pub fn wraps_at(self) -> Option<u64> {
        match self {
            ValueType::U16 => Some(1 << 16),
            ValueType::U32 => Some(1 << 32),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ValueType::Bool => "bool",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F32 => "f32",
            ValueType::F64 => "f64",
            ValueType::String => "string",
        }
    }
}

/// Why a message gave no value. The text goes into the bad sample and the log.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not UTF-8 text")]
    NotText,
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("no value at JSON pointer {0:?}")]
    NoValue(String),
    #[error("no time at JSON pointer {0:?}")]
    NoTime(String),
    #[error("time at {0:?} is neither RFC 3339 text nor epoch milliseconds: {1}")]
    BadTime(String, String),
    #[error("{0} is not a {1}")]
    WrongType(String, &'static str),
    #[error("an empty payload")]
    Empty,
    #[error("{0}")]
    Sparkplug(String),
    #[error("a message of {size} bytes, over max_message_size ({max} bytes)")]
    TooLarge { size: usize, max: usize },
}

/// The value of one message and, when the payload carries it, its time.
pub fn decode(
    payload: &Payload,
    value_type: Option<ValueType>,
    bytes: &[u8],
) -> Result<(Value, Option<Millis>), PayloadError> {
    match payload {
        Payload::Plain => {
            let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotText)?;
            Ok((from_text(text.trim(), value_type)?, None))
        }
        Payload::Json {
            pointer,
            time_pointer,
        } => {
            let doc: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
            let v = doc
                .pointer(pointer)
                .ok_or_else(|| PayloadError::NoValue(pointer.clone()))?;
            let value = from_json(v, value_type)?;
            let time = match time_pointer {
                Some(p) => Some(time(
                    doc.pointer(p)
                        .ok_or_else(|| PayloadError::NoTime(p.clone()))?,
                    p,
                )?),
                None => None,
            };
            Ok((value, time))
        }
        Payload::Sparkplug { .. } => Err(PayloadError::Sparkplug(
            "a Sparkplug metric is read by its edge node's session".into(),
        )),
    }
}

/// A Sparkplug metric's value as the tag's `type` asks, when it fits.
pub fn convert(value: Value, ty: Option<ValueType>) -> Result<Value, PayloadError> {
    let shown = value.to_string();
    typed(value, ty, &shown)
}

fn time(v: &serde_json::Value, pointer: &str) -> Result<Millis, PayloadError> {
    let bad = |why: String| PayloadError::BadTime(pointer.to_string(), why);
    match v {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Millis(t.timestamp_millis()))
            .map_err(|e| bad(format!("{s:?}: {e}"))),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Millis)
            .ok_or_else(|| bad(format!("{n} is not a whole number"))),
        other => Err(bad(other.to_string())),
    }
}

fn from_json(v: &serde_json::Value, ty: Option<ValueType>) -> Result<Value, PayloadError> {
    match v {
        serde_json::Value::String(s) => from_text(s, ty),
        serde_json::Value::Bool(b) => typed(Value::Bool(*b), ty, &v.to_string()),
        serde_json::Value::Number(n) => {
            let value = if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            };
            typed(value, ty, &n.to_string())
        }
        other => Err(PayloadError::WrongType(
            short(&other.to_string()),
            ty.map_or("number, bool or text", |t| t.name()),
        )),
    }
}

fn from_text(s: &str, ty: Option<ValueType>) -> Result<Value, PayloadError> {
    if s.is_empty() && ty != Some(ValueType::String) {
        return Err(PayloadError::Empty);
    }
    let guessed = if ty == Some(ValueType::String) {
        Value::Text(s.to_string())
    } else if let Ok(u) = s.parse::<u64>() {
        Value::UInt(u)
    } else if let Ok(i) = s.parse::<i64>() {
        Value::Int(i)
    } else if let Some(f) = s.parse::<f64>().ok().filter(|f| f.is_finite()) {
        Value::Float(f)
    } else if s == "true" || s == "false" {
        Value::Bool(s == "true")
    } else {
        Value::Text(s.to_string())
    };
    typed(guessed, ty, s)
}

/// `value` as `ty`, when it fits without loss.
fn typed(value: Value, ty: Option<ValueType>, shown: &str) -> Result<Value, PayloadError> {
    let Some(ty) = ty else { return Ok(value) };
    let wrong = || PayloadError::WrongType(short(shown), ty.name());
    let int_in = |lo: i64, hi: i64| match value.as_i64() {
        Some(i) if (lo..=hi).contains(&i) && !matches!(value, Value::Bool(_)) => Ok(Value::Int(i)),
        _ => Err(wrong()),
    };
    let uint_in = |hi: u64| match value.as_u64() {
        Some(u) if u <= hi && !matches!(value, Value::Bool(_)) => Ok(Value::UInt(u)),
        _ => Err(wrong()),
    };
    match ty {
        ValueType::Bool => match value {
            Value::Bool(_) => Ok(value),
            Value::UInt(0) | Value::Int(0) => Ok(Value::Bool(false)),
            Value::UInt(1) | Value::Int(1) => Ok(Value::Bool(true)),
            _ => Err(wrong()),
        },
        ValueType::U16 => uint_in(u16::MAX.into()),
        ValueType::U32 => uint_in(u32::MAX.into()),
        ValueType::U64 => uint_in(u64::MAX),
        ValueType::I16 => int_in(i16::MIN.into(), i16::MAX.into()),
        ValueType::I32 => int_in(i32::MIN.into(), i32::MAX.into()),
        ValueType::I64 => int_in(i64::MIN, i64::MAX),
        ValueType::F32 | ValueType::F64 => match value {
            Value::UInt(u) => Ok(Value::Float(u as f64)),
            Value::Int(i) => Ok(Value::Float(i as f64)),
            Value::Float(_) => Ok(value),
            _ => Err(wrong()),
        },
        ValueType::String => match value {
            Value::Text(_) => Ok(value),
            other => Ok(Value::Text(other.to_string())),
        },
    }
}

/// A payload excerpt for messages: a flood of huge payloads must not
/// become a flood of huge log lines.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(pointer: &str, time: Option<&str>) -> Payload {
        Payload::Json {
            pointer: pointer.to_string(),
            time_pointer: time.map(str::to_string),
        }
    }

    #[test]
    fn plain_text_values() {
        let d = |s: &str, t| decode(&Payload::Plain, t, s.as_bytes()).map(|v| v.0);
        assert_eq!(d("42\n", None), Ok(Value::UInt(42)));
        assert_eq!(d("-3", None), Ok(Value::Int(-3)));
        assert_eq!(d("2.5", None), Ok(Value::Float(2.5)));
        assert_eq!(d("true", None), Ok(Value::Bool(true)));
        assert_eq!(d("idle", None), Ok(Value::Text("idle".into())));
        assert_eq!(d("1", Some(ValueType::Bool)), Ok(Value::Bool(true)));
        assert_eq!(d("7", Some(ValueType::F64)), Ok(Value::Float(7.0)));
        assert!(matches!(
            d("abc", Some(ValueType::U32)),
            Err(PayloadError::WrongType(..))
        ));
        assert!(matches!(
            d("70000", Some(ValueType::U16)),
            Err(PayloadError::WrongType(..))
        ));
        assert_eq!(d("", None), Err(PayloadError::Empty));
        assert_eq!(
            decode(&Payload::Plain, None, &[0xff, 0xfe]),
            Err(PayloadError::NotText)
        );
    }

    #[test]
    fn json_pointer_and_time() {
        let body = br#"{"value": 12, "ts": "2026-01-02T03:04:05.678Z", "ms": 1700000000123, "s": {"a": "off"}}"#;
        let (v, t) = decode(&json("/value", Some("/ts")), Some(ValueType::U32), body).unwrap();
        assert_eq!(v, Value::UInt(12));
        assert_eq!(t.unwrap().rfc3339(), "2026-01-02T03:04:05.678Z");
        let (_, t) = decode(&json("/value", Some("/ms")), None, body).unwrap();
        assert_eq!(t, Some(Millis(1_700_000_000_123)));
        let (v, _) = decode(&json("/s/a", None), None, body).unwrap();
        assert_eq!(v, Value::Text("off".into()));
        assert_eq!(
            decode(&json("/nope", None), None, body),
            Err(PayloadError::NoValue("/nope".into()))
        );
        assert!(matches!(
            decode(&json("/s", None), None, body),
            Err(PayloadError::WrongType(..))
        ));
        assert!(matches!(
            decode(&json("/value", None), None, b"{oops"),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(
            decode(&json("/value", Some("/s")), None, body),
            Err(PayloadError::BadTime(..))
        ));
        assert_eq!(
            decode(&json("", None), None, b"5").unwrap().0,
            Value::UInt(5)
        );
    }
}
