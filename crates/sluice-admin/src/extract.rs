//! The admin API's extractors: a query, a path and a body read as axum reads them, refused
//! with the admin error body (400 `invalid_query`, `invalid_path`, `invalid_body`; 413
//! `body_too_large`) instead of axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{bad_body, bad_path, bad_query};

/// A query string.
pub(crate) struct Q<T>(pub T);

/// Path parameters.
pub(crate) struct P<T>(pub T);

/// A whole body.
pub(crate) struct Body(pub Bytes);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Q<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Q(t)),
            Err(e) => Err(bad_query(&e)),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(P(t)),
            Err(e) => Err(bad_path(&e)),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) => Err(bad_body(&e)),
        }
    }
}
