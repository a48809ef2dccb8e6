//! What the rules' tests build their inputs from: a good reading of the
//! rule's tag, and a moment at which wall and monotonic time agree.

use super::clock::{At, Mono};
use crate::model::{Millis, Quality, Sample, TagId, Value};

/// A good reading of tag 0, taken by the device at `ms`.
pub(crate) fn reading(value: Value, ms: i64) -> Sample {
    Sample {
        tag: TagId::of(0),
        unconfigured: None,
        value,
        quality: Quality::Good,
        time: Millis(ms),
        server_time: None,
        receipt: None,
    }
}

/// A moment where wall and monotonic time agree (no clock step).
pub(crate) fn at(ms: i64) -> At {
    At {
        time: Millis(ms),
        mono: Mono(ms as u64),
    }
}
