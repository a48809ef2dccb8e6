//! `plantgate demo`: the whole pipeline in one process with nothing to
//! install. A simulated press (a Modbus TCP server on loopback) runs a
//! production cycle with stops; the real Modbus source polls it, the edge
//! rules turn it into events, the sled store keeps them in a temporary
//! directory, and the dry-run Odoo sink prints each call it would make.

pub mod plc;

use crate::config::{self, ConfigError};
use crate::pipeline::{Gateway, StartError};
use plc::{Registers, SimulatedPlc};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The demo's tag map, shipped as an example too.
pub const DEMO_CONFIG: &str = include_str!("../../firmware-config/examples/demo.toml");

pub const COUNTER_REGISTER: u16 = 100;
pub const STATE_REGISTER: u16 = 102;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulated press: {0}")]
    Plc(std::io::Error),
    #[error("cannot create a temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("the embedded demo config is invalid:\n{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Stage(#[from] crate::supervise::StageFailure),
}

/// One step of the press's 30-second cycle: (state, parts per second).
/// State 1 runs; 2 is a hydraulic fault long enough to count as downtime;
/// 3 is a short stop under the rule's minimum, which the edge ignores.
fn press_state(second_of_cycle: u64) -> u16 {
    match second_of_cycle % 30 {
        12..=19 => 2,
        26..=27 => 3,
        _ => 1,
    }
}

async fn run_press(regs: Registers) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut second = 0u64;
    let mut counter: u32 = 41_000;
    regs.set_u32(COUNTER_REGISTER, counter);
    loop {
        tick.tick().await;
        let state = press_state(second);
        regs.set_u16(STATE_REGISTER, state);
        if state == 1 {
            counter = counter.wrapping_add(1 + second.is_multiple_of(3) as u32);
            regs.set_u32(COUNTER_REGISTER, counter);
        }
        second += 1;
    }
}

/// Run the demo until Ctrl-C, or for `duration`.
pub async fn run(listen: Option<SocketAddr>, duration: Option<Duration>) -> Result<(), DemoError> {
    let registers = Registers::default();
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), registers.clone())
        .await
        .map_err(DemoError::Plc)?;
    let press = tokio::spawn(run_press(registers));
    let dir = tempfile::Builder::new()
        .prefix("plantgate-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let text = DEMO_CONFIG
        .replace("@PLC_ADDRESS@", &plc.addr.to_string())
        .replace(
            "@DATA_DIR@",
            &dir.path().display().to_string().replace('\\', "/"),
        );
    let mut cfg = config::parse(&text, Path::new("firmware-config/examples/demo.toml"))?;
    if let Some(l) = listen {
        cfg.status.listen = l;
    }
    let mut gateway = match Gateway::start(cfg.clone()).await {
        Err(StartError::Listen { addr, source }) => {
            tracing::warn!(%addr, error = %source, "status port busy; using a free port");
            cfg.status.listen = ([127, 0, 0, 1], 0).into();
            Gateway::start(cfg).await?
        }
        other => other?,
    };
    println!("plantgate demo");
    println!("  simulated press : Modbus TCP on {} (counter at holding register {COUNTER_REGISTER}, state at {STATE_REGISTER})", plc.addr);
    println!("  event store     : {}", dir.path().display());
    println!("  Odoo            : dry run, each call is printed below instead of sent");
    println!(
        "  status          : http://{0}/status  http://{0}/metrics  http://{0}/healthz",
        gateway.status_addr
    );
    println!("  The press runs, stops 8 s on a hydraulic fault (downtime), and stops 2 s (too short to report). Ctrl-C stops.");
    let stop = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    // Like `run`: a stage that dies ends the demo with the reason (exit 2).
    let failure = tokio::select! {
        _ = stop => None,
        f = gateway.failed() => Some(f),
    };
    gateway.stop().await;
    press.abort();
    if let Some(f) = failure {
        return Err(f.into());
    }
    println!("plantgate demo: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_demo_config_is_valid() {
        let text = super::DEMO_CONFIG
            .replace("@PLC_ADDRESS@", "127.0.0.1:1502")
            .replace("@DATA_DIR@", "/tmp/x");
        let c = crate::config::parse(&text, std::path::Path::new("demo.toml"));
        assert!(c.is_ok(), "{c:?}");
    }
}
