//! The HTTP client every upstream call, health probe, capacity scrape and alert webhook uses.

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// One pool of connections (per connect timeout and HTTP/2 mode, kept in live state).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
