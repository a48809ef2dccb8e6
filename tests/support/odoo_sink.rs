//! The pieces of a test of the Odoo sink on its own: its config from the
//! test press config, a store with the sink's read position, and the
//! events it is handed.

use super::fake_odoo::FakeOdoo;
use plantgate::config::{self, OdooConfig};
use plantgate::model::{Downtime, Event, EventBody, Millis, Production};
use plantgate::sinks::odoo::OdooSink;
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

/// The Odoo sink on its own against a fake Odoo, with its store.
pub struct SinkRig {
    pub odoo: FakeOdoo,
    pub sink: OdooSink,
    pub store: Store,
    pub dir: tempfile::TempDir,
}

/// A fake Odoo `version`, and a sink of the press config's `[odoo]` (with
/// `extra` keys) delivering to it from a fresh store.
pub async fn sink_rig(version: u8, extra: &str) -> SinkRig {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_version(version).await;
    let cfg = odoo_config(dir.path(), &odoo.url(), extra);
    let sink = OdooSink::new(&cfg).expect("sink");
    let store = sink_store(dir.path());
    SinkRig {
        odoo,
        sink,
        store,
        dir,
    }
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
