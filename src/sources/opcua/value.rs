//! OPC UA data values → plantgate values, qualities and times.

use crate::model::{Millis, Quality, Value};
use opcua::types::{DataValue, DateTime, StatusCode, Variant};

/// A value the edge can use, or why not (an array, a structure).
pub fn value(v: &Variant) -> Value {
    match v {
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
        other => Value::Text(format!("{other:?}")),
    }
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
