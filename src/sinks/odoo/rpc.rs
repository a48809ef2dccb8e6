//! Odoo's external APIs behind one call ([`Rpc::call`]: model, method,
//! record ids, named arguments, context):
//! - JSON-2 (`POST /json/2/<model>/<method>`, Odoo 19 on): bearer API key,
//!   named arguments, bare JSON results, errors as HTTP statuses;
//! - JSON-RPC (`POST /jsonrpc`, 16–18, deprecated in 19):
//!   `common.authenticate` once, then `object.execute_kw` with the uid and
//!   key on every call, the named arguments as its kwargs.
//!
//! `auto` asks `GET /web/version` (19 serves it without auth) and uses
//! JSON-2 from 19 on, JSON-RPC otherwise.

use crate::config::{OdooApi, Secret, SecretError, SecretSource};
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach Odoo at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("Odoo answered HTTP {status}: {snippet}")]
    Http { status: u16, snippet: String },
    /// HTTP 429, or a 503 that says when to come back (Retry-After).
    #[error("Odoo asks this gateway to wait (HTTP {status}, Retry-After {}): {snippet}", retry_after.map_or("not given".to_string(), |d| format!("{}s", d.as_secs())))]
    Throttled {
        status: u16,
        retry_after: Option<std::time::Duration>,
        snippet: String,
    },
    #[error("Odoo refused login {login:?} on database {database:?}: check the login, the API key and the database name")]
    LoginRefused { login: String, database: String },
    #[error("Odoo refused the API key on database {database:?}: check that the key is valid, not expired, and of a user of that database")]
    KeyRefused { database: String },
    #[error("{name}: {message}")]
    Odoo { name: String, message: String },
    #[error("unexpected answer from Odoo: {0}")]
    Protocol(String),
    #[error("Odoo refused the API key, and its source cannot be read again: {0}")]
    KeySource(#[from] SecretError),
}

impl RpcError {
    /// Odoo's exception class name, when Odoo raised one.
    pub fn odoo_name(&self) -> Option<&str> {
        match self {
            RpcError::Odoo { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Odoo refused the key (or the login it belongs to).
    pub fn is_key_refusal(&self) -> bool {
        match self {
            RpcError::KeyRefused { .. } | RpcError::LoginRefused { .. } => true,
            RpcError::Odoo { name, .. } => name == "odoo.exceptions.AccessDenied",
            _ => false,
        }
    }
}

/// One finished call, for the sink's metrics and health.
#[derive(Clone, Debug)]
pub struct Observed {
    pub model: String,
    pub method: String,
    pub seconds: f64,
    /// Records written (write, create, load), when the call succeeded.
    pub records: u64,
    /// Whether Odoo answered at all (an error from Odoo is an answer).
    pub reached: bool,
    pub ok: bool,
}

/// The protocol in use once known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    JsonRpc,
    Json2,
}

pub struct Rpc {
    http: reqwest::Client,
    base: String,
    endpoint: String,
    database: String,
    login: String,
    key: Secret,
    /// Where the key is read again after Odoo refused it (rotation without
    /// a restart); None: the key is fixed (tests).
    key_source: Option<SecretSource>,
    /// Odoo refused the key last time: read its source before the next call.
    key_refused: bool,
    api: OdooApi,
    /// Decided on the first call (`auto` asks the server).
    protocol: Option<Protocol>,
    /// The server's version, when `auto` asked it.
    version: Option<String>,
    uid: Option<i64>,
    next_id: u64,
    /// Calls finished since the sink last took them ([`Rpc::take_observed`]).
    observed: Vec<Observed>,
}

/// Records a successful call wrote: the ids of a write, the ids a create or
/// load returned; none for reads.
fn written(method: &str, ids: Option<&[i64]>, result: &Value) -> u64 {
    let count = |v: &Value| v.as_array().map_or(0, |a| a.len() as u64);
    match method {
        "write" => ids.map_or(0, |i| i.len() as u64),
        "create" => match result {
            Value::Array(a) => a.len() as u64,
            Value::Number(_) => 1,
            _ => 0,
        },
        "load" => result.get("ids").map_or(0, count),
        _ => 0,
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 10.2.3), as a
/// wait from `now`; a date in the past is no wait.
pub fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<std::time::Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// A 429 or 503 answer: its Retry-After, read before the body.
fn retry_after(resp: &reqwest::Response) -> Option<std::time::Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(v, chrono::Utc::now())
}

/// A failed exchange, in words that say what to fix when TLS failed.
fn unreachable(url: &str, e: &reqwest::Error) -> RpcError {
    RpcError::Unreachable {
        url: url.to_string(),
        detail: super::http::explain_tls(e).unwrap_or_else(|| super::http::error_chain(e)),
    }
}

/// Send `req` and read the answer: its HTTP status and body, or the error
/// an unreachable server or one that asks the gateway to wait is.
async fn exchange(url: &str, req: reqwest::RequestBuilder) -> Result<(u16, String), RpcError> {
    let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
    let status = resp.status().as_u16();
    let after = retry_after(&resp);
    let text = resp.text().await.map_err(|e| unreachable(url, &e))?;
    if status == 429 || (status == 503 && after.is_some()) {
        return Err(RpcError::Throttled {
            status,
            retry_after: after,
            snippet: snippet(&text),
        });
    }
    Ok((status, text))
}

fn snippet(text: &str) -> String {
    text.chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

impl Rpc {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        database: &str,
        login: &str,
        key: Secret,
        api: OdooApi,
    ) -> Self {
        let base = base_url.trim_end_matches('/').to_string();
        Rpc {
            http,
            endpoint: format!("{base}/jsonrpc"),
            base,
            database: database.to_string(),
            login: login.to_string(),
            key,
            key_source: None,
            key_refused: false,
            api,
            protocol: None,
            version: None,
            uid: None,
            next_id: 1,
            observed: Vec::new(),
        }
    }

    /// Read the key again from `source` whenever Odoo refuses it.
    pub fn with_key_source(mut self, source: SecretSource) -> Self {
        self.key_source = Some(source);
        self
    }

    /// Whether Odoo refused the key on the last call that reached it.
    pub fn key_refused(&self) -> bool {
        self.key_refused
    }

    /// The protocol to speak, asking the server once under `auto`.
    pub async fn protocol(&mut self) -> Result<Protocol, RpcError> {
        if let Some(p) = self.protocol {
            return Ok(p);
        }
        let p = match self.api {
            OdooApi::JsonRpc => Protocol::JsonRpc,
            OdooApi::Json2 => Protocol::Json2,
            OdooApi::Auto => {
                let url = format!("{}/web/version", self.base);
                let (status, text) = exchange(&url, self.http.get(&url)).await?;
                if matches!(status, 502..=504) {
                    return Err(RpcError::Http {
                        status,
                        snippet: snippet(&text),
                    });
                }
                // 16–18 have no such route (404): JSON-RPC.
                let reply = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|_| status == 200);
                let major = reply
                    .as_ref()
                    .and_then(|v| v.get("version_info")?.get(0)?.as_i64());
                self.version = reply.and_then(|v| v.get("version")?.as_str().map(str::to_string));
                let p = match major {
                    Some(m) if m >= 19 => Protocol::Json2,
                    _ => Protocol::JsonRpc,
                };
                tracing::info!(version = ?major, protocol = ?p, "Odoo API detected");
                p
            }
        };
        self.protocol = Some(p);
        Ok(p)
    }

    /// The protocol in use, with the server version when known.
    pub fn describe(&self) -> Option<String> {
        let p = match self.protocol? {
            Protocol::Json2 => "json2",
            Protocol::JsonRpc => "jsonrpc",
        };
        Some(match &self.version {
            Some(v) => format!("{p} (Odoo {v})"),
            None => p.to_string(),
        })
    }

    /// `model.method(*ids, **named)` with `context`, over the protocol in
    /// use. After a refused key, its source is read again first.
    pub async fn call(
        &mut self,
        model: &str,
        method: &str,
        ids: Option<&[i64]>,
        named: Value,
        context: Option<Value>,
    ) -> Result<Value, RpcError> {
        self.reread_refused_key()?;
        let started = std::time::Instant::now();
        let result = self.call_once(model, method, ids, named, context).await;
        self.observed.push(Observed {
            model: model.to_string(),
            method: method.to_string(),
            seconds: started.elapsed().as_secs_f64(),
            records: match &result {
                Ok(v) => written(method, ids, v),
                Err(_) => 0,
            },
            reached: !matches!(
                &result,
                Err(RpcError::Unreachable { .. }
                    | RpcError::Http {
                        status: 502..=504,
                        ..
                    })
            ),
            ok: result.is_ok(),
        });
        match &result {
            Ok(_) => {
                if self.key_refused {
                    tracing::info!("Odoo accepts the API key again; delivery resumes");
                }
                self.key_refused = false;
            }
            Err(e) if e.is_key_refusal() => {
                if !self.key_refused {
                    // Once per refusal, not per retry; never the key itself.
                    tracing::error!(error = %e,
                        "Odoo refused the API key: delivery is paused and the key is read again from its source before each retry, so a new key written there is used without a restart");
                }
                self.key_refused = true;
                self.uid = None;
            }
            Err(_) => {}
        }
        result
    }

    /// After Odoo refused the key, read it again from its source (it may
    /// have been rotated); the uid goes with the old key.
    fn reread_refused_key(&mut self) -> Result<(), RpcError> {
        if self.key_refused {
            if let Some(source) = &self.key_source {
                self.key = source.read()?;
                self.uid = None;
            }
        }
        Ok(())
    }

    /// Resolve what every call needs (the protocol; the uid over JSON-RPC)
    /// before calls are sent side by side on [`Rpc::fork`]s.
    pub async fn ready(&mut self) -> Result<(), RpcError> {
        self.reread_refused_key()?;
        let result = match self.protocol().await {
            Ok(Protocol::JsonRpc) => self.uid().await.map(|_| ()),
            Ok(Protocol::Json2) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            if e.is_key_refusal() {
                self.key_refused = true;
            }
        }
        result
    }

    /// A handle for one more request in flight beside this one's: the same
    /// connection pool, protocol, uid and key. Give it back with
    /// [`Rpc::join`], which keeps its observations and a key refusal.
    pub fn fork(&self) -> Rpc {
        Rpc {
            http: self.http.clone(),
            base: self.base.clone(),
            endpoint: self.endpoint.clone(),
            database: self.database.clone(),
            login: self.login.clone(),
            key: self.key.clone(),
            key_source: None,
            key_refused: false,
            api: self.api,
            protocol: self.protocol,
            version: self.version.clone(),
            uid: self.uid,
            next_id: self.next_id,
            observed: Vec::new(),
        }
    }

    /// Take back a [`Rpc::fork`].
    pub fn join(&mut self, other: Rpc) {
        self.observed.extend(other.observed);
        self.next_id = self.next_id.max(other.next_id);
        if other.key_refused {
            self.key_refused = true;
            self.uid = None;
        }
    }

    /// The calls finished since the last take.
    pub fn take_observed(&mut self) -> Vec<Observed> {
        std::mem::take(&mut self.observed)
    }

    async fn call_once(
        &mut self,
        model: &str,
        method: &str,
        ids: Option<&[i64]>,
        named: Value,
        context: Option<Value>,
    ) -> Result<Value, RpcError> {
        let mut named = match named {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Some(c) = context {
            named.insert("context".into(), c);
        }
        match self.protocol().await? {
            Protocol::JsonRpc => {
                let args = match ids {
                    Some(ids) => json!([ids]),
                    None => json!([]),
                };
                self.execute_kw(model, method, args, Value::Object(named))
                    .await
            }
            Protocol::Json2 => {
                if let Some(ids) = ids {
                    named.insert("ids".into(), json!(ids));
                }
                self.json2(model, method, Value::Object(named)).await
            }
        }
    }

    /// `POST /json/2/<model>/<method>`: the body is the named arguments.
    async fn json2(&mut self, model: &str, method: &str, body: Value) -> Result<Value, RpcError> {
        let url = format!("{}/json/2/{model}/{method}", self.base);
        let req = self
            .http
            .post(&url)
            .bearer_auth(self.key.expose())
            .header("X-Odoo-Database", &self.database)
            .json(&body);
        let (status, text) = exchange(&url, req).await?;
        if status == 200 {
            return serde_json::from_str(&text).map_err(|e| {
                RpcError::Protocol(format!(
                    "not JSON ({e}): {}",
                    text.chars().take(120).collect::<String>()
                ))
            });
        }
        // Odoo's errors are a JSON object; a proxy's are HTML.
        if status == 401 {
            return Err(RpcError::KeyRefused {
                database: self.database.clone(),
            });
        }
        let err = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v.get("name").is_some());
        match err {
            Some(e) => Err(RpcError::Odoo {
                name: e["name"].as_str().unwrap_or("unknown").to_string(),
                message: e["message"].as_str().unwrap_or("").to_string(),
            }),
            None => Err(RpcError::Http {
                status,
                snippet: snippet(&text),
            }),
        }
    }

    /// One JSON-RPC request to a service (`common`, `object`).
    async fn service(
        &mut self,
        service: &str,
        method: &str,
        args: Value,
    ) -> Result<Value, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({
            "jsonrpc": "2.0",
            "method": "call",
            "id": id,
            "params": {"service": service, "method": method, "args": args},
        });
        let req = self.http.post(&self.endpoint).json(&body);
        let (status, text) = exchange(&self.endpoint, req).await?;
        if !(200..300).contains(&status) {
            return Err(RpcError::Http {
                status,
                snippet: snippet(&text),
            });
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            RpcError::Protocol(format!(
                "not JSON ({e}): {}",
                text.chars().take(120).collect::<String>()
            ))
        })?;
        if let Some(err) = reply.get("error") {
            let data = err.get("data");
            let name = data
                .and_then(|d| d.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            let message = data
                .and_then(|d| d.get("message"))
                .and_then(Value::as_str)
                .or_else(|| err.get("message").and_then(Value::as_str))
                .unwrap_or("")
                .to_string();
            return Err(RpcError::Odoo { name, message });
        }
        // Odoo omits `result` when the method returned None.
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn uid(&mut self) -> Result<i64, RpcError> {
        if let Some(uid) = self.uid {
            return Ok(uid);
        }
        let args = json!([self.database, self.login, self.key.expose(), {}]);
        let result = self.service("common", "authenticate", args).await?;
        match result.as_i64() {
            Some(uid) if uid > 0 => {
                tracing::info!(login = %self.login, uid, "authenticated with Odoo");
                self.uid = Some(uid);
                Ok(uid)
            }
            _ => Err(RpcError::LoginRefused {
                login: self.login.clone(),
                database: self.database.clone(),
            }),
        }
    }

    /// `object.execute_kw(db, uid, key, model, method, args, kwargs)`.
    async fn execute_kw(
        &mut self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Value, RpcError> {
        let uid = self.uid().await?;
        let all = json!([
            self.database,
            uid,
            self.key.expose(),
            model,
            method,
            args,
            kwargs
        ]);
        let result = self.service("object", "execute_kw", all).await;
        if let Err(RpcError::Odoo { name, .. }) = &result {
            if name == "odoo.exceptions.AccessDenied" {
                // The key was revoked, rotated or expired (18 on) since the
                // login: authenticate again next time, and say it in words.
                self.uid = None;
                return Err(RpcError::KeyRefused {
                    database: self.database.clone(),
                });
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2026 07:28:00 GMT")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:45 GMT", now),
            Some(Duration::from_secs(45))
        );
        // A date already past: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
