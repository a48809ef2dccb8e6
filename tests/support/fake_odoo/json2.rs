//! JSON-2 (Odoo 19): `POST /json/2/<model>/<method>` with a bearer key,
//! named arguments, bare results and errors as HTTP statuses (section 2).

use super::*;

/// Model methods (`@api.model`) that JSON-2 refuses ids for.
pub(super) const MODEL_METHODS: &[&str] = &[
    "search",
    "search_read",
    "search_count",
    "create",
    "load",
    "fields_get",
    "name_search",
];

impl State {
    /// `Json2Dispatcher` + `web_json_2_rpc` (section 2): the status and
    /// either a JSON body or an HTML page.
    pub(super) fn json2(
        &mut self,
        req: &HttpReq,
        parsed: Option<Value>,
    ) -> (u16, Result<Value, String>) {
        let werk = |code: u16, name: &str, message: &str| {
            (
                code,
                Ok(
                    json!({"name": format!("werkzeug.exceptions.{name}"), "message": message,
                          "arguments": [message, code], "context": {}, "debug": ""}),
                ),
            )
        };
        let parts: Vec<&str> = req.path.trim_start_matches("/json/2").split('/').collect();
        let (model, method) = match (req.method, parts.as_slice()) {
            ("POST", ["", m, f]) if !m.is_empty() && !f.is_empty() => (*m, *f),
            _ => {
                return werk(
                    404,
                    "NotFound",
                    "Did you mean POST /json/2/<model>/<method>?",
                )
            }
        };
        let key = req.authorization.and_then(|a| {
            let (scheme, key) = a.split_once(char::is_whitespace)?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
        match key {
            None => {
                return werk(
                    401,
                    "Unauthorized",
                    "User not authenticated, use an API Key with a Bearer Authorization header.",
                )
            }
            Some(k) if k != API_KEY || self.key_expired => {
                return werk(401, "Unauthorized", "Invalid apikey")
            }
            Some(_) => {}
        }
        if req.database.is_some_and(|d| d != DB) {
            return (404, Err(werkzeug_page(404, "Not Found", NOT_FOUND_TEXT)));
        }
        let mime = req
            .content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !req.body.is_empty() && mime != "application/json" {
            let text = "Request inferred type is compatible with ['http'] but '/json/2/<path:subpath>' is type='json2'.";
            return (415, Err(werkzeug_page(415, "Unsupported Media Type", text)));
        }
        let mut body = match (req.body.is_empty(), parsed) {
            (true, _) => Map::new(),
            (false, Some(Value::Object(m))) => m,
            (false, _) => {
                return werk(
                    400,
                    "BadRequest",
                    "could not parse the body as json: not an object",
                )
            }
        };
        if model_def(model).is_none() {
            return werk(
                404,
                "NotFound",
                &format!("the model '{model}' does not exist"),
            );
        }
        let ids = body.remove("ids").unwrap_or(json!([]));
        let has_ids = ids.as_array().is_some_and(|a| !a.is_empty());
        if MODEL_METHODS.contains(&method) && has_ids {
            return werk(
                422,
                "UnprocessableEntity",
                &format!("cannot call {model}.{method} with ids"),
            );
        }
        let args = if MODEL_METHODS.contains(&method) {
            vec![]
        } else {
            vec![ids]
        };
        match self.execute(&json!(model), &json!(method), &args, body) {
            Ok(v) => {
                let v = v.unwrap_or(Value::Null);
                // JSON-2 create always answers a list of ids.
                let v = if method == "create" && v.is_number() {
                    json!([v])
                } else {
                    v
                };
                (200, Ok(v))
            }
            Err(e) => {
                let status = match e.name {
                    "odoo.exceptions.UserError" | "odoo.exceptions.ValidationError" => 422,
                    "odoo.exceptions.AccessError" | "odoo.exceptions.AccessDenied" => 403,
                    "odoo.exceptions.MissingError" | "builtins.AttributeError" => 404,
                    "builtins.TypeError" => 422,
                    _ => 500,
                };
                let message = if e.name == "builtins.AttributeError" {
                    format!("The method '{model}.{method}' does not exist")
                } else {
                    e.message.clone()
                };
                (
                    status,
                    Ok(
                        json!({"name": e.name, "message": message, "arguments": e.arguments,
                                   "context": {}, "debug": e.traceback()}),
                    ),
                )
            }
        }
    }
}

/// A JSON-2 request for `calls()`: service "json2", the ids (if any) as the
/// first argument like JSON-RPC's record methods, then the named arguments.
pub(super) fn describe_json2(path: &str, body: Option<&Value>) -> Call {
    let mut parts = path.trim_start_matches("/json/2/").splitn(2, '/');
    let model = parts.next().map(str::to_string);
    let method = parts.next().map(str::to_string);
    let ids = body.and_then(|b| b.get("ids")).cloned();
    let named = body.cloned().unwrap_or(Value::Null);
    Call {
        service: "json2".into(),
        method: method.clone().unwrap_or_default(),
        model,
        model_method: method,
        outcome: String::new(),
        args: match ids {
            Some(ids) => json!([ids, named]),
            None => json!([named]),
        },
    }
}
