//! The OpenAI-compatible `POST {base_url}/embeddings` request and answer: what the worker's embed
//! jobs send for a batch of messages, and what a semantic search sends for its query. Plain Rust.

use serde_json::{json, Value};

use super::llm::{Failure, LlmError};

/// Most characters of one text sent to the embedding model: about 2,000 tokens, within every
/// common model's input limit (OpenAI's 8,191, nomic's 8,192, bge's 512 tokens truncate on
/// their side). The start of a message is what a search for it most often matches.
pub const MAX_INPUT_CHARS: usize = 8000;

/// A text as it is sent: at most `MAX_INPUT_CHARS` characters.
pub fn input_of(text: &str) -> String {
    text.chars().take(MAX_INPUT_CHARS).collect()
}

/// The request body: `dimensions` only when it is set (> 0; not every model takes it).
pub fn request_body(model: &str, inputs: &[String], dimensions: i32) -> Value {
    let mut body = json!({"model": model, "input": inputs, "encoding_format": "float"});
    if dimensions > 0 {
        body["dimensions"] = json!(dimensions);
    }
    body
}

fn malformed(message: String) -> LlmError {
    LlmError::of(Failure::Malformed, message)
}

/// The vectors of an answer, in the order of the inputs (by each item's `index`): exactly
/// `expected` of them, all of one non-zero length, every number finite. Anything else is an
/// error, so that a batch is stored whole or not at all.
pub fn parse_embeddings(answer: &Value, expected: usize) -> Result<Vec<Vec<f32>>, LlmError> {
    let data =
        answer["data"].as_array().ok_or_else(|| malformed("the embeddings answer has no \"data\" array".into()))?;
    if data.len() != expected {
        return Err(malformed(format!("the embeddings answer has {} vectors for {expected} inputs", data.len())));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.iter().enumerate() {
        let index = match item.get("index") {
            None => position,
            Some(i) => {
                i.as_u64().and_then(|i| usize::try_from(i).ok()).filter(|i| *i < expected).ok_or_else(|| {
                    malformed(format!("an embedding's index is not one of the {expected} inputs: {i}"))
                })?
            }
        };
        let numbers = item["embedding"]
            .as_array()
            .ok_or_else(|| malformed(format!("embedding {index} is not an array of numbers")))?;
        let vector: Vec<f32> = numbers
            .iter()
            .map(|n| n.as_f64().map(|f| f as f32).filter(|f| f.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed(format!("embedding {index} holds something other than finite numbers")))?;
        if slots[index].replace(vector).is_some() {
            return Err(malformed(format!("the embeddings answer has index {index} twice")));
        }
    }
    let vectors: Vec<Vec<f32>> = slots.into_iter().map(|v| v.unwrap_or_default()).collect();
    let dims = vectors.first().map_or(0, Vec::len);
    if dims == 0 || vectors.iter().any(|v| v.len() != dims) {
        return Err(malformed("the embeddings answer's vectors are empty or of different lengths".into()));
    }
    Ok(vectors)
}

/// pgvector's text form of a vector: `[x,y,…]` (Rust prints the shortest form that reads back
/// as the same f32).
pub fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_dimensions_only_when_set() {
        let inputs = vec!["a".to_owned(), "b".to_owned()];
        let body = request_body("m", &inputs, 0);
        assert_eq!(body, json!({"model": "m", "input": ["a", "b"], "encoding_format": "float"}));
        assert_eq!(request_body("m", &inputs, 256)["dimensions"], json!(256));
    }

    #[test]
    fn inputs_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_INPUT_CHARS + 5);
        assert_eq!(input_of(&long).chars().count(), MAX_INPUT_CHARS);
        assert_eq!(input_of("short"), "short");
    }

    #[test]
    fn vectors_come_back_in_input_order() {
        let answer = json!({"data": [
            {"index": 1, "embedding": [0.5, -1.0]},
            {"index": 0, "embedding": [1.0, 0.25]}
        ]});
        assert_eq!(parse_embeddings(&answer, 2).unwrap(), vec![vec![1.0, 0.25], vec![0.5, -1.0]]);
    }

    #[test]
    fn a_partial_or_inconsistent_answer_is_refused_whole() {
        let bad = [
            json!({}),
            json!({"data": [{"index": 0, "embedding": [1.0]}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [2.0]}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [2.0, 3.0]}]}),
            json!({"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": []}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": ["x"]}]}),
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1e300]}]}),
        ];
        for answer in bad {
            let e = parse_embeddings(&answer, 2).expect_err(&answer.to_string());
            assert_eq!(e.failure, Failure::Malformed, "{answer}");
        }
    }

    #[test]
    fn literals_read_back_as_the_same_numbers() {
        let v = [0.1f32, -2.5, 1e-7, 3.0];
        let s = vector_literal(&v);
        assert_eq!(s, "[0.1,-2.5,0.0000001,3]");
        let back: Vec<f32> = s.trim_matches(['[', ']']).split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(back, v);
    }
}
