//! The injection screen's optional classifier: a linear head over a text's sentence embedding
//! (all-MiniLM-L6-v2, the semantic cache's model) giving the probability it is an injection.
//! Trained offline on the evaluation rows' train split with numpy
//! (`scripts/train-injection-head.sh`, through `sluice embed`, the gateway's own embedder) and
//! shipped in the binary as JSON (`heads/injection.json`).

use std::sync::LazyLock;

use serde::Deserialize;

/// A trained head.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    /// The embedding model it was trained on.
    pub model: String,
    pub dims: usize,
    /// The score at which it says "injection" (chosen on the train split).
    pub threshold: f32,
    pub bias: f32,
    pub weights: Vec<f32>,
}

static SHIPPED: LazyLock<Option<Head>> = LazyLock::new(|| {
    serde_json::from_str::<Head>(include_str!("../heads/injection.json"))
        .ok()
        .filter(|h| h.weights.len() == h.dims)
});

impl Head {
    /// The head shipped with this build.
    pub fn shipped() -> Option<&'static Head> {
        SHIPPED.as_ref()
    }

    /// The probability (0–1) that the text with this embedding is an injection; 0 for an
    /// embedding of another size (another model).
    pub fn score(&self, embedding: &[f32]) -> f32 {
        if embedding.len() != self.dims {
            return 0.0;
        }
        let z: f32 = self.weights.iter().zip(embedding).map(|(w, x)| w * x).sum::<f32>() + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_head_reads_and_scores() {
        let h = Head::shipped().expect("heads/injection.json parses");
        assert_eq!(h.dims, 384);
        assert!(h.threshold >= 0.5 && h.threshold < 1.0);
        let zero = vec![0.0; 384];
        let s = h.score(&zero);
        assert!((0.0..=1.0).contains(&s));
        assert_eq!(h.score(&[1.0, 2.0]), 0.0, "another model's embedding");
    }
}
