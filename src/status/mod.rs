//! The local status listener: `GET /healthz`, `/metrics` (Prometheus text)
//! and `/status` (JSON). Bound to loopback unless configured otherwise.

mod telemetry;

pub use telemetry::{Board, SinkStatus, SourceStatus, Telemetry};

use crate::model::{LatencyClass, Millis};
use crate::store::Store;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the status pages read.
pub struct StatusContext {
    pub gateway_id: String,
    pub telemetry: Arc<Telemetry>,
    pub store: Arc<Store>,
    /// The sink whose queue the unlabelled queue metrics describe.
    pub primary_sink: String,
}

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<StatusContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "status listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&req, &ctx)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "status connection ended");
            }
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn route<B>(req: &Request<B>, ctx: &StatusContext) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => {
            refresh_queue_gauges(ctx);
            respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ctx.telemetry.encode(),
            )
        }
        "/status" => respond(
            StatusCode::OK,
            "application/json",
            status_json(ctx).to_string(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /metrics or /status\n".into(),
        ),
    }
}

fn refresh_queue_gauges(ctx: &StatusContext) {
    let t = &ctx.telemetry;
    let sink = &ctx.primary_sink;
    t.queue_depth.set(ctx.store.depth(sink) as i64);
    t.aside.set(ctx.store.aside_count() as i64);
    let ages = ctx.store.oldest_age(sink, Millis::now());
    let mut oldest = 0.0f64;
    for class in LatencyClass::ALL {
        let age = ages.get(&class).copied().unwrap_or(0.0);
        oldest = oldest.max(age);
        t.lane_oldest_age
            .get_or_create(&vec![("class", class.as_str().to_string())])
            .set(age);
    }
    t.queue_oldest_age.set(oldest);
}

fn status_json(ctx: &StatusContext) -> serde_json::Value {
    let board = ctx.telemetry.snapshot();
    let sink = &ctx.primary_sink;
    let ages = ctx.store.oldest_age(sink, Millis::now());
    let sources: serde_json::Map<_, _> = board
        .sources
        .iter()
        .map(|(name, s)| {
            let bad_tags: serde_json::Map<_, _> = board
                .bad_tags
                .iter()
                .filter(|((src, _), _)| src == name)
                .map(|((_, tag), why)| (tag.clone(), serde_json::Value::from(why.as_str())))
                .collect();
            (
                name.clone(),
                serde_json::json!({
                    "bad_tags": bad_tags,
                    "connected": s.connected,
                    "samples": s.samples,
                    "last_sample": s.last_sample.map(Millis::rfc3339),
                    "last_error": s.last_error,
                }),
            )
        })
        .collect();
    let sinks: serde_json::Map<_, _> = board
        .sinks
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                serde_json::json!({
                    "queue_depth": ctx.store.depth(name),
                    "delivered": s.delivered,
                    "last_delivery": s.last_delivery.map(Millis::rfc3339),
                    "retrying": s.retrying,
                    "last_error": s.last_error,
                }),
            )
        })
        .collect();
    let lanes: serde_json::Map<_, _> = LatencyClass::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                serde_json::json!({ "oldest_undelivered_age_seconds": ages.get(c).copied().unwrap_or(0.0) }),
            )
        })
        .collect();
    serde_json::json!({
        "gateway": ctx.gateway_id,
        "version": env!("CARGO_PKG_VERSION"),
        "started": ctx.telemetry.started.rfc3339(),
        "sources": sources,
        "sinks": sinks,
        "lanes": lanes,
        "queue": {
            "depth": ctx.store.depth(sink),
            "aside": ctx.store.aside_count(),
        },
    })
}
