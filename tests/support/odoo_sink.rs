//! The pieces of a test of the Odoo sink on its own: its config from the
//! test press config, and a store with the sink's read position.

use plantgate::config::{self, OdooConfig};
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
