//! Streaming: the relay that carries an upstream's event stream to the client through the
//! route's response stages, the response body that owns the request's finish, a streaming
//! follower's body (another request's answer as it arrives), and token counting (off the
//! async threads).

pub mod body;
pub mod live;
pub mod relay;
pub mod tokens;
