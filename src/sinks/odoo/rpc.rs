//! Odoo's JSON-RPC API (`POST /jsonrpc`): `common.authenticate` once, then
//! `object.execute_kw` with the uid and API key on every call.

use crate::config::Secret;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach Odoo at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("Odoo answered HTTP {status}: {snippet}")]
    Http { status: u16, snippet: String },
    #[error("Odoo refused login {login:?} on database {database:?}: check the login, the API key and the database name")]
    LoginRefused { login: String, database: String },
    #[error("{name}: {message}")]
    Odoo { name: String, message: String },
    #[error("unexpected answer from Odoo: {0}")]
    Protocol(String),
}

impl RpcError {
    /// Odoo's exception class name, when Odoo raised one.
    pub fn odoo_name(&self) -> Option<&str> {
        match self {
            RpcError::Odoo { name, .. } => Some(name),
            _ => None,
        }
    }
}

pub struct JsonRpc {
    http: reqwest::Client,
    endpoint: String,
    database: String,
    login: String,
    key: Secret,
    uid: Option<i64>,
    next_id: u64,
}

/// Error text with its causes: reqwest's top-level message alone ("error
/// sending request") does not say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl JsonRpc {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        database: &str,
        login: &str,
        key: Secret,
    ) -> Self {
        JsonRpc {
            http,
            endpoint: format!("{}/jsonrpc", base_url.trim_end_matches('/')),
            database: database.to_string(),
            login: login.to_string(),
            key,
            uid: None,
            next_id: 1,
        }
    }

    async fn call(&mut self, service: &str, method: &str, args: Value) -> Result<Value, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({
            "jsonrpc": "2.0",
            "method": "call",
            "id": id,
            "params": {"service": service, "method": method, "args": args},
        });
        let resp = self
            .http
            .post(&self.endpoint)
            .json(&body)
            .send()
            .await
            .map_err(|e| RpcError::Unreachable {
                url: self.endpoint.clone(),
                detail: chain(&e),
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| RpcError::Unreachable {
            url: self.endpoint.clone(),
            detail: chain(&e),
        })?;
        if !status.is_success() {
            return Err(RpcError::Http {
                status: status.as_u16(),
                snippet: text
                    .chars()
                    .take(200)
                    .collect::<String>()
                    .trim()
                    .to_string(),
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
        let result = self.call("common", "authenticate", args).await?;
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
    pub async fn execute_kw(
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
        let result = self.call("object", "execute_kw", all).await;
        if let Err(RpcError::Odoo { name, .. }) = &result {
            if name == "odoo.exceptions.AccessDenied" {
                // The key may have been rotated: authenticate again next time.
                self.uid = None;
            }
        }
        result
    }
}
