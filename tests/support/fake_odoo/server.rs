//! HTTP server: hyper http1 with keep-alive; stop() drops the listener and every
//! connection so clients see resets and then "connection refused".

use super::*;

pub(super) const MAX_BODY: usize = 64 << 20;

pub(super) struct Running {
    pub(super) shutdown: oneshot::Sender<()>,
    pub(super) task: JoinHandle<()>,
}

/// Handle on a running fake; clones share the same server and data. Dropping
/// the last clone stops the server.
#[derive(Clone)]
pub struct FakeOdoo {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) port: u16,
    pub(super) server: Arc<tokio::sync::Mutex<Option<Running>>>,
    /// HTTPS when set (kept for resume()).
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
}

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn listen_on(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?; // rebinding after stop() must not wait for TIME_WAIT
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

pub(super) fn serve(
    state: Arc<Mutex<State>>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Running {
    let (shutdown, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        let tls = tls.clone();
                        conns.spawn(async move {
                            match tls {
                                // A refused handshake just ends the connection.
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        serve_connection(state, stream).await;
                                    }
                                }
                                None => serve_connection(state, stream).await,
                            }
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        conns.shutdown().await;
    });
    Running { shutdown, task }
}

async fn serve_connection<IO>(state: Arc<Mutex<State>>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(state, req).await) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn respond(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE.as_str());
    let authorization = header("authorization");
    let database = header("x-odoo-database");
    let (status, ctype, body) = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Err(_) => (
            413,
            HTML,
            werkzeug_page(
                413,
                "Request Entity Too Large",
                "The data value transmitted exceeds the capacity limit.",
            ),
        ),
        Ok(body) => {
            let body = body.to_bytes();
            // Never take the test down: a bug in here becomes a 500, as in Odoo.
            let handled = catch_unwind(AssertUnwindSafe(|| {
                lock(&state).handle_http(&HttpReq {
                    method: &method,
                    path: &path,
                    content_type: content_type.as_deref(),
                    authorization: authorization.as_deref(),
                    database: database.as_deref(),
                    body: &body,
                })
            }));
            handled.unwrap_or_else(|_| {
                (
                    500,
                    HTML,
                    werkzeug_page(500, "Internal Server Error", BUG_TEXT),
                )
            })
        }
    };
    let (retry_after, slow) = {
        let mut st = lock(&state);
        let slow = match st.fault {
            Fault::Slow { delay } => Some(delay),
            _ => None,
        };
        (st.retry_after.take(), slow)
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}
