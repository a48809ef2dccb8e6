//! `plantgate tags import FILE.csv`: a CSV tag list → `[[tags]]` entries.
//!
//! Two layouts are recognised by their header row:
//! - plantgate's own: `name,address,type,scale,offset,engineering_unit,
//!   poll_group,order,length,bit,unit_id` (only `name` and `address` are
//!   required). `address` is `holding:100`, `input:0`, `coil:3`,
//!   `discrete:16` (0-based), or Modicon `40101` (1-based, table digit first).
//! - a Kepware (KEPServerEX) tag export: `Tag Name`, `Address`, `Data Type`,
//!   `Scan Rate`, `Scaling`, `Raw Low`, `Raw High`, `Scaled Low`,
//!   `Scaled High`, `Eng Units`, `Description`. Kepware data types map as
//!   Boolean→bool, Word→u16, Short→i16, DWord→u32, Long→i32, QWord→u64,
//!   LLong→i64, Float→f32, Double→f64, String→string; a scan rate becomes a
//!   poll group `scan_<ms>ms` that the source must define.
//!
//! Every bad row is reported as `FILE:LINE: message`; nothing is printed
//! unless all rows are good.

use super::modbus::{parse_modicon, ByteOrder, DataType, Table};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    Rows(Vec<String>),
}

/// Column indexes of one layout.
struct Columns {
    name: usize,
    address: usize,
    data_type: Option<usize>,
    scale: Option<usize>,
    offset: Option<usize>,
    unit: Option<usize>,
    poll_group: Option<usize>,
    order: Option<usize>,
    length: Option<usize>,
    bit: Option<usize>,
    unit_id: Option<usize>,
    kepware: Option<Kepware>,
}

struct Kepware {
    scan_rate: Option<usize>,
    scaling: Option<usize>,
    raw_low: Option<usize>,
    raw_high: Option<usize>,
    scaled_low: Option<usize>,
    scaled_high: Option<usize>,
    description: Option<usize>,
}

fn find(headers: &[String], names: &[&str]) -> Option<usize> {
    headers
        .iter()
        .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
}

fn columns(headers: &[String]) -> Result<Columns, String> {
    let kepware = find(headers, &["Tag Name"]).is_some();
    let name = find(headers, &["name", "Tag Name"]);
    let address = find(headers, &["address"]);
    let (Some(name), Some(address)) = (name, address) else {
        return Err(
            "the header row needs `name` and `address` columns (or a Kepware export's `Tag Name` and `Address`)".into(),
        );
    };
    Ok(Columns {
        name,
        address,
        data_type: find(headers, &["type", "Data Type"]),
        scale: find(headers, &["scale"]),
        offset: find(headers, &["offset"]),
        unit: find(headers, &["engineering_unit", "Eng Units"]),
        poll_group: find(headers, &["poll_group"]),
        order: find(headers, &["order"]),
        length: find(headers, &["length"]),
        bit: find(headers, &["bit"]),
        unit_id: find(headers, &["unit_id"]),
        kepware: kepware.then(|| Kepware {
            scan_rate: find(headers, &["Scan Rate"]),
            scaling: find(headers, &["Scaling"]),
            raw_low: find(headers, &["Raw Low"]),
            raw_high: find(headers, &["Raw High"]),
            scaled_low: find(headers, &["Scaled Low"]),
            scaled_high: find(headers, &["Scaled High"]),
            description: find(headers, &["Description"]),
        }),
    })
}

fn kepware_type(t: &str) -> Option<&'static str> {
    Some(match t.to_ascii_lowercase().as_str() {
        "boolean" => "bool",
        "word" => "u16",
        "short" => "i16",
        "dword" => "u32",
        "long" => "i32",
        "qword" => "u64",
        "llong" => "i64",
        "float" => "f32",
        "double" => "f64",
        "string" => "string",
        _ => return None,
    })
}

/// A tag name usable in the config: other characters become `_`.
fn plain(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A TOML basic string: JSON's escapes are a subset of TOML's.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// Convert CSV text into `[[tags]]` TOML for `source`.
pub fn import(text: &str, file: &str, source: &str) -> Result<String, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(ImportError::Rows(vec![format!("{file}:1: {e}")])),
    };
    let cols = columns(&headers).map_err(|e| ImportError::Rows(vec![format!("{file}:1: {e}")]))?;
    let mut out = String::new();
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|s| !s.is_empty());
        let mut row_err = |msg: String| errors.push(format!("{file}:{line}: {msg}"));
        let Some(raw_name) = get(Some(cols.name)) else {
            row_err("empty name".into());
            continue;
        };
        let name = plain(raw_name);
        if !names.insert(name.clone()) {
            row_err(format!("tag {name:?} appears twice"));
            continue;
        }
        let Some(address) = get(Some(cols.address)) else {
            row_err(format!("tag {name:?} has no address"));
            continue;
        };
        let (table, register) = match address.split_once(':') {
            Some((t, a)) => match (Table::parse(t), a.parse::<u16>()) {
                (Some(t), Ok(a)) => (t, a),
                _ => {
                    row_err(format!("address {address:?}: write holding:100, input:0, coil:3, discrete:16 or Modicon 40101"));
                    continue;
                }
            },
            None => match parse_modicon(address) {
                Ok(v) => v,
                Err(e) => {
                    row_err(e);
                    continue;
                }
            },
        };
        let ty = match get(cols.data_type) {
            None => None,
            Some(t) if cols.kepware.is_some() => match kepware_type(t) {
                Some(t) => Some(t),
                None => {
                    row_err(format!("Kepware data type {t:?} is not supported; use Boolean, Word, Short, DWord, Long, QWord, LLong, Float, Double or String"));
                    continue;
                }
            },
            Some(t) => match DataType::parse(t, 1) {
                Some(d) => Some(d.name()),
                None => {
                    row_err(format!("type {t:?}: use one of {}", DataType::NAMES));
                    continue;
                }
            },
        };
        let mut entry = format!(
            "[[tags]]\nname = {}\nsource = {}\n",
            toml_string(&name),
            toml_string(source)
        );
        let _ = writeln!(entry, "table = \"{}\"\nregister = {register}", table.name());
        if let Some(t) = ty {
            let _ = writeln!(entry, "type = \"{t}\"");
        }
        let number = |col: Option<usize>, key: &str, entry: &mut String| -> Result<(), String> {
            if let Some(v) = get(col) {
                let n: f64 = v
                    .parse()
                    .map_err(|_| format!("{key} {v:?} is not a number"))?;
                let _ = writeln!(entry, "{key} = {n:?}");
            }
            Ok(())
        };
        let mut bad = None;
        for (col, key) in [(cols.scale, "scale"), (cols.offset, "offset")] {
            if let Err(e) = number(col, key, &mut entry) {
                bad = Some(e);
            }
        }
        for (col, key) in [
            (cols.length, "length"),
            (cols.bit, "bit"),
            (cols.unit_id, "unit_id"),
        ] {
            if let Some(v) = get(col) {
                match v.parse::<u16>() {
                    Ok(n) => {
                        let _ = writeln!(entry, "{key} = {n}");
                    }
                    Err(_) => bad = Some(format!("{key} {v:?} is not a whole number")),
                }
            }
        }
        if let Some(o) = get(cols.order) {
            match ByteOrder::parse(o) {
                Some(o) => {
                    let _ = writeln!(entry, "order = \"{}\"", o.name());
                }
                None => bad = Some(format!("order {o:?}: use ABCD, CDAB, BADC or DCBA")),
            }
        }
        if let Some(g) = get(cols.poll_group) {
            let _ = writeln!(entry, "poll_group = {}", toml_string(g));
        }
        if let Some(u) = get(cols.unit) {
            let _ = writeln!(entry, "engineering_unit = {}", toml_string(u));
        }
        if let Some(k) = &cols.kepware {
            if let Some(rate) = get(k.scan_rate) {
                match rate.parse::<u32>() {
                    Ok(ms) => {
                        let g = format!("scan_{ms}ms");
                        let _ = writeln!(entry, "poll_group = \"{g}\"");
                        groups.insert((g, ms));
                    }
                    Err(_) => bad = Some(format!("Scan Rate {rate:?} is not milliseconds")),
                }
            }
            if get(k.scaling).is_some_and(|s| s.eq_ignore_ascii_case("linear")) {
                let nums: Option<Vec<f64>> = [k.raw_low, k.raw_high, k.scaled_low, k.scaled_high]
                    .iter()
                    .map(|c| get(*c).and_then(|v| v.parse().ok()))
                    .collect();
                match nums.as_deref() {
                    Some([rl, rh, sl, sh]) if rh != rl => {
                        let scale = (sh - sl) / (rh - rl);
                        let _ = writeln!(entry, "scale = {scale:?}\noffset = {:?}", sl - rl * scale);
                    }
                    _ => bad = Some("Linear scaling needs numeric Raw Low/High and Scaled Low/High, with Raw Low ≠ Raw High".into()),
                }
            }
            if let Some(d) = get(k.description) {
                entry = format!("# {}\n{entry}", d.replace('\n', " "));
            }
        }
        if let Some(e) = bad {
            row_err(e);
            continue;
        }
        out.push_str(&entry);
        out.push('\n');
    }
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }
    if !groups.is_empty() {
        let mut head =
            format!("# The source {source:?} needs these poll groups:\n# [sources.poll_groups]\n");
        for (g, ms) in groups {
            let _ = writeln!(head, "# {g} = \"{ms}ms\"");
        }
        out = format!("{head}\n{out}");
    }
    Ok(out)
}

pub fn import_file(path: &Path, source: &str) -> Result<String, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })?;
    import(&text, &path.display().to_string(), source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_layout() {
        let csv = "name,address,type,scale,offset,engineering_unit,poll_group,order\n\
                   oven temp,40101,f32,0.1,,°C,fast,CDAB\n\
                   door,coil:3,,,,,,\n";
        let out = import(csv, "t.csv", "plc1").expect("import");
        assert!(out.contains("name = \"oven_temp\"\nsource = \"plc1\"\ntable = \"holding\"\nregister = 100\ntype = \"f32\"\nscale = 0.1\norder = \"CDAB\"\npoll_group = \"fast\"\nengineering_unit = \"°C\""), "{out}");
        assert!(
            out.contains("name = \"door\"\nsource = \"plc1\"\ntable = \"coil\"\nregister = 3\n"),
            "{out}"
        );
    }

    #[test]
    fn kepware_export_with_linear_scaling() {
        let csv = "Tag Name,Address,Data Type,Respect Data Type,Client Access,Scan Rate,Scaling,Raw Low,Raw High,Scaled Low,Scaled High,Scaled Data Type,Clamp Low,Clamp High,Eng Units,Description,Negate Value\n\
                   Press.Pressure,400011,Word,1,RO,250,Linear,0,1000,0,250,Float,0,0,bar,Main cylinder,0\n";
        let out = import(csv, "k.csv", "press1").expect("import");
        assert!(out.contains("# scan_250ms = \"250ms\""), "{out}");
        assert!(
            out.contains("# Main cylinder\n[[tags]]\nname = \"Press_Pressure\""),
            "{out}"
        );
        assert!(out.contains("register = 10\ntype = \"u16\"\nengineering_unit = \"bar\"\npoll_group = \"scan_250ms\"\nscale = 0.25\noffset = 0.0"), "{out}");
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let csv = "name,address,type\nok,40001,u16\nbad,50001,u16\nworse,40002,u128\n";
        let Err(ImportError::Rows(errs)) = import(csv, "t.csv", "p") else {
            panic!("errors expected")
        };
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("t.csv:3: address \"50001\" starts with 5"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("t.csv:4: type \"u128\""), "{errs:?}");
    }
}
