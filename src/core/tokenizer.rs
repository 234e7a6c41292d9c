//! Exact token counting: the tiktoken encodings (via bpe-openai, bit-exact with tiktoken and
//! linear on text tiktoken's regex cannot split), model-name resolution, and the chars/4 heuristic.

use bpe_openai::Tokenizer;

use super::error::{MemError, Result};

/// How many pre-tokenized pieces are processed between two interrupt checks.
const PIECES_PER_INTERRUPT_CHECK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Cl100kBase,
    O200kBase,
    /// The original guide's heuristic: ceil(characters / 4). Not a real tokenizer.
    Chars4,
}

pub const ACCEPTED_NAMES: &str = "cl100k_base, o200k_base, chars4, or a model name \
(gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4-mini, gpt-4, gpt-4-turbo, gpt-3.5-turbo, \
text-embedding-3-small/large, text-embedding-ada-002, llama-3*)";

impl Encoding {
    /// Resolves an encoding or model name the way tiktoken's `encoding_for_model` does.
    pub fn resolve(name: &str) -> Result<Encoding> {
        let n = name.trim().to_ascii_lowercase();
        let enc = match n.as_str() {
            "cl100k_base" => Some(Encoding::Cl100kBase),
            "o200k_base" => Some(Encoding::O200kBase),
            "chars4" => Some(Encoding::Chars4),
            _ => model_encoding(&n),
        };
        enc.ok_or_else(|| {
            MemError::invalid(format!("unknown encoding \"{}\"; accepted: {ACCEPTED_NAMES}", super::error::clip(name)))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
            Encoding::Chars4 => "chars4",
        }
    }

    fn tokenizer(self) -> Option<&'static Tokenizer> {
        match self {
            Encoding::Cl100kBase => Some(bpe_openai::cl100k_base()),
            Encoding::O200kBase => Some(bpe_openai::o200k_base()),
            Encoding::Chars4 => None,
        }
    }

    /// Builds the tokenizer tables now rather than on first use (called from `_PG_init` when
    /// preloaded, so forked backends share them copy-on-write).
    pub fn preload(self) {
        if let Some(t) = self.tokenizer() {
            t.count("warm up");
        }
    }

    /// Counts the tokens of `text` as ordinary text (special-token strings count as text).
    /// `interrupt` is called every few thousand pieces so a long count can be cancelled.
    pub fn count_with(self, text: &str, interrupt: &mut dyn FnMut()) -> usize {
        let Some(tok) = self.tokenizer() else {
            return text.chars().count().div_ceil(4);
        };
        let mut total = 0;
        for (i, piece) in tok.split(text).enumerate() {
            if i % PIECES_PER_INTERRUPT_CHECK == PIECES_PER_INTERRUPT_CHECK - 1 {
                interrupt();
            }
            total += tok.bpe.count(piece.as_bytes());
        }
        total
    }

    pub fn count(self, text: &str) -> usize {
        self.count_with(text, &mut || {})
    }

    pub fn encode_with(self, text: &str, interrupt: &mut dyn FnMut()) -> Result<Vec<u32>> {
        let tok = self.real_tokenizer("tokenize")?;
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        for (i, piece) in tok.split(text).enumerate() {
            if i % PIECES_PER_INTERRUPT_CHECK == PIECES_PER_INTERRUPT_CHECK - 1 {
                interrupt();
            }
            out.extend(tok.bpe.encode_via_backtracking(piece.as_bytes()));
        }
        Ok(out)
    }

    pub fn decode(self, tokens: &[i64]) -> Result<String> {
        let tok = self.real_tokenizer("detokenize")?;
        let vocab = tok.bpe.num_tokens();
        let mut ids = Vec::with_capacity(tokens.len());
        for &t in tokens {
            if t < 0 || t as usize >= vocab {
                return Err(MemError::invalid(format!(
                    "token id {t} is outside the {} vocabulary (0..{})",
                    self.name(),
                    vocab - 1
                )));
            }
            ids.push(t as u32);
        }
        String::from_utf8(tok.bpe.decode_tokens(&ids)).map_err(|_| {
            MemError::invalid(
                "these tokens do not decode to valid UTF-8 (a character is split across the ends of the array)",
            )
        })
    }

    fn real_tokenizer(self, what: &str) -> Result<&'static Tokenizer> {
        self.tokenizer().ok_or_else(|| {
            MemError::invalid(format!("{what} needs a real tokenizer: chars4 is an estimate and has no token ids"))
        })
    }
}

/// tiktoken's MODEL_TO_ENCODING / MODEL_PREFIX_TO_ENCODING for the chat and embedding models
/// that use cl100k_base or o200k_base, plus Llama-3 as a documented cl100k approximation.
fn model_encoding(n: &str) -> Option<Encoding> {
    use Encoding::*;
    const EXACT: &[(&str, Encoding)] = &[
        ("gpt-4", Cl100kBase),
        ("gpt-3.5-turbo", Cl100kBase),
        ("gpt-3.5", Cl100kBase),
        ("gpt-35-turbo", Cl100kBase),
        ("text-embedding-ada-002", Cl100kBase),
        ("text-embedding-3-small", Cl100kBase),
        ("text-embedding-3-large", Cl100kBase),
        ("gpt-4o", O200kBase),
        ("gpt-4.1", O200kBase),
        ("gpt-4.5", O200kBase),
        ("gpt-5", O200kBase),
        ("o1", O200kBase),
        ("o3", O200kBase),
        ("o4-mini", O200kBase),
        ("chatgpt-4o-latest", O200kBase),
    ];
    // Longest prefixes first so "gpt-4o-…" is not taken for "gpt-4-…".
    const PREFIXES: &[(&str, Encoding)] = &[
        ("chatgpt-4o-", O200kBase),
        ("gpt-4o-", O200kBase),
        ("gpt-4.1-", O200kBase),
        ("gpt-4.5-", O200kBase),
        ("gpt-5-", O200kBase),
        ("gpt-oss-", O200kBase),
        ("o1-", O200kBase),
        ("o3-", O200kBase),
        ("o4-mini-", O200kBase),
        ("ft:gpt-4o", O200kBase),
        ("gpt-4-", Cl100kBase),
        ("gpt-3.5-turbo-", Cl100kBase),
        ("gpt-35-turbo-", Cl100kBase),
        ("ft:gpt-4", Cl100kBase),
        ("ft:gpt-3.5-turbo", Cl100kBase),
        // Llama 3 uses a 128k tiktoken-style vocabulary not shipped here; cl100k_base is the
        // documented approximation.
        ("llama-3", Cl100kBase),
        ("llama3", Cl100kBase),
        ("meta-llama/llama-3", Cl100kBase),
        ("meta-llama/meta-llama-3", Cl100kBase),
    ];
    EXACT.iter().find(|(m, _)| *m == n).or_else(|| PREFIXES.iter().find(|(p, _)| n.starts_with(p))).map(|(_, e)| *e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_models() {
        assert_eq!(Encoding::resolve("cl100k_base").unwrap(), Encoding::Cl100kBase);
        assert_eq!(Encoding::resolve(" O200K_BASE ").unwrap(), Encoding::O200kBase);
        assert_eq!(Encoding::resolve("gpt-4o").unwrap(), Encoding::O200kBase);
        assert_eq!(Encoding::resolve("gpt-4o-mini-2024-07-18").unwrap(), Encoding::O200kBase);
        assert_eq!(Encoding::resolve("gpt-4-0613").unwrap(), Encoding::Cl100kBase);
        assert_eq!(Encoding::resolve("gpt-4.1").unwrap(), Encoding::O200kBase);
        assert_eq!(Encoding::resolve("gpt-3.5-turbo").unwrap(), Encoding::Cl100kBase);
        assert_eq!(Encoding::resolve("llama-3.3-70b-versatile").unwrap(), Encoding::Cl100kBase);
        assert_eq!(Encoding::resolve("chars4").unwrap(), Encoding::Chars4);
        let err = Encoding::resolve("p50k_base").unwrap_err();
        assert!(err.message.contains("unknown encoding \"p50k_base\""), "{}", err.message);
        assert!(err.message.contains("o200k_base"));
    }

    #[test]
    fn chars4_is_ceil_of_characters() {
        assert_eq!(Encoding::Chars4.count(""), 0);
        assert_eq!(Encoding::Chars4.count("abc"), 1);
        assert_eq!(Encoding::Chars4.count("abcd"), 1);
        assert_eq!(Encoding::Chars4.count("abcde"), 2);
        // characters, not bytes
        assert_eq!(Encoding::Chars4.count("ééééé"), 2);
    }

    #[test]
    fn known_counts() {
        // Values from the OpenAI cookbook / tiktoken README.
        assert_eq!(
            Encoding::Cl100kBase.encode_with("tiktoken is great!", &mut || {}).unwrap(),
            vec![83, 1609, 5963, 374, 2294, 0]
        );
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count(""), 0);
    }

    #[test]
    fn round_trip_and_bad_ids() {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let text = "Grüße, 世界! 🎉 <|endoftext|>\n\tfn main() {}";
            let ids: Vec<i64> = enc.encode_with(text, &mut || {}).unwrap().into_iter().map(i64::from).collect();
            assert_eq!(ids.len(), enc.count(text));
            assert_eq!(enc.decode(&ids).unwrap(), text);
            assert!(enc.decode(&[-1]).is_err());
            assert!(enc.decode(&[10_000_000]).is_err());
        }
        assert!(Encoding::Chars4.encode_with("x", &mut || {}).is_err());
    }

    #[test]
    fn interrupt_is_called_on_long_text() {
        let text = "word ".repeat(100_000);
        let mut calls = 0;
        Encoding::Cl100kBase.count_with(&text, &mut || calls += 1);
        assert!(calls >= 10, "interrupt called {calls} times");
    }

    /// Bit-exact with Python tiktoken: tests/golden/tokens.json is written by
    /// tests/golden/regenerate.py from tiktoken itself.
    #[test]
    fn golden() {
        let golden: serde_json::Value = serde_json::from_str(include_str!("../../tests/golden/tokens.json")).unwrap();
        let cases = golden["cases"].as_array().unwrap();
        assert!(cases.len() >= 70);
        for case in cases {
            let enc = Encoding::resolve(case["encoding"].as_str().unwrap()).unwrap();
            let text = case["text"].as_str().unwrap();
            let count = case["count"].as_u64().unwrap() as usize;
            assert_eq!(enc.count(text), count, "{:?} case {}", enc, case["case"]);
            if let Some(ids) = case.get("ids") {
                let ids: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                assert_eq!(enc.encode_with(text, &mut || {}).unwrap(), ids, "{:?} case {}", enc, case["case"]);
            }
        }
    }

    /// Agrees with tiktoken-rs (another port of tiktoken) on pseudo-random mixed text.
    #[test]
    fn agrees_with_tiktoken_rs() {
        let pieces = [
            "the",
            " The",
            "  ",
            "\n",
            "\t",
            "don't",
            "123",
            "4567",
            "é",
            "日本",
            "😀",
            "{\"a\":",
            "]",
            "<|endoftext|>",
            "fn",
            "(",
            ")",
            ".",
            "?!",
            " \n ",
            "HTTPServer",
            "x_y",
            "ő",
            "\r\n",
            "   a",
        ];
        let cl = tiktoken_rs::cl100k_base().unwrap();
        let o2 = tiktoken_rs::o200k_base().unwrap();
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let ours = Encoding::Cl100kBase.encode_with(&text, &mut || {}).unwrap();
            assert_eq!(ours, cl.encode_ordinary(&text), "cl100k {text:?}");
            let ours = Encoding::O200kBase.encode_with(&text, &mut || {}).unwrap();
            assert_eq!(ours, o2.encode_ordinary(&text), "o200k {text:?}");
        }
    }
}
