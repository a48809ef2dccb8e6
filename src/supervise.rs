//! The gateway's stages as named tasks. Every stage runs until shutdown, so
//! a stage that ends (or panics) before it is a failure: [`Stages::next_end`]
//! resolves with which stage and why, and `plantgate run` exits 2 on it so
//! systemd restarts the process instead of leaving a half-dead gateway up.

use std::collections::HashMap;
use std::future::Future;
use tokio::task::{Id, JoinError, JoinSet};

/// A stage that ended while the gateway was meant to run.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}` {why}")]
pub struct StageFailure {
    /// e.g. `edge`, `sink odoo`, `status listener`, `source press1`.
    pub stage: String,
    pub why: String,
}

#[derive(Default)]
pub struct Stages {
    set: JoinSet<()>,
    names: HashMap<Id, String>,
}

impl Stages {
    /// Run `fut` as the stage `name`.
    pub fn spawn<F>(&mut self, name: impl Into<String>, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let hook = name.clone();
        let handle = self.set.spawn(async move {
            if crate::fault::injected("panic", &hook) {
                panic!("injected fault: PLANTGATE_TEST_FAULT=panic:{hook}");
            }
            fut.await
        });
        self.names.insert(handle.id(), name);
    }

    /// The next stage to end, with why; pending while every stage runs (or
    /// when there is none). Cancel safe: nothing is lost when dropped.
    pub async fn next_end(&mut self) -> StageFailure {
        match self.set.join_next_with_id().await {
            None => std::future::pending().await,
            Some(Ok((id, ()))) => StageFailure {
                stage: self.name(id),
                why: "ended unexpectedly".into(),
            },
            Some(Err(e)) => {
                let stage = self.name(e.id());
                StageFailure {
                    stage,
                    why: describe(e),
                }
            }
        }
    }

    /// Wait for every stage to end (after shutdown was signalled); a stage
    /// that panics on the way out is logged, not hidden.
    pub async fn join_all(&mut self) {
        while let Some(r) = self.set.join_next_with_id().await {
            if let Err(e) = r {
                let stage = self.name(e.id());
                tracing::error!(stage = %stage, "stage failed while stopping: {}", describe(e));
            }
        }
    }

    fn name(&mut self, id: Id) -> String {
        self.names
            .remove(&id)
            .unwrap_or_else(|| format!("task {id}"))
    }
}

fn describe(e: JoinError) -> String {
    if e.is_panic() {
        let payload = e.into_panic();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".into());
        format!("panicked: {msg}")
    } else {
        "was cancelled".into()
    }
}
