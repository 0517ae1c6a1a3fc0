//! The edge: listeners, TLS, HTTP/1.1 and HTTP/2 (h2c and ALPN) on one port, the connection
//! limits (header read timeout, header count and size, concurrent streams, idle keep-alive), and
//! graceful drain. Connection settings are read from the snapshot current when a connection is
//! accepted, so a reload applies to new connections.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_config::TlsConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::Gateway;
use crate::body::ResponseBody;
use crate::spine;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the TLS acceptor (ALPN: h2, http/1.1).
pub fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: tls.cert_file.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: tls.cert_file.display().to_string(),
            reason: "no certificate found".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| TlsError::Key {
        path: tls.key_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Counts open connections so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicUsize,
    closed: Notify,
}

impl Connections {
    fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
    /// Waits until every connection has closed.
    pub async fn drained(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ConnectionGuard(Arc<Connections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Per-connection activity: requests in flight and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: AtomicU64,
}

impl Activity {
    fn enter(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }
    /// Resolves once the connection has had no request in flight for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let since = now_ms().saturating_sub(self.last.load(Ordering::Acquire));
            let idle_ms = idle.as_millis() as u64;
            if self.in_flight.load(Ordering::Acquire) == 0 && since >= idle_ms {
                return;
            }
            let wait = if since >= idle_ms { idle_ms } else { idle_ms - since };
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    }
}

struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.last.store(now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body, holding the connection's request-in-flight mark until it is done.
pub struct TrackedBody {
    inner: ResponseBody,
    _guard: RequestGuard,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves when the shutdown flag turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gw: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
    connections: Arc<Connections>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let guard = connections.enter();
                    let gw = gw.clone();
                    let shutdown = shutdown.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _guard = guard;
                        match tls {
                            None => connection(stream, gw, shutdown).await,
                            Some(acceptor) => {
                                let timeout = gw.snapshot().config.server.header_read_timeout;
                                if let Ok(Ok(s)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                    connection(s, gw, shutdown).await;
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
}

async fn connection<I>(io: I, gw: Arc<Gateway>, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = gw.snapshot().config.server.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes)
        .max_headers(server.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(server.h2_max_concurrent_streams)
        .max_header_list_size(server.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));

    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: AtomicU64::new(now_ms()),
    });
    let act = activity.clone();
    let svc = service_fn(move |req| {
        let gw = gw.clone();
        let guard = act.enter();
        async move {
            let resp = spine::handle(gw, req).await;
            Ok::<_, Infallible>(resp.map(|inner| TrackedBody { inner, _guard: guard }))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = stopped(&mut shutdown), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.idle(server.idle_timeout), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
