//! One simulated press (a Modbus TCP PLC), a fake Odoo with its work
//! center and a work order in progress ([`Peers`]), and a gateway started
//! in-process on them ([`PressRig`]): the rig most end-to-end tests share.

use super::fake_odoo::FakeOdoo;
use super::{eventually, get, metric, press_config, COUNTER, STATE};
use plantgate::config;
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::pipeline::Gateway;
use std::time::Duration;

/// The press and the fake Odoo a gateway talks to, with the press config
/// pointing at them.
pub struct Peers {
    pub regs: Registers,
    pub odoo: FakeOdoo,
    pub workorder: i64,
    pub plc: SimulatedPlc,
}

impl Peers {
    /// The press counting from `counter`, running; Odoo with PRESS1 and a
    /// work order in progress there.
    pub async fn start(counter: u32) -> Peers {
        let regs = Registers::default();
        regs.set_u32(COUNTER, counter);
        regs.set_u16(STATE, 1);
        let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
            .await
            .expect("plc");
        let odoo = FakeOdoo::start().await;
        let wc = odoo.add_workcenter("PRESS1", "Press 1");
        let workorder = odoo.add_workorder(wc, "WO/1", "progress");
        Peers {
            regs,
            odoo,
            workorder,
            plc,
        }
    }

    /// The press config for these peers, its files under `dir`.
    pub fn config(&self, dir: &std::path::Path, status: &str) -> String {
        press_config(dir, &self.plc.addr.to_string(), &self.odoo.url(), status)
    }

    /// [`Peers::config`] written to `dir/gw.toml`, whose path it returns.
    pub fn write_config(&self, dir: &std::path::Path, status: &str) -> std::path::PathBuf {
        let path = dir.join("gw.toml");
        std::fs::write(&path, self.config(dir, status)).expect("config");
        path
    }
}

pub struct PressRig {
    pub regs: Registers,
    pub odoo: FakeOdoo,
    pub gateway: Gateway,
    pub workorder: i64,
    /// `http://` base of the status listener.
    pub base: String,
    pub dir: tempfile::TempDir,
    _plc: SimulatedPlc,
}

/// Start the rig; `extra` is appended to the press config, and `status`
/// is the listen address (`127.0.0.1:0` for any free port).
pub async fn start(extra: &str, status: &str) -> PressRig {
    start_edited(|t, _| t + extra, status).await
}

/// [`start`] with the config text edited by `edit`, which is also given
/// the directory the rig's files live in.
pub async fn start_edited(
    edit: impl FnOnce(String, &std::path::Path) -> String,
    status: &str,
) -> PressRig {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = Peers::start(1000).await;
    let text = edit(peers.config(dir.path(), status), dir.path());
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, &text).expect("config");
    let cfg = config::parse(&text, &path).expect("config");
    let gateway = Gateway::start(cfg).await.expect("start");
    let base = format!("http://{}", gateway.status_addr);
    PressRig {
        regs: peers.regs,
        odoo: peers.odoo,
        gateway,
        workorder: peers.workorder,
        base,
        dir,
        _plc: peers.plc,
    }
}

impl PressRig {
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("gw.toml")
    }

    /// The Odoo sink's part of `/status`.
    pub async fn sink_status(&self) -> Option<serde_json::Value> {
        let s = get(&format!("{}/status", self.base)).await?;
        let v: serde_json::Value = serde_json::from_str(&s).ok()?;
        Some(v["sinks"]["odoo"].clone())
    }

    /// Once the counter's baseline is read, make `n` parts, one per step;
    /// the steps are paced so the press shows each, and a merged step would
    /// still count the same parts.
    pub async fn produce(&self, n: u32) {
        baseline_read(&self.gateway).await;
        for _ in 0..n {
            self.regs.set_u32(COUNTER, self.regs.get_u32(COUNTER) + 1);
            tokio::time::sleep(Duration::from_millis(70)).await;
        }
    }
}

/// Wait until the gateway has read the press a few times: the first
/// reading is the counter's baseline, parts count from there.
pub async fn baseline_read(gateway: &Gateway) {
    let t = gateway.telemetry.clone();
    eventually(Duration::from_secs(10), "first samples", || {
        let t = t.clone();
        async move {
            t.snapshot()
                .sources
                .get("press1")
                .filter(|s| s.samples >= 4)
                .map(|_| ())
        }
    })
    .await;
}

/// Wait until a series of an open status listener reaches `at_least`.
pub async fn wait_metric(base: &str, series: &str, at_least: f64) -> f64 {
    eventually(Duration::from_secs(30), series, || async move {
        let m = get(&format!("{base}/metrics")).await?;
        metric(&m, series).filter(|v| *v >= at_least)
    })
    .await
}
