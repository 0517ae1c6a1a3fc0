//! The edge: listeners, TLS, HTTP/1.1 and HTTP/2 (h2c and ALPN) on one port, the connection
//! limits (header read timeout, header count and size, concurrent streams, idle keep-alive), and
//! graceful drain. Connection settings are read from the snapshot current when a connection is
//! accepted, so a reload applies to new connections.

pub mod listen;
mod rewind;

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
use hyper_util::server::graceful::GracefulConnection;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_config::{ServerConfig, TlsConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::Gateway;
use crate::edge::rewind::{PREFIX_MAX, Rewind};
use crate::flow::ClientIp;
use crate::shutdown::stopped;
use crate::spine;
use crate::stream::body::ResponseBody;

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

/// Accepts connections until `shutdown` turns true, then takes what is already waiting in the
/// accept queue (a connection the kernel completed must not be reset) and closes the listener.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gw: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
    connections: Arc<Connections>,
) {
    let mut stop = shutdown.clone();
    let spawn = |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let guard = connections.enter();
        let gw = gw.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _guard = guard;
            accepted_connection(stream, tls, gw, shutdown).await;
        });
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn(stream),
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
    // With a successor on the port, nothing new arrives here; alone, the queue is bounded by
    // what arrives during this loop.
    for _ in 0..BACKLOG_DRAIN {
        match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
            Ok(Ok((stream, _))) => spawn(stream),
            _ => break,
        }
    }
}

/// Most connections taken from the accept queue after shutdown.
const BACKLOG_DRAIN: usize = 4096;

/// How long an HTTP/1.1 connection may sit idle once draining: a client that sends its next
/// request on it is answered (with `connection: close`); one that does not is closed after this.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The HTTP/2 client preface: a cleartext connection that starts with it speaks h2c.
const H2_PREFACE: &[u8; PREFIX_MAX] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Decides the protocol (ALPN under TLS, the preface in cleartext) and serves the connection
/// with that protocol's own state only — each branch is boxed, so an HTTP/1.1 connection does
/// not carry HTTP/2's state machine inline (this is what keeps memory per open stream small).
async fn accepted_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    gw: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) {
    let mut limits = ConnLimits::new(&gw.snapshot().config.server);
    limits.peer = stream.peer_addr().ok().map(|a| a.ip());
    match tls {
        None => match sniff(stream, limits.header_read_timeout).await {
            Some((true, stream)) => Box::pin(serve_h2(stream, gw, shutdown, limits)).await,
            Some((false, stream)) => Box::pin(serve_h1(stream, gw, shutdown, limits)).await,
            None => {}
        },
        // Boxed too: the handshake's state (a whole rustls connection) would otherwise make every
        // cleartext connection's task as large as a TLS one.
        Some(acceptor) => Box::pin(tls_connection(stream, acceptor, gw, shutdown, limits)).await,
    }
}

async fn tls_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    gw: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
    limits: ConnLimits,
) {
    let Ok(Ok(s)) = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await else {
        return;
    };
    if s.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(serve_h2(s, gw, shutdown, limits)).await
    } else {
        Box::pin(serve_h1(s, gw, shutdown, limits)).await
    }
}

/// The connection-level limits, copied out of the server config (a connection's task keeps
/// them for its whole life, so only what it needs).
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_headers: usize,
    max_header_bytes: usize,
    h2_max_concurrent_streams: u32,
    /// The client's address (geographic routing by network).
    peer: Option<std::net::IpAddr>,
}

impl ConnLimits {
    fn new(server: &ServerConfig) -> ConnLimits {
        ConnLimits {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_headers: server.max_headers,
            max_header_bytes: server.max_header_bytes,
            h2_max_concurrent_streams: server.h2_max_concurrent_streams,
            peer: None,
        }
    }
}

/// Reads the first bytes until they tell: `true` for the h2 preface, `false` as soon as they
/// differ from it; with the stream that serves them again. `None` if the client went away or
/// did not tell in time. Each read waits for the socket, so a client that stops halfway through
/// the preface costs nothing until the timeout (peeking would find the socket readable at once,
/// again and again).
async fn sniff<S: AsyncRead + Unpin>(mut stream: S, within: Duration) -> Option<(bool, Rewind<S>)> {
    let mut buf = [0u8; PREFIX_MAX];
    let mut n = 0;
    let tell = async {
        loop {
            let got = stream.read(&mut buf[n..]).await.ok()?;
            if got == 0 {
                return None;
            }
            n += got;
            if !H2_PREFACE.starts_with(&buf[..n]) {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
        }
    };
    let h2 = tokio::time::timeout(within, tell).await.ok()??;
    Some((h2, Rewind::new(buf, n, stream)))
}

/// The per-request service: spine, plus the connection's in-flight mark on the response body.
fn service(
    gw: Arc<Gateway>,
    activity: Arc<Activity>,
    peer: Option<std::net::IpAddr>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<TrackedBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<http::Response<TrackedBody>, Infallible>> + Send,
> + Clone {
    service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        if let Some(ip) = peer {
            req.extensions_mut().insert(ClientIp(ip));
        }
        let gw = gw.clone();
        let guard = activity.enter();
        let h1 = req.version() <= http::Version::HTTP_11;
        async move {
            // Boxed: hyper keeps one service-future slot per connection for the connection's whole
            // life; boxing keeps that slot pointer-sized and frees the request's state as soon as
            // the response headers are out (a held stream no longer pays for it).
            let drain = gw.clone();
            #[cfg(feature = "calibrate")]
            calibrate::spin();
            let mut resp = Box::pin(spine::handle(gw, req)).await;
            if h1 && drain.is_draining() {
                // The client learns with this answer to open its next connection elsewhere (the
                // successor on this port); hyper closes the connection once it is written.
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(resp.map(|inner| TrackedBody { inner, _guard: guard }))
        }
    })
}

/// A known amount of CPU per request, for calibrating the benchmarks (feature `calibrate`).
#[cfg(feature = "calibrate")]
mod calibrate {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    pub(super) fn spin() {
        static SPIN: OnceLock<Duration> = OnceLock::new();
        let spin = *SPIN.get_or_init(|| {
            let ns = std::env::var("SLUICE_CALIBRATE_SPIN_NS")
                .ok()
                .and_then(|v| v.parse().ok());
            Duration::from_nanos(ns.unwrap_or(0))
        });
        let start = Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
    }
}

fn new_activity() -> Arc<Activity> {
    Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: AtomicU64::new(now_ms()),
    })
}

async fn serve_h1<I>(io: I, gw: Arc<Gateway>, shutdown: watch::Receiver<bool>, server: ConnLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = new_activity();
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes)
        .max_headers(server.max_headers)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service(gw, activity.clone(), server.peer));
    drive(conn, &activity, shutdown, server.idle_timeout, false).await;
}

async fn serve_h2<I>(io: I, gw: Arc<Gateway>, shutdown: watch::Receiver<bool>, server: ConnLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = new_activity();
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(server.h2_max_concurrent_streams)
        .max_header_list_size(server.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .serve_connection(TokioIo::new(io), service(gw, activity.clone(), server.peer));
    drive(conn, &activity, shutdown, server.idle_timeout, true).await;
}

/// Runs a connection until it ends; closes it gracefully when idle, and on shutdown: HTTP/2
/// at once (GOAWAY: the client finishes its streams and opens new ones elsewhere); HTTP/1.1
/// once it has been idle for [`DRAIN_IDLE`] or with its next answer (`connection: close`),
/// because closing a keep-alive connection the client may be writing to loses that request.
async fn drive<C>(conn: C, activity: &Activity, mut shutdown: watch::Receiver<bool>, idle: Duration, h2: bool)
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    let mut closing = false;
    let mut idle = idle;
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = stopped(&mut shutdown), if !closing && !draining => {
                draining = true;
                if h2 {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    idle = idle.min(DRAIN_IDLE);
                }
            }
            _ = activity.idle(idle), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Sends `pieces` (a pause between them; the stream stays open when `hold`), sniffs the
    /// other end, and checks the verdict and that everything sent is read back through the
    /// rewind.
    async fn check(pieces: &[&[u8]], hold: bool, expected: Option<bool>) {
        let (mut client, server) = tokio::io::duplex(256);
        let sent: Vec<u8> = pieces.concat();
        let owned: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in owned {
                client.write_all(&p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if hold {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        let got = sniff(server, Duration::from_millis(200)).await;
        assert_eq!(got.as_ref().map(|g| g.0), expected, "{pieces:?}");
        if let Some((_, mut rewound)) = got {
            writer.await.unwrap();
            let mut back = Vec::new();
            rewound.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, sent, "read back whole");
        } else {
            writer.abort();
        }
    }

    // Paused time: the pauses between pieces and the sniff's 200 ms are the test's clock, not
    // the machine's, so a loaded machine cannot turn a slow sender into a timeout.
    #[tokio::test(start_paused = true)]
    async fn the_first_bytes_tell_h2c_from_http1_and_are_read_again() {
        let preface: &[u8] = H2_PREFACE;
        check(&[preface, b"\0\0\0\x04\0\0\0\0\0"], false, Some(true)).await;
        check(
            &[b"PRI * HTTP/2.0\r\n", b"\r\nSM", b"\r\n\r\n", b"frames"],
            false,
            Some(true),
        )
        .await;
        let bytewise: Vec<&[u8]> = preface.chunks(1).collect();
        check(&bytewise, false, Some(true)).await;
        check(&[b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"], false, Some(false)).await;
        check(&[b"P", b"OST / HTTP/1.1\r\n\r\n"], false, Some(false)).await;
        check(&[b"PRI * HTTP/1.1\r\n\r\n"], false, Some(false)).await;
        // Gone before telling, or silent halfway through the preface until the timeout.
        check(&[b""], false, None).await;
        check(&[b"PRI"], false, None).await;
        check(&[b"PRI * HTTP/2.0\r\n"], true, None).await;
    }
}
