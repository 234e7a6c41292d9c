//! Raw tokenizer speed without PostgreSQL: `cargo run --release --example count_bench -- FILE`
//! prints MB/s of exact counting for cl100k_base and o200k_base over the records of the file (separated by U+001E).
use std::time::Instant;

use memory_ext::core::tokenizer::Encoding;

fn main() {
    let path = std::env::args().nth(1).expect("usage: count_bench FILE");
    let text = std::fs::read_to_string(&path).expect("readable UTF-8 file");
    let lines: Vec<&str> = text.split('\u{1e}').collect();
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        enc.preload();
        let mut best = f64::MAX;
        let mut tokens = 0;
        for _ in 0..3 {
            let t = Instant::now();
            tokens = lines.iter().map(|l| enc.count(l)).sum::<usize>();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{} {} {:.1}", enc.name(), tokens, text.len() as f64 / best / 1e6);
    }
}
