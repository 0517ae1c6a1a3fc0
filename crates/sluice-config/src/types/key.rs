//! Virtual keys: who a key belongs to, what it may use, and its limits.

use chrono::{DateTime, Utc};

use super::limits::LimitSpec;
use super::route::Pattern;

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub id: String,
    /// SHA-256 of the full key.
    pub hash: [u8; 32],
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    /// Model aliases the key may use; `None` means all.
    pub models: Option<Vec<Pattern>>,
    /// Routes the key may use; `None` means all.
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own limits (its tier's are added at admission).
    pub limits: Vec<LimitSpec>,
    /// Limits for each end user: the one the request names when `trust_user`, else the key's
    /// own `user`. A client-supplied user never keys a limit unless the key is trusted.
    pub user_limits: Vec<LimitSpec>,
    pub trust_user: bool,
    /// The key may set its requests' queue priority (`x-sluice-priority`).
    pub priority_header: bool,
}
