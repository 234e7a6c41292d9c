//! Raw tokenizer speed without PostgreSQL: `cargo run --release --example count_bench -- FILE`
//! prints, per encoding, the tokens and MB/s of exact counting over the records of the file
//! (separated by U+001E): memory_ext's tokenizer (bpe-openai), then tiktoken-rs for comparison.
use std::time::Instant;

use memory_ext::core::tokenizer::Encoding;

fn best_of_3(f: &mut dyn FnMut() -> usize) -> (usize, f64) {
    let mut best = f64::MAX;
    let mut tokens = 0;
    for _ in 0..3 {
        let t = Instant::now();
        tokens = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (tokens, best)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: count_bench FILE");
    let text = std::fs::read_to_string(&path).expect("readable UTF-8 file");
    let records: Vec<&str> = text.split('\u{1e}').collect();
    let mb = text.len() as f64 / 1e6;
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        enc.preload();
        let (tokens, secs) = best_of_3(&mut || records.iter().map(|r| enc.count(r)).sum());
        println!("{} {} {:.1}", enc.name(), tokens, mb / secs);
        let other = match enc {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base().unwrap(),
            _ => tiktoken_rs::o200k_base().unwrap(),
        };
        let (tokens, secs) = best_of_3(&mut || records.iter().map(|r| other.encode_ordinary(r).len()).sum());
        println!("tiktoken-rs:{} {} {:.1}", enc.name(), tokens, mb / secs);
    }
}
