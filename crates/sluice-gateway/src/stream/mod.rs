//! Streaming: the relay that carries an upstream's event stream to the client through the
//! route's response stages, the response body that owns the request's finish, and token
//! counting (off the async threads).

pub mod body;
pub mod relay;
pub mod tokens;
