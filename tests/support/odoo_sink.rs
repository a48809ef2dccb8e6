//! The pieces of a test of the Odoo sink on its own: its config from the
//! test press config, a store with the sink's read position, and the
//! events it is handed.

use plantgate::config::{self, OdooConfig};
use plantgate::model::{Downtime, Event, EventBody, Millis, Production};
use plantgate::store::{migrate::NoUpgrade, Store, StoreOptions};
use std::path::Path;

/// The sink's name in the store.
pub const SINK: &str = "odoo";

/// The `[odoo]` section of the test press config for the Odoo at `url`,
/// plus `extra` keys.
pub fn odoo_config(dir: &Path, url: &str, extra: &str) -> OdooConfig {
    let text = super::press_config(dir, "127.0.0.1:1", url, "127.0.0.1:0") + extra;
    config::parse(&text, &dir.join("gw.toml"))
        .expect("config")
        .odoo
}

/// A fresh store in `dir`, read by [`SINK`].
pub fn sink_store(dir: &Path) -> Store {
    Store::open(
        &dir.join("store"),
        &[SINK],
        &StoreOptions::default(),
        &NoUpgrade,
    )
    .expect("store")
}

/// An Odoo datetime ("2026-01-01 08:00:00", UTC) as an event time.
pub fn ms(t: &str) -> Millis {
    let dt = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").expect("time");
    Millis(dt.and_utc().timestamp_millis())
}

/// `quantity` parts made at work center `wc`, as event `id` at `time`.
pub fn parts_at(wc: &str, id: &str, time: Millis, quantity: u64) -> Event {
    Event {
        id: id.into(),
        rule: "parts".into(),
        time,
        body: EventBody::Production(Production {
            workcenter: wc.into(),
            quantity,
            counter_from: 0,
            counter_to: quantity,
        }),
    }
}

/// Event `id`: the start of stop `downtime_id` at work center `wc` (a
/// "Hydraulic fault" of `loss`), or with `end` its end.
pub fn stop_event(
    id: &str,
    wc: &str,
    downtime_id: &str,
    loss: &str,
    start: &str,
    end: Option<&str>,
) -> Event {
    let d = Downtime {
        workcenter: wc.into(),
        downtime_id: downtime_id.into(),
        state: 2,
        loss: loss.into(),
        description: "Hydraulic fault".into(),
        start: ms(start),
        end: end.map(ms),
    };
    Event {
        id: id.into(),
        rule: "stops".into(),
        time: ms(end.unwrap_or(start)),
        body: if end.is_some() {
            EventBody::DowntimeEnded(d)
        } else {
            EventBody::DowntimeStarted(d)
        },
    }
}
