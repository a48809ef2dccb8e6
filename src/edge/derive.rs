//! Derived tags at run time: each keeps its inputs' latest readings and is
//! computed again whenever one of them changes, giving a sample of its
//! own that the rules see like any other. Its quality is the worst of its
//! inputs' (bad if one is bad), and it has no value until every input has
//! been read once. Its time is that of the reading that changed it.
//! Derived tags are kept in dependency order (the config checked there is
//! no loop), so one reading updates a chain in a single pass.

use crate::config::derived::DerivedTag;
use crate::model::{Quality, Sample, TagId, Value};
use evalexpr::{ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Value as Ev};

pub struct Derived {
    tags: Vec<DerivedTag>,
    /// Tag id → its slot in `inputs`, for the tags a derived tag reads (up
    /// to the last such id).
    slots: Vec<Option<u32>>,
    inputs: Vec<Input>,
}

/// A tag some derived tag reads.
#[derive(Default)]
struct Input {
    /// The derived tags (indexes) that read it.
    readers: Vec<usize>,
    /// Its latest reading: its value, or why it is not good.
    latest: Option<Result<Ev, String>>,
}

impl Derived {
    pub fn new(tags: &[DerivedTag]) -> Self {
        let mut d = Derived {
            tags: tags.to_vec(),
            slots: Vec::new(),
            inputs: Vec::new(),
        };
        for (i, tag) in tags.iter().enumerate() {
            for &input in tag.input_ids.iter().filter(|t| **t != TagId::UNCONFIGURED) {
                if d.slots.len() <= input.index() {
                    d.slots.resize(input.index() + 1, None);
                }
                let slot = match d.slots[input.index()] {
                    Some(s) => s as usize,
                    None => {
                        d.inputs.push(Input::default());
                        let s = d.inputs.len() - 1;
                        d.slots[input.index()] = u32::try_from(s).ok();
                        s
                    }
                };
                d.inputs[slot].readers.push(i);
            }
        }
        d
    }

    fn slot(&self, tag: TagId) -> Option<usize> {
        self.slots
            .get(tag.index())
            .copied()
            .flatten()
            .map(|s| s as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The derived samples a reading gives, in dependency order.
    pub fn on_sample(&mut self, sample: &Sample) -> Vec<Sample> {
        let Some(slot) = self.slot(sample.tag) else {
            return Vec::new();
        };
        self.inputs[slot].latest = Some(reading(sample));
        let mut dirty = vec![false; self.tags.len()];
        for &i in &self.inputs[slot].readers {
            dirty[i] = true;
        }
        let mut out = Vec::new();
        for i in 0..self.tags.len() {
            if !dirty[i] {
                continue;
            }
            let Some(result) = self.compute(i) else {
                continue;
            };
            let d = &self.tags[i];
            let (value, quality) = match &result {
                Ok(v) => (v.clone(), Quality::Good),
                Err(why) => (Value::Int(0), Quality::Bad(why.clone())),
            };
            let id = d.id;
            if let Some(s) = self.slot(id) {
                let input = &mut self.inputs[s];
                input.latest =
                    Some(result.and_then(|v| to_ev(&v).ok_or_else(|| "not a number".to_string())));
                for &j in &input.readers {
                    dirty[j] = true;
                }
            }
            out.push(Sample {
                tag: id,
                unconfigured: None,
                value,
                quality,
                time: sample.time,
                server_time: None,
                receipt: None,
            });
        }
        out
    }

    /// The tag's value now; `None` until every input has been read.
    fn compute(&self, i: usize) -> Option<Result<Value, String>> {
        let d = &self.tags[i];
        let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
        for (input, &id) in d.inputs.iter().zip(&d.input_ids) {
            match self.inputs[self.slot(id)?].latest.as_ref()? {
                Ok(v) => {
                    let _ = ctx.set_value(input.clone(), v.clone());
                }
                Err(why) => return Some(Err(format!("input {input} is bad: {why}"))),
            }
        }
        Some(match d.tree.eval_with_context(&ctx) {
            Ok(Ev::Boolean(b)) => Ok(Value::Bool(b)),
            Ok(Ev::Int(n)) => Ok(Value::Int(n)),
            Ok(Ev::Float(f)) if f.is_finite() => Ok(Value::Float(f)),
            Ok(Ev::Float(_)) => Err(format!("{} gave no finite number", d.expr)),
            Ok(other) => Err(format!("{} gave {other:?}, not a number", d.expr)),
            Err(e) => Err(format!("{}: {e}", d.expr)),
        })
    }
}

fn reading(sample: &Sample) -> Result<Ev, String> {
    match &sample.quality {
        Quality::Bad(why) => Err(why.clone()),
        Quality::Good | Quality::Uncertain(_) => {
            to_ev(&sample.value).ok_or_else(|| format!("{} is not a number", sample.value))
        }
    }
}

fn to_ev(v: &Value) -> Option<Ev> {
    Some(match *v {
        Value::Bool(b) => Ev::Boolean(b),
        Value::Int(n) => Ev::Int(n),
        Value::UInt(n) => i64::try_from(n).map_or(Ev::Float(n as f64), Ev::Int),
        Value::Float(f) => Ev::Float(f),
        Value::Text(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Millis, TagTable};

    /// The tests' tags and derived tags, in id order.
    const NAMES: [&str; 8] = [
        "good",
        "scrap",
        "temp",
        "a",
        "b",
        "net",
        "hot_and_busy",
        "ratio",
    ];

    fn table() -> TagTable {
        TagTable::new(NAMES)
    }

    fn id(name: &str) -> TagId {
        table().id(name).expect("in the table")
    }

    fn name(id: TagId) -> &'static str {
        NAMES.get(id.index()).copied().expect("in the table")
    }

    fn derived(name: &str, expr: &str, inputs: &[&str]) -> DerivedTag {
        DerivedTag {
            name: name.into(),
            id: id(name),
            expr: expr.into(),
            tree: evalexpr::build_operator_tree(expr).expect("parses"),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            input_ids: inputs.iter().map(|s| id(s)).collect(),
            engineering_unit: None,
        }
    }

    fn sample(tag: &str, value: Value) -> Sample {
        Sample {
            tag: id(tag),
            unconfigured: None,
            value,
            quality: Quality::Good,
            time: Millis(7),
            server_time: None,
            receipt: None,
        }
    }

    #[test]
    fn a_chain_is_computed_in_one_pass_once_every_input_is_read() {
        let mut d = Derived::new(&[
            derived("net", "good - scrap", &["good", "scrap"]),
            derived("hot_and_busy", "temp > 260 && net > 10", &["temp", "net"]),
        ]);
        assert!(d.on_sample(&sample("good", Value::UInt(50))).is_empty());
        let out = d.on_sample(&sample("scrap", Value::Int(5)));
        assert_eq!(out.len(), 1, "temp not read yet: {out:?}");
        assert_eq!(out[0].value, Value::Int(45));
        let out = d.on_sample(&sample("temp", Value::Float(270.0)));
        assert_eq!(name(out[0].tag), "hot_and_busy");
        assert_eq!(out[0].value, Value::Bool(true));
        let out = d.on_sample(&sample("scrap", Value::Int(45)));
        let values: Vec<_> = out.iter().map(|s| (name(s.tag), s.value.clone())).collect();
        assert_eq!(
            values,
            [("net", Value::Int(5)), ("hot_and_busy", Value::Bool(false))]
        );
        assert_eq!(out[1].time, Millis(7));
    }

    #[test]
    fn a_bad_input_makes_the_derived_tag_bad_until_it_is_good_again() {
        let mut d = Derived::new(&[derived("ratio", "a / b", &["a", "b"])]);
        d.on_sample(&sample("a", Value::Float(3.0)));
        let mut bad = sample("b", Value::Int(0));
        bad.quality = Quality::Bad("timeout".into());
        let out = d.on_sample(&bad);
        assert_eq!(
            out[0].quality,
            Quality::Bad("input b is bad: timeout".into())
        );
        let out = d.on_sample(&sample("b", Value::Float(0.0)));
        assert!(
            matches!(out[0].quality, Quality::Bad(_)),
            "3 / 0 is no number: {out:?}"
        );
        let out = d.on_sample(&sample("b", Value::Float(2.0)));
        assert_eq!(
            (out[0].value.clone(), out[0].quality.clone()),
            (Value::Float(1.5), Quality::Good)
        );
    }
}
