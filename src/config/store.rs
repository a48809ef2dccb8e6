//! The `[store]` section: group-commit interval, disk quota, and each lane's
//! target age and retention; plus the `lane` key of an event rule.

use super::raw::S;
use super::Validator;
use crate::store::{Lane, StoreOptions};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub flush_interval: Option<S<String>>,
    pub max_disk: Option<S<String>>,
    pub lanes: Option<S<RawLanes>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLanes {
    pub critical: Option<S<RawLane>>,
    pub normal: Option<S<RawLane>>,
    pub bulk: Option<S<RawLane>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLane {
    pub target: Option<S<String>>,
    pub ttl: Option<S<String>>,
}

/// Longest flush interval accepted: beyond it every commit waits too long.
const MAX_FLUSH: Duration = Duration::from_secs(1);

/// Smallest quota accepted: below it a handful of events fill it.
const MIN_DISK: u64 = 64 * 1024;

/// `512MiB`, `2GB`, `1048576`: bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl Validator<'_> {
    pub(super) fn store(&mut self, raw: Option<&S<RawStore>>) -> StoreOptions {
        let mut opts = StoreOptions::default();
        let Some(raw) = raw else { return opts };
        let r = raw.get_ref();
        opts.flush_interval = self.duration(&r.flush_interval, opts.flush_interval);
        if let Some(f) = &r.flush_interval {
            if opts.flush_interval > MAX_FLUSH {
                self.err(f, "flush_interval longer than 1s makes every commit wait that long: use a few milliseconds, like \"5ms\"");
            }
        }
        if let Some(m) = &r.max_disk {
            match parse_size(m.get_ref()) {
                Some(n) if n >= MIN_DISK => opts.max_bytes = Some(n),
                Some(_) => self.err(m, "max_disk below 64KiB leaves no room for a backlog"),
                None => self.err(
                    m,
                    format!(
                        "bad size {:?}: write a number and a unit, like \"512MiB\" or \"2GB\"",
                        m.get_ref()
                    ),
                ),
            }
        }
        if let Some(lanes) = &r.lanes {
            let l = lanes.get_ref();
            for (lane, raw) in [
                (Lane::Critical, &l.critical),
                (Lane::Normal, &l.normal),
                (Lane::Bulk, &l.bulk),
            ] {
                let Some(raw) = raw else { continue };
                let o = &mut opts.lanes[lane.index()];
                o.target = self.duration(&raw.get_ref().target, o.target);
                if raw.get_ref().ttl.is_some() {
                    let ttl = self.duration(&raw.get_ref().ttl, Duration::ZERO);
                    o.ttl = (!ttl.is_zero()).then_some(ttl);
                }
            }
        }
        opts
    }

    /// An event rule's `lane` override.
    pub(super) fn lane(&mut self, value: &Option<S<String>>) -> Option<Lane> {
        let v = value.as_ref()?;
        let lane = Lane::parse(v.get_ref());
        if lane.is_none() {
            self.err(
                v,
                format!(
                    "unknown lane {:?}: use \"critical\", \"normal\" or \"bulk\"",
                    v.get_ref()
                ),
            );
        }
        lane
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12 KiB"), Some(12 << 10));
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size("MiB"), None);
    }
}
