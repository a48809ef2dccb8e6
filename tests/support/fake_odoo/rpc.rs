//! Services: common and object, as `dispatch_rpc` routes them.

use super::*;

pub(super) struct State {
    pub(super) db: Db,
    pub(super) fault: Fault,
    pub(super) calls: Vec<Call>,
    /// Major version served: 17 (JSON-RPC only) or 19 (JSON-2 as well).
    pub(super) version: u8,
    /// `Retry-After` of the 429 or 503 just produced, for the HTTP layer to send.
    pub(super) retry_after: Option<String>,
    /// The API key's `expiration_date` has passed (18.0 on).
    pub(super) key_expired: bool,
}

/// An HTTP request as the handlers need it.
pub(super) struct HttpReq<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    pub(super) content_type: Option<&'a str>,
    pub(super) authorization: Option<&'a str>,
    pub(super) database: Option<&'a str>,
    pub(super) body: &'a [u8],
}

impl State {
    pub(super) fn dispatch(
        &mut self,
        service: &str,
        method: &str,
        args: &[Value],
    ) -> Result<Option<Value>, OdooError> {
        let none = Map::new();
        match service {
            "common" => match method {
                "version" => Ok(Some(json!({
                    "server_version": format!("{}.0", self.version),
                    "server_version_info": [self.version, 0, 0, "final", 0, ""],
                    "server_serie": format!("{}.0", self.version),
                    "protocol_version": 1,
                }))),
                "login" | "authenticate" => {
                    let params: &[&str] = if method == "login" {
                        &["db", "login", "password"]
                    } else {
                        &["db", "login", "password", "user_agent_env"]
                    };
                    let a = bind(&format!("exp_{method}"), params, params.len(), args, &none)?;
                    let good = [DB, LOGIN, API_KEY]
                        .iter()
                        .zip(&a)
                        .all(|(want, got)| got.as_ref().and_then(Value::as_str) == Some(*want))
                        && !self.key_expired;
                    Ok(Some(if good { json!(UID) } else { FALSE }))
                }
                _ => Err(OdooError::new(
                    "builtins.Exception",
                    format!("Method not found: {method}"),
                )),
            },
            "object" => self.object(method, args),
            other => Err(OdooError::key_error(other)),
        }
    }

    /// odoo.service.model.dispatch: authenticate, then execute_kw.
    pub(super) fn object(
        &mut self,
        method: &str,
        args: &[Value],
    ) -> Result<Option<Value>, OdooError> {
        let none = Map::new();
        let head = bind(
            "dispatch",
            &["db", "uid", "password"],
            3,
            args.get(..3).unwrap_or(args),
            &none,
        )?;
        let uid = match &head[1] {
            Some(Value::Number(n)) => n.as_i64().or(n.as_f64().map(|x| x as i64)),
            Some(Value::String(s)) => Some(s.trim().parse::<i64>().map_err(|_| {
                OdooError::value_error(format!("invalid literal for int() with base 10: '{s}'"))
            })?),
            Some(Value::Bool(b)) => Some(*b as i64),
            other => {
                let got = other.as_ref().map(py_repr).unwrap_or_default();
                return Err(OdooError::type_error(format!(
                    "int() argument must be a string or a real number, not {got}"
                )));
            }
        };
        let authenticated = head[0].as_ref().and_then(Value::as_str) == Some(DB)
            && uid == Some(UID)
            && head[2].as_ref().and_then(Value::as_str) == Some(API_KEY)
            && !self.key_expired;
        if !authenticated {
            return Err(OdooError::new(
                "odoo.exceptions.AccessDenied",
                "Access Denied",
            ));
        }
        let (obj, meth, margs, kw) = match method {
            "execute_kw" => {
                let p = ["db", "uid", "password", "obj", "method", "args", "kw"];
                let a = bind("execute_kw", &p, 6, args, &none)?;
                let margs = match opt(&a[5]) {
                    Some(Value::Array(v)) => v.clone(),
                    other => {
                        return Err(OdooError::type_error(format!(
                            "execute_kw() args must be a list, got {}",
                            other.unwrap_or(&Value::Null)
                        )))
                    }
                };
                let kw = match opt(&a[6]) {
                    None => Map::new(),
                    Some(Value::Object(m)) => m.clone(),
                    Some(other) => {
                        return Err(OdooError::type_error(format!(
                            "argument after ** must be a mapping, not {other}"
                        )))
                    }
                };
                (
                    a[3].clone().unwrap_or(FALSE),
                    a[4].clone().unwrap_or(FALSE),
                    margs,
                    kw,
                )
            }
            _ => {
                return Err(OdooError::new(
                    "builtins.NameError",
                    format!("Method not available {method}"),
                ))
            }
        };
        self.execute(&obj, &meth, &margs, kw)
    }

    pub(super) fn execute(
        &mut self,
        obj: &Value,
        meth: &Value,
        args: &[Value],
        mut kw: Map<String, Value>,
    ) -> Result<Option<Value>, OdooError> {
        let meth = meth
            .as_str()
            .ok_or_else(|| OdooError::type_error("expected string or bytes-like object"))?;
        if meth.starts_with('_') || meth == "init" {
            return Err(OdooError::new(
                "odoo.exceptions.AccessError",
                format!("Private methods (such as {meth}) cannot be called remotely."),
            ));
        }
        let model = match obj {
            Value::String(s) if model_def(s).is_some() => s.as_str(),
            other => {
                return Err(OdooError::user(format!(
                    "Object {} doesn't exist",
                    other.as_str().map_or(other.to_string(), str::to_string)
                )))
            }
        };
        let context = match kw.remove("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(c)) => c,
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "context must be a dictionary, got {other}"
                )))
            }
        };
        if let Fault::SerializationFailure {
            model: m,
            method: mm,
            count,
        } = &mut self.fault
        {
            if *count > 0 && m.as_str() == model && mm.as_str() == meth {
                *count -= 1;
                return Err(OdooError::new(
                    "psycopg2.errors.SerializationFailure",
                    "could not serialize access due to concurrent update",
                ));
            }
        }
        if let Fault::ValidationError {
            model: m,
            method: mm,
            count,
        } = &mut self.fault
        {
            if *count > 0 && m.as_str() == model && mm.as_str() == meth {
                *count -= 1;
                return Err(OdooError::validation(format!(
                    "The operation cannot be completed: FakeOdoo injected a ValidationError on {model}.{meth}"
                )));
            }
        }
        // One transaction per RPC: roll the data back when the method fails.
        self.db.journal.clear();
        let ctx = Ctx {
            uid: UID,
            context: &context,
        };
        let result = self.db.call(&ctx, model, meth, args, &kw);
        if result.is_err() {
            self.db.rollback(0);
        }
        result
    }

    // -----------------------------------------------------------------------
    // The JSON-RPC envelope at /jsonrpc (JsonRPCDispatcher in odoo/http.py).
    // -----------------------------------------------------------------------

    pub(super) fn handle_http(&mut self, req: &HttpReq) -> (u16, &'static str, String) {
        let (path, content_type, body) = (req.path, req.content_type, req.body);
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let json2 = self.version >= 19 && path.starts_with("/json/2");
        let mut call = if json2 {
            describe_json2(path, parsed.as_ref())
        } else {
            describe(parsed.as_ref())
        };
        let target = (call.model.clone(), call.model_method.clone());
        let mut finish = |state: &mut State, outcome: String| {
            call.outcome = outcome;
            state.calls.push(call.clone());
        };
        if let Fault::BadGateway = self.fault {
            finish(self, "http:502".into());
            return (502, HTML, BAD_GATEWAY_HTML.into());
        }
        if let Fault::TooManyRequests { retry_after, count } = &mut self.fault {
            if *count > 0 {
                *count -= 1;
                self.retry_after = retry_after.clone();
                finish(self, "http:429".into());
                let text = "The user has sent too many requests in a given amount of time (\"rate limiting\").";
                return (429, HTML, werkzeug_page(429, "Too Many Requests", text));
            }
        }
        if let Fault::Overloaded { retry_after, count } = &mut self.fault {
            if *count > 0 {
                *count -= 1;
                self.retry_after = Some(retry_after.clone());
                finish(self, "http:503".into());
                let text = "The server is temporarily unable to service your request due to maintenance downtime or capacity problems. Please try again later.";
                return (503, HTML, werkzeug_page(503, "Service Unavailable", text));
            }
        }
        let unavailable = matches!(&self.fault, Fault::Unavailable { model, method }
            if target.0.as_deref() == Some(model.as_str()) && target.1.as_deref() == Some(method.as_str()));
        if unavailable {
            finish(self, "http:503".into());
            let text = "The server is temporarily unable to service your request due to maintenance downtime or capacity problems. Please try again later.";
            return (503, HTML, werkzeug_page(503, "Service Unavailable", text));
        }
        if self.version >= 19 && path == "/web/version" && req.method == "GET" {
            let v = json!({"version_info": [self.version, 0, 0, "final", 0, ""], "version": format!("{}.0", self.version)});
            return (200, JSON, v.to_string());
        }
        if json2 {
            let (status, reply) = self.json2(req, parsed);
            let lost = matches!(&self.fault, Fault::ReplyLost { model, method, count }
                if *count > 0 && status == 200
                    && target.0.as_deref() == Some(model.as_str())
                    && target.1.as_deref() == Some(method.as_str()));
            if lost {
                if let Fault::ReplyLost { count, .. } = &mut self.fault {
                    *count -= 1;
                }
                finish(self, "http:504".into());
                return (504, HTML, GATEWAY_TIMEOUT_HTML.into());
            }
            let outcome = match (status, &reply) {
                (200, _) => "ok".to_string(),
                (_, Ok(v)) => format!("error:{}", v["name"].as_str().unwrap_or("?")),
                (s, Err(_)) => format!("http:{s}"),
            };
            finish(self, outcome);
            return match reply {
                Ok(v) => (status, JSON, v.to_string()),
                Err(html) => (status, HTML, html),
            };
        }
        if path != "/jsonrpc" {
            return (404, HTML, werkzeug_page(404, "Not Found", NOT_FOUND_TEXT));
        }
        let mime = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && mime != "application/json-rpc" {
            finish(self, "http:400".into());
            let text =
                "Request inferred type is compatible with ['http'] but '/jsonrpc' is type='json'.";
            return (400, HTML, werkzeug_page(400, "Bad Request", text));
        }
        let Some(request) = parsed else {
            finish(self, "http:400".into());
            return (400, HTML, "Invalid JSON data".into());
        };
        let Some(request) = request.as_object() else {
            finish(self, "http:400".into());
            return (400, HTML, "Invalid JSON-RPC data".into());
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let result = self.rpc(request.get("params"));
        if let Fault::ReplyLost {
            model,
            method,
            count,
        } = &mut self.fault
        {
            if *count > 0
                && result.is_ok()
                && target.0.as_deref() == Some(model.as_str())
                && target.1.as_deref() == Some(method.as_str())
            {
                *count -= 1;
                finish(self, "http:504".into());
                return (504, HTML, GATEWAY_TIMEOUT_HTML.into());
            }
        }
        let (outcome, reply) = match result {
            Ok(Some(v)) => (
                "ok".to_string(),
                json!({"jsonrpc": "2.0", "id": id, "result": v}),
            ),
            Ok(None) => ("ok".to_string(), json!({"jsonrpc": "2.0", "id": id})),
            Err(e) => (
                format!("error:{}", e.name),
                json!({"jsonrpc": "2.0", "id": id, "error": {
                    // 0 from 18.1 on (PR #183902).
                    "code": if self.version >= 19 { 0 } else { 200 },
                    "message": "Odoo Server Error",
                    "data": {
                        "name": e.name,
                        "debug": e.traceback(),
                        "message": e.message,
                        "arguments": e.arguments,
                        "context": {},
                    },
                }}),
            ),
        };
        finish(self, outcome);
        (200, JSON, reply.to_string())
    }

    /// The `/jsonrpc` controller: `jsonrpc(service, method, args)`.
    pub(super) fn rpc(&mut self, params: Option<&Value>) -> Result<Option<Value>, OdooError> {
        let empty = Map::new();
        let params = match params {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "params must be an object, got {other}"
                )))
            }
        };
        let mut kw = params.clone();
        // Odoo's route wrapper drops parameters the endpoint does not take.
        kw.retain(|k, _| matches!(k.as_str(), "service" | "method" | "args"));
        let a = bind("jsonrpc", &["service", "method", "args"], 3, &[], &kw)?;
        let service = match &a[0] {
            Some(Value::String(s)) => s.clone(),
            other => {
                return Err(OdooError::key_error(
                    &other.as_ref().map(py_repr).unwrap_or_default(),
                ))
            }
        };
        let method = a[1]
            .as_ref()
            .and_then(Value::as_str)
            .ok_or_else(|| OdooError::type_error("method must be a string"))?;
        let args = match &a[2] {
            Some(Value::Array(v)) => v.clone(),
            _ => return Err(OdooError::type_error("args must be a list")),
        };
        self.dispatch(&service, method, &args)
    }
}

/// Best-effort description of a request for `calls()`, even a malformed one.
pub(super) fn describe(req: Option<&Value>) -> Call {
    let params = req.and_then(|r| r.get("params"));
    let s = |k: &str| {
        params
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (service, method) = (s("service"), s("method"));
    let arg = |i: usize| {
        params
            .and_then(|p| p.get("args"))
            .and_then(|a| a.get(i))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (model, model_method) = if service == "object" {
        (arg(3), arg(4))
    } else {
        (None, None)
    };
    let args = if service == "object" {
        params
            .and_then(|p| p.get("args"))
            .and_then(|a| a.get(5))
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Call {
        service,
        method,
        model,
        model_method,
        outcome: String::new(),
        args,
    }
}

pub(super) const HTML: &str = "text/html; charset=utf-8";
pub(super) const BUG_TEXT: &str =
    "The server encountered an internal error and was unable to complete your request.";
pub(super) const JSON: &str = "application/json; charset=utf-8";
pub(super) const NOT_FOUND_TEXT: &str =
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.";
pub(super) const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub(super) const GATEWAY_TIMEOUT_HTML: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n\
    <center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// werkzeug's HTTPException page, description escaped like markupsafe does.
pub(super) fn werkzeug_page(code: u16, name: &str, text: &str) -> String {
    let esc = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
        .replace('"', "&#34;");
    format!("<!doctype html>\n<html lang=en>\n<title>{code} {name}</title>\n<h1>{name}</h1>\n<p>{esc}</p>\n")
}
