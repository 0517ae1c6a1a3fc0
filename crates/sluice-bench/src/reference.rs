//! The two reference processes of the proxy sections, run as `sluice bench-reference …`:
//!
//! - a **canned upstream** that answers every request with one fixed chat completion (usage
//!   included) after reading its body — an upstream that is not the bottleneck at 30 000 req/s on
//!   the client core, so the ceiling measures the proxy;
//! - a **bare proxy**: hyper's server and its pooled client, forwarding each request as it is and
//!   streaming the answer back — what a Rust proxy hop costs with no gateway work at all.
//!
//! Both run on a current-thread runtime (the bench pins them to one core) and listen on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Which reference to run.
#[derive(Debug, Clone)]
pub enum Reference {
    /// The canned upstream.
    Upstream,
    /// The bare proxy in front of `upstream` (`host:port`).
    Proxy { upstream: String },
}

/// The one answer the canned upstream gives: an OpenAI chat completion with usage.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1767225600,"model":"mock-gpt","choices":[{"index":0,"message":{"role":"assistant","content":"The sea is wide and calm tonight, full of quiet light."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":16,"total_tokens":40}}"#;

/// Runs `what` on `listen` until the process is stopped.
pub fn serve(what: Reference, listen: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        match what {
            Reference::Upstream => loop {
                let (sock, _) = listener.accept().await?;
                let _ = sock.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), service_fn(canned))
                        .await;
                });
            },
            Reference::Proxy { upstream } => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(1024)
                    .build(connector);
                let upstream: std::sync::Arc<str> = upstream.into();
                loop {
                    let (sock, _) = listener.accept().await?;
                    let _ = sock.set_nodelay(true);
                    let (client, upstream) = (client.clone(), upstream.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req| forward(client.clone(), upstream.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(sock), service)
                            .await;
                    });
                }
            }
        }
    })
}

async fn canned(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read what was sent, as a real upstream must, then answer.
    let _ = req.into_body().collect().await;
    let mut r = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(r)
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: std::sync::Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse() else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    parts.uri = uri;
    parts.headers.remove(header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *r.status_mut() = code;
    r
}
