//! The gateway's OPC UA sources alone, with the samples they emit: what
//! the edge would see.
#![allow(dead_code)]

use plantgate::config;
use plantgate::model::{Quality, Sample, TagTable, Value};
use plantgate::status::Telemetry;
use plantgate::supervise::Stages;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The gateway's sources alone, with the samples they emit.
pub struct Sources {
    pub rx: mpsc::Receiver<Sample>,
    pub telemetry: Arc<Telemetry>,
    /// The config's tags: samples carry ids.
    pub tags: Arc<TagTable>,
    /// Samples received while waiting for another tag's.
    kept: VecDeque<Sample>,
    shutdown: watch::Sender<bool>,
    tasks: Stages,
}

pub fn gateway_config(dir: &Path, source: &str, tags: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{data}"

{source}

{tags}

[odoo]
dry_run = true
"#,
        data = dir.join("data").display()
    )
}

pub fn opcua_source(url: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "press"
kind = "opcua"
endpoint = "{url}"
publishing_interval = "50ms"
poll_interval = "100ms"
timeout = "2s"
backoff_max = "300ms"
{extra}
"#
    )
}

pub fn start_sources(dir: &Path, text: &str) -> Sources {
    let cfg = config::parse(text, &dir.join("gw.toml")).expect("config");
    let (tx, rx) = mpsc::channel(10_000);
    let metrics = plantgate::sources::SourceMetrics::default();
    let telemetry = Arc::new(Telemetry::new(|r| metrics.register(r)));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Stages::default();
    plantgate::sources::spawn_all(
        &cfg,
        &tx,
        &telemetry,
        &metrics,
        &shutdown_rx,
        &mut tasks,
        None,
    );
    Sources {
        rx,
        telemetry,
        tags: cfg.tag_table.clone(),
        kept: VecDeque::new(),
        shutdown,
        tasks,
    }
}

impl Sources {
    /// The first sample of `tag` that satisfies `pred` (earlier samples of
    /// other tags are kept for later calls), within 30 s.
    pub async fn next(&mut self, tag: &str, pred: impl Fn(&Sample) -> bool) -> Sample {
        let tags = self.tags.clone();
        let of = |s: &Sample| s.name(&tags) == tag;
        if let Some(i) = self.kept.iter().position(|s| of(s) && pred(s)) {
            // Samples of this tag before the match are passed over.
            let s = self.kept.remove(i).expect("position found above");
            self.kept.retain(|k| !of(k));
            return s;
        }
        self.kept.retain(|k| !of(k));
        let wait = async {
            while let Some(s) = self.rx.recv().await {
                // The rig stands for the edge: a sample taken is committed
                // (a source that acknowledges after commit moves on).
                if let Some(r) = &s.receipt {
                    r.committed();
                }
                if of(&s) && pred(&s) {
                    return s;
                }
                if !of(&s) {
                    self.kept.push_back(s);
                }
            }
            panic!("source stopped")
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no matching sample of {tag} within 30 s"))
    }

    /// Good values of `tag` received from now on, within `window`.
    pub async fn values_for(&mut self, tag: &str, window: Duration) -> Vec<Value> {
        self.samples_for(tag, window)
            .await
            .into_iter()
            .filter(|s| s.quality == Quality::Good)
            .map(|s| s.value)
            .collect()
    }

    /// Every sample of `tag` received from now on, within `window`.
    pub async fn samples_for(&mut self, tag: &str, window: Duration) -> Vec<Sample> {
        let tags = self.tags.clone();
        let of = |s: &Sample| s.name(&tags) == tag;
        self.kept.retain(|k| !of(k));
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(s)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            if of(&s) {
                out.push(s);
            } else {
                self.kept.push_back(s);
            }
        }
        out
    }

    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        let stop = async { self.tasks.join_all().await };
        tokio::time::timeout(Duration::from_secs(10), stop)
            .await
            .expect("sources stop on shutdown");
    }
}

pub fn good(s: &Sample) -> bool {
    s.quality == Quality::Good
}
