//! Signal conditioning per tag, applied where the reading is taken (after
//! scale and offset, before the edge): a valid range (out of it the tag is
//! bad quality, never a business event) or clamping to it; a deadband
//! (`min_change`, absolute or percent of the range) or report-on-change,
//! with a heartbeat that still sends an unchanged value that often. (An
//! OPC UA tag's `deadband` is the server's data-change filter, applied
//! before the value is sent at all.)

use crate::model::{Millis, Value};
use std::time::Duration;

/// A tag's conditioning, as configured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conditioning {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Out-of-range values are set to the nearest limit instead of bad.
    pub clamp: bool,
    pub deadband: Option<Deadband>,
    /// Send a value only when it differs from the last one sent.
    pub on_change: bool,
    /// With a deadband or `on_change`: send the value at least this often.
    pub heartbeat: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Deadband {
    Absolute(f64),
    /// Percent of `max - min`.
    Percent(f64),
}

impl Conditioning {
    pub fn is_none(&self) -> bool {
        *self == Conditioning::default()
    }

    fn filters_repeats(&self) -> bool {
        self.on_change || self.deadband.is_some()
    }

    /// The deadband's width in the tag's units.
    fn band(&self) -> Option<f64> {
        match self.deadband? {
            Deadband::Absolute(d) => Some(d),
            Deadband::Percent(p) => Some((self.max? - self.min?) * p / 100.0),
        }
    }
}

/// What to do with one reading.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Send(Value),
    /// Within the deadband (or unchanged) and no heartbeat due.
    Hold,
    /// Out of the valid range: the tag is bad, for this (stable) reason.
    Bad(String),
}

/// One tag's conditioning with what it last sent.
#[derive(Debug, Default)]
pub struct Filter {
    cfg: Conditioning,
    last: Option<(Value, Millis)>,
}

impl Filter {
    pub fn new(cfg: Conditioning) -> Filter {
        Filter { cfg, last: None }
    }

    pub fn apply(&mut self, value: Value, time: Millis) -> Verdict {
        if self.cfg.is_none() {
            return Verdict::Send(value);
        }
        let value = match self.range(value) {
            Ok(v) => v,
            Err(why) => {
                // The next good reading is sent whatever the deadband says.
                self.last = None;
                return Verdict::Bad(why);
            }
        };
        if self.cfg.filters_repeats() {
            if let Some((last, at)) = &self.last {
                let heartbeat_due = self
                    .cfg
                    .heartbeat
                    .is_some_and(|h| time.saturating_sub(*at) >= h.as_millis() as i64);
                if !heartbeat_due && self.within_band(last, &value) {
                    return Verdict::Hold;
                }
            }
        }
        self.last = Some((value.clone(), time));
        Verdict::Send(value)
    }

    fn range(&self, value: Value) -> Result<Value, String> {
        let (min, max) = (self.cfg.min, self.cfg.max);
        if min.is_none() && max.is_none() {
            return Ok(value);
        }
        let Some(x) = number(&value) else {
            return Ok(value);
        };
        let below = min.is_some_and(|m| x < m);
        let above = max.is_some_and(|m| x > m);
        if !(below || above || x.is_nan()) {
            return Ok(value);
        }
        if self.cfg.clamp && !x.is_nan() {
            let limit = if below { min } else { max };
            return Ok(Value::Float(limit.unwrap_or(x)));
        }
        let fmt = |v: Option<f64>| v.map_or("…".to_string(), |v| v.to_string());
        Err(format!(
            "value outside the valid range [{}, {}]",
            fmt(min),
            fmt(max)
        ))
    }

    fn within_band(&self, last: &Value, now: &Value) -> bool {
        match (self.cfg.band(), number(last), number(now)) {
            (Some(band), Some(a), Some(b)) => (b - a).abs() <= band,
            _ => last == now,
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match *v {
        Value::Int(i) => Some(i as f64),
        Value::UInt(u) => Some(u as f64),
        Value::Float(f) => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Millis {
        Millis(ms)
    }

    #[test]
    fn out_of_range_is_bad_with_a_stable_reason_or_clamped() {
        let mut f = Filter::new(Conditioning {
            min: Some(0.0),
            max: Some(300.0),
            ..Default::default()
        });
        assert_eq!(
            f.apply(Value::Float(20.0), at(0)),
            Verdict::Send(Value::Float(20.0))
        );
        let why = "value outside the valid range [0, 300]".to_string();
        assert_eq!(
            f.apply(Value::Float(412.0), at(1)),
            Verdict::Bad(why.clone())
        );
        assert_eq!(f.apply(Value::Int(-5), at(2)), Verdict::Bad(why));
        assert!(matches!(
            f.apply(Value::Float(f64::NAN), at(3)),
            Verdict::Bad(_)
        ));
        assert_eq!(
            f.apply(Value::Bool(true), at(4)),
            Verdict::Send(Value::Bool(true))
        );
        let mut c = Filter::new(Conditioning {
            min: Some(0.0),
            max: Some(300.0),
            clamp: true,
            ..Default::default()
        });
        assert_eq!(
            c.apply(Value::Float(412.0), at(0)),
            Verdict::Send(Value::Float(300.0))
        );
        assert_eq!(
            c.apply(Value::Int(-1), at(1)),
            Verdict::Send(Value::Float(0.0))
        );
    }

    #[test]
    fn a_deadband_holds_small_moves_until_the_heartbeat() {
        let mut f = Filter::new(Conditioning {
            deadband: Some(Deadband::Absolute(0.5)),
            heartbeat: Some(Duration::from_secs(60)),
            ..Default::default()
        });
        assert_eq!(
            f.apply(Value::Float(10.0), at(0)),
            Verdict::Send(Value::Float(10.0))
        );
        assert_eq!(f.apply(Value::Float(10.4), at(1_000)), Verdict::Hold);
        assert_eq!(f.apply(Value::Float(9.6), at(2_000)), Verdict::Hold);
        // Measured from the last value sent, so a slow drift is not lost.
        assert_eq!(
            f.apply(Value::Float(10.6), at(3_000)),
            Verdict::Send(Value::Float(10.6))
        );
        assert_eq!(f.apply(Value::Float(10.6), at(62_999)), Verdict::Hold);
        assert_eq!(
            f.apply(Value::Float(10.6), at(63_000)),
            Verdict::Send(Value::Float(10.6))
        );
    }

    #[test]
    fn a_percent_deadband_is_of_the_range_and_on_change_drops_repeats() {
        let mut f = Filter::new(Conditioning {
            min: Some(0.0),
            max: Some(200.0),
            deadband: Some(Deadband::Percent(1.0)),
            ..Default::default()
        });
        f.apply(Value::Float(100.0), at(0));
        assert_eq!(f.apply(Value::Float(101.9), at(1)), Verdict::Hold);
        assert_eq!(
            f.apply(Value::Float(102.1), at(2)),
            Verdict::Send(Value::Float(102.1))
        );
        let mut c = Filter::new(Conditioning {
            on_change: true,
            ..Default::default()
        });
        assert_eq!(c.apply(Value::Int(2), at(0)), Verdict::Send(Value::Int(2)));
        assert_eq!(c.apply(Value::Int(2), at(1)), Verdict::Hold);
        assert_eq!(c.apply(Value::Int(3), at(2)), Verdict::Send(Value::Int(3)));
        assert_eq!(
            c.apply(Value::Text("a".into()), at(3)),
            Verdict::Send(Value::Text("a".into()))
        );
    }

    #[test]
    fn after_a_bad_reading_the_next_good_one_is_sent() {
        let mut f = Filter::new(Conditioning {
            max: Some(100.0),
            deadband: Some(Deadband::Absolute(10.0)),
            ..Default::default()
        });
        f.apply(Value::Float(50.0), at(0));
        assert!(matches!(
            f.apply(Value::Float(150.0), at(1)),
            Verdict::Bad(_)
        ));
        assert_eq!(
            f.apply(Value::Float(51.0), at(2)),
            Verdict::Send(Value::Float(51.0))
        );
    }
}
