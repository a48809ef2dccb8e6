//! The local status listener: `GET /healthz`, `/metrics` (Prometheus text),
//! `/status` and `/queue` (JSON), and the dead letters (`GET /dlq`,
//! `GET /dlq/ID`, `POST /dlq/ID/replay`, `POST /dlq/replay[?sink=S]`,
//! `POST /dlq/ID/drop`) that `plantgate dlq` uses on a running gateway.
//! Bound to loopback unless configured otherwise; off loopback a bearer
//! token guards everything but `/healthz` (see [`access`]).

pub mod access;
mod health;
pub mod process;
pub mod sla;
mod telemetry;

pub use health::{Health, Verdict};

pub use telemetry::{
    Board, ModbusPlan, PlanBlock, PlanRead, PlanSplit, SinkStatus, SourceStatus, Telemetry,
};

use crate::admin;
use crate::model::Millis;
use crate::store::Store;
use crate::store::{Lane, StoreError};
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

/// The status page: self-contained (no external assets), it reads
/// `/status` every two seconds.
const PAGE: &str = include_str!("page.html");

/// What the status pages read.
pub struct StatusContext {
    pub gateway_id: String,
    /// SHA-256 of the running config, hex.
    pub config_hash: String,
    pub telemetry: Arc<Telemetry>,
    pub store: Arc<Store>,
    /// The sink whose queue the unlabelled queue metrics describe.
    pub primary_sink: String,
    pub health: Arc<Health>,
    pub access: access::Access,
    pub latency: Arc<crate::sinks::latency::DeliveryLatency>,
    pub sla: Arc<sla::SlaWatch>,
    pub process: Arc<process::ProcessMetrics>,
}

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<StatusContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Connections are joined before this returns: none outlives the stage
    // with its hold on the store (a reload reopens it).
    let mut connections = tokio::task::JoinSet::new();
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
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = shutdown.changed() => break,
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            match &ctx.access.tls {
                None => serve_connection(stream, ctx.clone(), shutdown).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => serve_connection(stream, ctx.clone(), shutdown).await,
                    Err(e) => tracing::debug!(error = %e, "status listener TLS handshake failed"),
                },
            }
        });
    }
    drop(ctx);
    // Requests in flight finish; idle keep-alive connections close now.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// How long requests in flight at shutdown may take to finish.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve_connection<I>(io: I, ctx: Arc<StatusContext>, mut shutdown: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(&req, &ctx).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "status connection ended");
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

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

fn store_error(e: &StoreError) -> Response<Full<Bytes>> {
    let status = match e {
        StoreError::NoDeadLetter(_) => StatusCode::NOT_FOUND,
        StoreError::UnknownSink(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_response(status, serde_json::json!({ "error": e.to_string() }))
}

fn query_sink<B>(req: &Request<B>) -> Option<String> {
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("sink=").map(str::to_string))
    })
}

async fn route<B>(req: &Request<B>, ctx: &StatusContext) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let store = &ctx.store;
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    // The page holds no data (it fetches /status with the token), and
    // `/healthz` is for supervisors that hold no token.
    let open = path == "/healthz" || path == "/";
    if !open && !ctx.access.admits(auth) {
        let mut resp = respond(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "this status listener needs `Authorization: Bearer <token>` (the token in [status] token_file)\n".into(),
        );
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    match (req.method(), parts.as_slice()) {
        (&Method::GET, [""]) => {
            respond(StatusCode::OK, "text/html; charset=utf-8", PAGE.to_string())
        }
        (&Method::GET, ["healthz"]) => {
            let verdict = ctx.health.check(tokio::time::Instant::now());
            match verdict.problems.first() {
                None => respond(StatusCode::OK, "text/plain", "ok\n".into()),
                // One line: the most pressing problem (local ones come first).
                Some(why) => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{why}\n"),
                ),
            }
        }
        (&Method::GET, ["metrics"]) => {
            store.refresh_age_metrics(Millis::now());
            ctx.process.refresh();
            respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ctx.telemetry.encode(),
            )
        }
        (&Method::GET, ["status"]) => json_response(StatusCode::OK, status_json(ctx)),
        (&Method::GET, ["queue"]) => json_response(
            StatusCode::OK,
            admin::stats_json(&store.stats(), Millis::now()),
        ),
        (&Method::GET, ["dlq"]) => match store.dead_letters(query_sink(req).as_deref()) {
            Ok(list) => json_response(
                StatusCode::OK,
                serde_json::Value::Array(list.iter().map(admin::dead_letter_json).collect()),
            ),
            Err(e) => store_error(&e),
        },
        (&Method::POST, ["dlq", "replay"]) => {
            match admin::replay_all(store, query_sink(req).as_deref()).await {
                Ok(ids) => json_response(StatusCode::OK, serde_json::json!({ "replayed": ids })),
                Err(e) => store_error(&e),
            }
        }
        (method, ["dlq", id, rest @ ..]) => {
            let Ok(id) = id.parse::<u64>() else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": format!("{id:?} is not a dead letter id") }),
                );
            };
            let result = match (method, rest) {
                (&Method::GET, []) => store
                    .dead_letter_get(id)
                    .map(|d| admin::dead_letter_json(&d)),
                (&Method::POST, ["replay"]) => store
                    .replay(id)
                    .await
                    .map(|_| serde_json::json!({ "replayed": [id] })),
                (&Method::POST, ["drop"]) => store
                    .drop_dead_letter(id)
                    .await
                    .map(|d| serde_json::json!({ "dropped": admin::dead_letter_json(&d) })),
                _ => {
                    return respond(
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        "not found: GET /dlq/ID, POST /dlq/ID/replay, POST /dlq/ID/drop\n".into(),
                    )
                }
            };
            match result {
                Ok(v) => json_response(StatusCode::OK, v),
                Err(e) => store_error(&e),
            }
        }
        (&Method::GET, _) => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /, /healthz, /metrics, /status, /queue or /dlq\n".into(),
        ),
        _ => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET, or POST on /dlq/…\n".into(),
        ),
    }
}

fn status_json(ctx: &StatusContext) -> serde_json::Value {
    let board = ctx.telemetry.snapshot();
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
            let mut entry = serde_json::json!({
                "bad_tags": bad_tags,
                "connected": s.connected,
                "samples": s.samples,
                "last_sample": s.last_sample.map(Millis::rfc3339),
                "last_error": s.last_error,
            });
            if let (Some(plan), Some(map)) = (&s.plan, entry.as_object_mut()) {
                map.insert("plan".into(), plan.to_json());
            }
            (name.clone(), entry)
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
                    "halted": s.halted,
                    "api": s.api,
                    "auth_failed": s.auth_failed,
                    "circuit_open": s.circuit_open,
                    "connected": s.connected,
                    "last_success": s.last_success.map(Millis::rfc3339),
                    "delivered": s.delivered,
                    "last_delivery": s.last_delivery.map(Millis::rfc3339),
                    "retrying": s.retrying,
                    "last_error": s.last_error,
                }),
            )
        })
        .collect();
    let stats = ctx.store.stats();
    let now = Millis::now();
    let ages = ctx.store.oldest_age(&ctx.primary_sink, now);
    let lanes: serde_json::Map<_, _> = Lane::ALL
        .iter()
        .map(|l| {
            (
                l.as_str().to_string(),
                serde_json::json!({
                    "oldest_undelivered_age_seconds": ages[l.index()].map_or(0.0, |d| d.as_secs_f64()),
                    "target_seconds": stats.targets[l.index()].as_secs_f64(),
                }),
            )
        })
        .collect();
    let latency: Vec<serde_json::Value> = ctx
        .latency
        .summary(now)
        .iter()
        .map(|l| {
            serde_json::json!({
                "sink": l.sink,
                "kind": l.kind,
                "delivered_last_hour": l.count,
                "p50_seconds": l.p50_seconds,
                "p99_seconds": l.p99_seconds,
            })
        })
        .collect();
    let breaches: Vec<serde_json::Value> = ctx
        .sla
        .breaches()
        .iter()
        .map(|b| serde_json::json!({ "sink": b.sink, "lane": b.lane.as_str(), "since": b.since.rfc3339() }))
        .collect();
    serde_json::json!({
        "gateway": ctx.gateway_id,
        "delivery_latency": latency,
        "lanes_past_target": breaches,
        "reload": board.reload.as_ref().map(|r| serde_json::json!({
            "at": r.at.rfc3339(),
            "applied": r.error.is_none(),
            "error": r.error,
        })),
        "version": env!("CARGO_PKG_VERSION"),
        "started": ctx.telemetry.started.rfc3339(),
        "uptime_seconds": now.saturating_sub(ctx.telemetry.started).max(0) as f64 / 1000.0,
        "config_hash": ctx.config_hash,
        "sources": sources,
        "sinks": sinks,
        "lanes": lanes,
        "queue": admin::stats_json(&stats, now),
    })
}
