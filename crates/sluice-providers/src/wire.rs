//! The wire formats: the operation a client asked for ([`Endpoint`]) and the format it speaks
//! there ([`Wire`]), and the format an upstream streams in ([`Source`]). Imports nothing.

/// The client-facing operation a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic Messages.
    Messages,
    /// OpenAI's Responses API.
    Responses,
    /// A prediction model's JSON endpoint (`/v1/predict/{name}`).
    Predict,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/messages" => Some(Endpoint::Messages),
            "/v1/responses" => Some(Endpoint::Responses),
            p if p.len() > "/v1/predict/".len() && p.starts_with("/v1/predict/") => Some(Endpoint::Predict),
            _ => None,
        }
    }
    /// The wire format the client speaks on this endpoint (its errors come back in it too).
    pub fn wire(self) -> Wire {
        match self {
            Endpoint::Messages => Wire::Anthropic,
            Endpoint::Responses => Wire::Responses,
            _ => Wire::OpenAi,
        }
    }
    /// The path below an OpenAI-compatible base URL.
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
            Endpoint::Responses => "/responses",
            Endpoint::Predict => "",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::Responses => "responses",
            Endpoint::Predict => "predict",
        }
    }
}

/// The wire format a client speaks (and gets its errors in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (and the other OpenAI endpoints).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI's Responses API.
    Responses,
}

/// The format of an upstream's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
}
