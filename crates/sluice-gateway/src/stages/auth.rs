//! Authentication, the first stage of every API request: who is calling, from the key table
//! served with the config.

use std::sync::Arc;

use chrono::Utc;
use http::HeaderMap;

use crate::error::GatewayError;
use crate::keys::{Caller, KeyTable};

/// The caller the request's key (or bearer token) names, or why it is refused.
pub fn authenticate(keys: &KeyTable, headers: &HeaderMap) -> Result<Arc<Caller>, GatewayError> {
    keys.authenticate(headers, Utc::now())
}
