//! OPC UA data values → plantgate values, qualities and times.

use crate::model::{Millis, Quality, Value};
use opcua::types::{DataValue, DateTime, ExtensionObject, StatusCode, Variant};

/// A value the edge can use; for anything else (an array, a structure) its
/// readable text, so a rule that gets one says what it got.
pub fn value(v: &Variant) -> Value {
    tag_value(v).unwrap_or_else(|| Value::Text(display(v, &|_| "Structure".to_string())))
}

/// The value a tag carries, or None for a kind of value the gateway cannot
/// turn into one (arrays, structures, byte strings, node ids, ...).
pub fn tag_value(v: &Variant) -> Option<Value> {
    Some(match v {
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(n) => Value::Int(i64::from(*n)),
        Variant::Int16(n) => Value::Int(i64::from(*n)),
        Variant::Int32(n) => Value::Int(i64::from(*n)),
        Variant::Int64(n) => Value::Int(*n),
        Variant::Byte(n) => Value::UInt(u64::from(*n)),
        Variant::UInt16(n) => Value::UInt(u64::from(*n)),
        Variant::UInt32(n) => Value::UInt(u64::from(*n)),
        Variant::UInt64(n) => Value::UInt(*n),
        Variant::Float(f) => Value::Float(f64::from(*f)),
        Variant::Double(f) => Value::Float(*f),
        Variant::String(s) => Value::Text(s.as_ref().to_string()),
        Variant::LocalizedText(t) => Value::Text(t.text.as_ref().to_string()),
        Variant::DateTime(t) => Value::Text(t.as_chrono().to_rfc3339()),
        _ => return None,
    })
}

/// Why a value cannot be a tag's ("an array"), or None when it can.
pub fn unusable(v: &Variant) -> Option<&'static str> {
    if tag_value(v).is_some() {
        return None;
    }
    Some(match v {
        Variant::Array(_) => "an array",
        Variant::ExtensionObject(_) => "a structure",
        Variant::Empty => "empty",
        Variant::Guid(_) => "a Guid",
        Variant::StatusCode(_) => "a StatusCode",
        Variant::ByteString(_) => "a ByteString",
        Variant::XmlElement(_) => "an XmlElement",
        Variant::QualifiedName(_) => "a QualifiedName",
        Variant::NodeId(_) | Variant::ExpandedNodeId(_) => "a NodeId",
        Variant::DataValue(_) => "a DataValue",
        Variant::DiagnosticInfo(_) => "a DiagnosticInfo",
        _ => "a nested Variant",
    })
}

/// Array elements shown before the rest is summed up as a count.
pub(crate) const ARRAY_SHOWN: usize = 10;

/// Characters of a string shown before it is cut.
const TEXT_SHOWN: usize = 100;

/// A value as a person reads it: scalars plainly, strings quoted, arrays
/// as `[a, b, … (120 values)]`, structures by the name `structure` gives
/// them (the client cannot decode a server's own types, and the names of
/// known ones live on the server).
pub fn display(v: &Variant, structure: &dyn Fn(&ExtensionObject) -> String) -> String {
    match v {
        Variant::Empty => "null".to_string(),
        Variant::String(s) => quoted(s.as_ref()),
        Variant::LocalizedText(t) => quoted(t.text.as_ref()),
        Variant::DateTime(t) => t.as_chrono().to_rfc3339(),
        Variant::Guid(g) => g.to_string(),
        Variant::StatusCode(s) => s.to_string(),
        Variant::ByteString(b) => match b.value.as_ref() {
            Some(bytes) => format!("ByteString ({} bytes)", bytes.len()),
            None => "null".to_string(),
        },
        Variant::XmlElement(x) => {
            format!("XmlElement ({} characters)", x.to_string().chars().count())
        }
        Variant::QualifiedName(q) => q.to_string(),
        Variant::NodeId(n) => n.to_string(),
        Variant::ExpandedNodeId(n) => n.to_string(),
        Variant::ExtensionObject(eo) if eo.is_null() => "null".to_string(),
        Variant::ExtensionObject(eo) => format!("{} {{…}}", structure(eo)),
        Variant::Variant(inner) => display(inner, structure),
        Variant::DataValue(dv) => match &dv.value {
            Some(inner) if dv.status().is_good() => display(inner, structure),
            _ => format!("({})", dv.status()),
        },
        Variant::DiagnosticInfo(_) => "DiagnosticInfo".to_string(),
        Variant::Array(a) => {
            let shown: Vec<String> = a
                .values
                .iter()
                .take(ARRAY_SHOWN)
                .map(|x| display(x, structure))
                .collect();
            let mut out = format!("[{}", shown.join(", "));
            if a.values.len() > ARRAY_SHOWN {
                out.push_str(&format!(", … ({} values)", a.values.len()));
            }
            out.push(']');
            if let Some(dims) = a.dimensions.as_ref().filter(|d| d.len() > 1) {
                let dims: Vec<String> = dims.iter().map(u32::to_string).collect();
                out.push_str(&format!(" ({})", dims.join("x")));
            }
            out
        }
        scalar => match tag_value(scalar) {
            Some(v) => v.to_string(),
            None => format!("{scalar:?}"),
        },
    }
}

/// A string in quotes with escapes, cut after TEXT_SHOWN characters.
fn quoted(s: &str) -> String {
    let count = s.chars().count();
    if count <= TEXT_SHOWN {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(TEXT_SHOWN).collect();
    format!("{head:?}… ({count} characters)")
}

/// Good, uncertain or bad, with the status name (`BadNodeIdUnknown`).
pub fn quality(status: StatusCode) -> Quality {
    if status.is_good() {
        Quality::Good
    } else if status.is_uncertain() {
        Quality::Uncertain(status.to_string())
    } else {
        Quality::Bad(status.to_string())
    }
}

fn millis(t: &DateTime) -> Option<Millis> {
    let ms = t.as_chrono().timestamp_millis();
    // DateTime's null (1601) means "not given".
    (ms > 0).then_some(Millis(ms))
}

/// The source timestamp when the server gives one, else the server
/// timestamp, else now.
pub fn time(dv: &DataValue) -> Millis {
    dv.source_timestamp
        .as_ref()
        .and_then(millis)
        .or_else(|| dv.server_timestamp.as_ref().and_then(millis))
        .unwrap_or_else(Millis::now)
}

/// The server timestamp, when the server gives one.
pub fn server_time(dv: &DataValue) -> Option<Millis> {
    dv.server_timestamp.as_ref().and_then(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_status_codes_to_quality_with_their_names() {
        assert_eq!(quality(StatusCode::Good), Quality::Good);
        assert_eq!(
            quality(StatusCode::BadNodeIdUnknown),
            Quality::Bad("BadNodeIdUnknown".into())
        );
        assert!(matches!(
            quality(StatusCode::UncertainLastUsableValue),
            Quality::Uncertain(s) if s == "UncertainLastUsableValue"
        ));
    }

    #[test]
    fn source_timestamp_wins_over_server_timestamp() {
        let src = DateTime::from(chrono::DateTime::from_timestamp_millis(1_000_000).expect("t"));
        let srv = DateTime::from(chrono::DateTime::from_timestamp_millis(2_000_000).expect("t"));
        let mut dv = DataValue::new_now(Variant::UInt32(7));
        dv.source_timestamp = Some(src);
        dv.server_timestamp = Some(srv);
        assert_eq!(time(&dv), Millis(1_000_000));
        assert_eq!(server_time(&dv), Some(Millis(2_000_000)));
        dv.source_timestamp = None;
        assert_eq!(time(&dv), Millis(2_000_000));
        assert_eq!(value(&Variant::UInt32(7)), Value::UInt(7));
        assert_eq!(value(&Variant::Int16(-3)), Value::Int(-3));
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;
    use opcua::types::{Array, LocalizedText, Range, VariantScalarTypeId};

    fn show(v: &Variant) -> String {
        display(v, &|_| "SomeType".to_string())
    }

    #[test]
    fn scalars_print_plainly_and_texts_quoted() {
        assert_eq!(show(&Variant::Double(12.5)), "12.5");
        assert_eq!(show(&Variant::Int32(-3)), "-3");
        assert_eq!(show(&Variant::Boolean(true)), "true");
        assert_eq!(show(&Variant::from("R-100")), "\"R-100\"");
        let text = LocalizedText::new("en", "Hydraulic press");
        assert_eq!(show(&Variant::from(text)), "\"Hydraulic press\"");
        assert_eq!(show(&Variant::Empty), "null");
        let long = "y".repeat(150);
        assert_eq!(
            show(&Variant::from(long.as_str())),
            format!("\"{}\"… (150 characters)", "y".repeat(100))
        );
    }

    #[test]
    fn arrays_print_as_lists_cut_with_a_count() {
        let few = Array::new(
            VariantScalarTypeId::String,
            vec![Variant::from("a"), Variant::from("b")],
        )
        .expect("array");
        assert_eq!(show(&Variant::from(few)), "[\"a\", \"b\"]");
        let many: Vec<Variant> = (1..=120).map(Variant::Int32).collect();
        let many = Array::new(VariantScalarTypeId::Int32, many).expect("array");
        assert_eq!(
            show(&Variant::from(many)),
            "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, … (120 values)]"
        );
        let grid: Vec<Variant> = (1..=6).map(Variant::Int32).collect();
        let grid = Array::new_multi(VariantScalarTypeId::Int32, grid, vec![2u32, 3]).expect("2x3");
        assert_eq!(show(&Variant::from(grid)), "[1, 2, 3, 4, 5, 6] (2x3)");
    }

    #[test]
    fn structures_print_by_their_type_name_and_are_no_tag_value() {
        let range = Variant::from(ExtensionObject::from_message(Range {
            low: 0.0,
            high: 250.0,
        }));
        assert_eq!(show(&range), "SomeType {…}");
        assert_eq!(unusable(&range), Some("a structure"));
        assert_eq!(tag_value(&range), None);
        assert_eq!(unusable(&Variant::Double(1.0)), None);
        // What a rule would get from such a tag: readable, not debug text.
        assert_eq!(value(&range), Value::Text("Structure {…}".into()));
    }
}
