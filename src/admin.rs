//! Store administration for people: dead letters and queue statistics, as
//! JSON shared by the CLI (`plantgate dlq …`, `plantgate queue stats`) and
//! the status listener. On a stopped gateway the CLI opens the store
//! itself; on a running one (the store is locked) it asks the gateway's
//! status listener, so the sled files are never opened twice.

use crate::config::{Config, Secret, StatusConfig};
use crate::model::{Event, Millis};
use crate::records::{FormatZero, Lanes};
use crate::store::{lock, DeadLetter, Lane, Stats, Store, StoreError};
use serde_json::{json, Value};

/// A dead letter for people: the decoded event beside the bookkeeping.
pub fn dead_letter_json(d: &DeadLetter) -> Value {
    let refused = d.kind == crate::store::SOURCE_MESSAGE;
    let event = Event::decode(&d.payload)
        .ok()
        .filter(|_| !refused)
        .and_then(|e| serde_json::to_value(e).ok());
    // A refused source message is shown as text (its start, at most).
    let message = refused.then(|| {
        let text = String::from_utf8_lossy(&d.payload);
        text.chars().take(256).collect::<String>()
    });
    json!({
        "id": d.id,
        "sink": d.sink,
        "lane": d.lane.as_str(),
        "kind": d.kind,
        "key": d.key,
        "event_id": d.event_id,
        "event_time": (d.time.0 > 0).then(|| d.time.rfc3339()),
        "accepted": (d.accepted.0 > 0).then(|| d.accepted.rfc3339()),
        "reason": d.reason,
        "attempts": d.attempts,
        "first_attempt": d.first_attempt.map(Millis::rfc3339),
        "last_attempt": d.last_attempt.map(Millis::rfc3339),
        "dead_at": d.dead_at.rfc3339(),
        "event": event,
        "raw_bytes": if event_is_raw(d) { d.payload.len() } else { 0 },
        "message": message,
        "replay": (!refused).then(|| format!("plantgate dlq replay {}", d.id)),
    })
}

fn event_is_raw(d: &DeadLetter) -> bool {
    Event::decode(&d.payload).is_err()
}

/// Per sink and lane: depth, bytes, oldest age against its target.
pub fn stats_json(s: &Stats, now: Millis) -> Value {
    let sinks: serde_json::Map<String, Value> = s
        .sinks
        .iter()
        .map(|k| {
            let lanes: serde_json::Map<String, Value> = Lane::ALL
                .iter()
                .map(|l| {
                    let st = k.lanes[l.index()];
                    let target = s.targets[l.index()].as_secs_f64();
                    let age = st
                        .head
                        .map_or(0.0, |(_, t)| now.saturating_sub(t).max(0) as f64 / 1000.0);
                    (
                        l.as_str().to_string(),
                        json!({
                            "depth": st.depth,
                            "bytes": st.bytes,
                            "oldest_age_seconds": age,
                            "target_seconds": target,
                            "late": st.depth > 0 && age > target,
                        }),
                    )
                })
                .collect();
            (
                k.sink.clone(),
                json!({ "lanes": lanes, "dead_letters": k.dead_letters, "depth": k.depth() }),
            )
        })
        .collect();
    json!({
        "sinks": sinks,
        "used_bytes": s.used_bytes,
        "max_bytes": s.max_bytes,
        "backpressure": s.backpressure,
        "quarantine": s.quarantine.as_ref().map(|q| json!({
            "moved_to": q.moved_to.display().to_string(),
            "reason": q.reason,
        })),
    })
}

/// Replay every dead letter (of one sink, if given); returns their ids.
pub async fn replay_all(store: &Store, sink: Option<&str>) -> Result<Vec<u64>, StoreError> {
    let mut ids = Vec::new();
    for d in store.dead_letters(sink)? {
        // A refused source message is not an event: nothing to deliver.
        if d.kind == crate::store::SOURCE_MESSAGE {
            continue;
        }
        store.replay(d.id).await?;
        ids.push(d.id);
    }
    Ok(ids)
}

/// Where the commands act: the store itself, or the running gateway.
pub enum Target {
    Local(Box<Store>),
    Running(Remote),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the gateway is running but its status listener at {base} did not answer: {why}")]
    Remote { base: String, why: String },
    #[error("{0}")]
    Refused(String),
}

pub fn target(config: &Config) -> Result<Target, AdminError> {
    let dir = config.gateway.data_dir.join("store");
    if lock::is_held(&dir) {
        return Ok(Target::Running(Remote::new(&config.status)?));
    }
    let sinks = crate::pipeline::sink_names(config);
    let lanes = Lanes::new(&config.events);
    let store = Store::open(&dir, &sinks, &config.store, &FormatZero(&lanes))?;
    Ok(Target::Local(Box::new(store)))
}

/// A running gateway's status listener, reached as its config says: with
/// its token, and over TLS trusting the listener's own certificate.
pub struct Remote {
    base: String,
    client: reqwest::Client,
    token: Option<Secret>,
}

impl Remote {
    fn new(status: &StatusConfig) -> Result<Remote, AdminError> {
        crate::sinks::odoo::http::install_crypto_provider();
        let base = status.local_url();
        let err = |why: String| AdminError::Remote {
            base: base.clone(),
            why,
        };
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = &status.tls {
            let roots = crate::sinks::odoo::http::pem_roots(&tls.cert_file)
                .map_err(|e| err(e.to_string()))?;
            builder = builder.tls_certs_only(roots);
        }
        let client = builder.build().map_err(|e| err(e.to_string()))?;
        let token = status
            .token
            .as_ref()
            .map(|t| t.read())
            .transpose()
            .map_err(|e| err(e.to_string()))?;
        Ok(Remote {
            base,
            client,
            token,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> Result<Value, AdminError> {
        let err = |why: String| AdminError::Remote {
            base: self.base.clone(),
            why,
        };
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(AdminError::Refused(
                "the status listener refused the token: check [status] token_file".into(),
            ));
        }
        let body: Value = resp.json().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            let why = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_string();
            return Err(AdminError::Refused(why));
        }
        Ok(body)
    }
}

impl Target {
    pub async fn list(&self, sink: Option<&str>) -> Result<Value, AdminError> {
        match self {
            Target::Local(s) => Ok(Value::Array(
                s.dead_letters(sink)?.iter().map(dead_letter_json).collect(),
            )),
            Target::Running(r) => {
                let q = sink.map(|s| format!("?sink={s}")).unwrap_or_default();
                r.call(reqwest::Method::GET, &format!("/dlq{q}")).await
            }
        }
    }

    pub async fn show(&self, id: u64) -> Result<Value, AdminError> {
        match self {
            Target::Local(s) => Ok(dead_letter_json(&s.dead_letter_get(id)?)),
            Target::Running(r) => r.call(reqwest::Method::GET, &format!("/dlq/{id}")).await,
        }
    }

    pub async fn replay(&self, id: Option<u64>, sink: Option<&str>) -> Result<Value, AdminError> {
        match self {
            Target::Local(s) => {
                let ids = match id {
                    Some(id) => {
                        s.replay(id).await?;
                        vec![id]
                    }
                    None => replay_all(s, sink).await?,
                };
                Ok(json!({ "replayed": ids }))
            }
            Target::Running(r) => {
                let path = match (id, sink) {
                    (Some(id), _) => format!("/dlq/{id}/replay"),
                    (None, Some(s)) => format!("/dlq/replay?sink={s}"),
                    (None, None) => "/dlq/replay".to_string(),
                };
                r.call(reqwest::Method::POST, &path).await
            }
        }
    }

    pub async fn drop_letter(&self, id: u64) -> Result<Value, AdminError> {
        match self {
            Target::Local(s) => {
                Ok(json!({ "dropped": dead_letter_json(&s.drop_dead_letter(id).await?) }))
            }
            Target::Running(r) => {
                r.call(reqwest::Method::POST, &format!("/dlq/{id}/drop"))
                    .await
            }
        }
    }

    pub async fn stats(&self) -> Result<Value, AdminError> {
        match self {
            Target::Local(s) => Ok(stats_json(&s.stats(), Millis::now())),
            Target::Running(r) => r.call(reqwest::Method::GET, "/queue").await,
        }
    }
}

/// `dlq list` as a table.
pub fn dlq_table(letters: &Value) -> String {
    let mut out = String::new();
    let rows = letters.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no dead letters\n".into();
    }
    out.push_str(&format!(
        "{:>5}  {:<8}  {:<8}  {:<18}  {:<12}  {:<24}  {:>8}  REASON\n",
        "ID", "SINK", "LANE", "KIND", "KEY", "EVENT TIME", "ATTEMPTS"
    ));
    for r in rows {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        out.push_str(&format!(
            "{:>5}  {:<8}  {:<8}  {:<18}  {:<12}  {:<24}  {:>8}  {}\n",
            r.get("id").and_then(Value::as_u64).unwrap_or(0),
            s("sink"),
            s("lane"),
            s("kind"),
            s("key"),
            s("event_time"),
            r.get("attempts").and_then(Value::as_u64).unwrap_or(0),
            s("reason"),
        ));
    }
    out.push_str(
        "replay one with `plantgate dlq replay ID`, all with `plantgate dlq replay --all`\n",
    );
    out
}

/// `queue stats` as a table.
pub fn stats_table(stats: &Value) -> String {
    let mut out = format!(
        "{:<8}  {:<8}  {:>8}  {:>10}  {:>10}  {:>10}  STATE\n",
        "SINK", "LANE", "DEPTH", "BYTES", "OLDEST", "TARGET"
    );
    if let Some(sinks) = stats.get("sinks").and_then(Value::as_object) {
        for (sink, v) in sinks {
            for lane in Lane::ALL {
                let l = &v["lanes"][lane.as_str()];
                let num = |k: &str| l.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                out.push_str(&format!(
                    "{:<8}  {:<8}  {:>8}  {:>10}  {:>9.1}s  {:>9.0}s  {}\n",
                    sink,
                    lane.as_str(),
                    num("depth"),
                    num("bytes"),
                    num("oldest_age_seconds"),
                    num("target_seconds"),
                    if l.get("late").and_then(Value::as_bool) == Some(true) {
                        "LATE"
                    } else {
                        "ok"
                    }
                ));
            }
            out.push_str(&format!(
                "{:<8}  dead letters: {}\n",
                sink,
                v.get("dead_letters").and_then(Value::as_u64).unwrap_or(0)
            ));
        }
    }
    let used = stats.get("used_bytes").and_then(Value::as_u64).unwrap_or(0);
    match stats.get("max_bytes").and_then(Value::as_u64) {
        Some(max) => out.push_str(&format!("store: {used} of {max} bytes\n")),
        None => out.push_str(&format!("store: {used} bytes (no quota)\n")),
    }
    if stats.get("backpressure").and_then(Value::as_bool) == Some(true) {
        out.push_str("store FULL: sources are slowed\n");
    }
    if let Some(q) = stats.get("quarantine").filter(|q| !q.is_null()) {
        out.push_str(&format!(
            "damaged store moved to {} at start: {}\n",
            q["moved_to"].as_str().unwrap_or(""),
            q["reason"].as_str().unwrap_or("")
        ));
    }
    out
}
