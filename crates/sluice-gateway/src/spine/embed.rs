//! The semantic cache's way to an embedding deployment: the prompt sent as an embeddings
//! request to a model alias through the attempts loop (deployment choice, breakers, retries,
//! the deployment's own format and credentials), within the lookup's wait. The spine provides
//! it to the cache stage, which never imports the upstream layer.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::Deserialize;
use sluice_providers::{Endpoint, InboundRequest};

use crate::flow::{Decision, Upstream};
use crate::stages::cache::EmbedUpstream;
use crate::state::{RouteRuntime, Snapshot};
use crate::upstream::dispatch::{self, Attempting};

/// Embeddings for one request's semantic lookup, under its route's retry policy.
pub(super) struct Embedding<'a> {
    pub snap: &'a Snapshot,
    pub route: &'a RouteRuntime,
    pub how: Attempting<'a>,
}

impl EmbedUpstream for Embedding<'_> {
    fn embed<'a>(
        &'a self,
        model: usize,
        text: &'a str,
        deadline: Instant,
    ) -> Pin<Box<dyn Future<Output = Option<Vec<f32>>> + Send + 'a>> {
        Box::pin(async move {
            let alias = self.snap.models.get(model)?;
            let body = serde_json::to_vec(&serde_json::json!({"model": alias.name, "input": text})).ok()?;
            let inbound = InboundRequest::parse(Endpoint::Embeddings, body.into()).ok()?;
            let decision = Decision {
                route: self.route,
                model_index: model,
                model: alias,
            };
            let (answer, _) = dispatch::attempts(self.snap, &decision, &inbound, deadline, self.how).await;
            match answer {
                Ok(Upstream::Complete { status, body, .. }) if status.is_success() => first_vector(&body),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(alias = %alias.name, code = e.code, "semantic cache: the embedding deployment failed");
                    None
                }
            }
        })
    }
}

/// The first vector of an OpenAI-format embeddings answer (every adapter answers in it).
fn first_vector(body: &[u8]) -> Option<Vec<f32>> {
    #[derive(Deserialize)]
    struct Answer {
        data: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        embedding: Vec<f32>,
    }
    serde_json::from_slice::<Answer>(body)
        .ok()?
        .data
        .into_iter()
        .next()
        .map(|i| i.embedding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_vector_is_read_and_anything_else_is_none() {
        assert_eq!(
            first_vector(br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1]}]}"#),
            Some(vec![0.5, -1.0])
        );
        assert_eq!(first_vector(br#"{"data":[{"embedding":"AAAA"}]}"#), None);
        assert_eq!(first_vector(br#"{"data":[]}"#), None);
        assert_eq!(first_vector(b"nope"), None);
    }
}
