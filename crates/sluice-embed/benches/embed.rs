//! Embedding one 30-word prompt with all-MiniLM-L6-v2 on the CPU (the threads candle's matrix
//! products use: `RAYON_NUM_THREADS`, all cores by default; pin with `taskset` and set it to 1
//! for the one-core figure).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};

fn embed(c: &mut Criterion) {
    let model = sluice_embed::MiniLm::load(&sluice_embed::default_dir()).expect("scripts/fetch-models.sh first");
    let prompt = "I ordered a blender last week and it arrived with a cracked jar, so I would like a replacement rather than a refund; how do I arrange that quickly?";
    assert_eq!(prompt.split_whitespace().count(), 30);
    c.bench_function("embed_30_words", |b| b.iter(|| model.embed(&[prompt]).unwrap()));
}

criterion_group!(benches, embed);
criterion_main!(benches);
