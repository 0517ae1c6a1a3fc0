//! What a signed-in console request carries (an extension put there by `session::require`).

use crate::auth::Principal;

/// The signed-in principal of a console request, and its session's CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub principal: Principal,
    pub csrf: String,
}
