//! Recall in the window: older messages of a conversation that are relevant to its newest user
//! message, brought back as one system message placed after the system prompt and the summary,
//! within a reserved share of the budget by exact count. Plain Rust over candidates the caller
//! ranked; pgvector ranks them in SQL.

use serde_json::Value;

use super::chat::{ChatMessage, Role};
use super::tokenizer::Encoding;
use super::window::Window;

pub const RECALL_HEADER: &str = "Relevant earlier messages of this conversation (recalled; seq in brackets):";

/// A message the window left out, ranked by the caller (best first).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub seq: i64,
    pub role: String,
    pub content: String,
}

/// What recall adds to a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalled {
    pub message: Value,
    pub tokens: i64,
    /// The recalled messages' seqs, oldest first.
    pub seqs: Vec<i64>,
}

fn render(kept: &[&Candidate]) -> ChatMessage {
    let mut text = String::from(RECALL_HEADER);
    for c in kept {
        text.push_str(&format!("\n[{} {}] {}", c.role, c.seq, c.content));
    }
    ChatMessage::new(Role::System, text)
}

/// The recall message of the best candidates that fit `budget` framed tokens together: each
/// candidate, best first, is kept when the message with it still fits (a long one is skipped, a
/// shorter one after it may fit); the kept ones are listed oldest first. None when none fits.
pub fn fit(candidates: &[Candidate], budget: i64, enc: Encoding, interrupt: &mut dyn FnMut()) -> Option<Recalled> {
    let mut kept: Vec<&Candidate> = Vec::new();
    let mut best: Option<(ChatMessage, i64)> = None;
    for c in candidates {
        let mut trial = kept.clone();
        trial.push(c);
        trial.sort_by_key(|c| c.seq);
        let message = render(&trial);
        let tokens = message.tokens(enc, interrupt);
        if tokens <= budget {
            kept = trial;
            best = Some((message, tokens));
        }
    }
    best.map(|(message, tokens)| Recalled {
        message: message.to_json(),
        tokens,
        seqs: kept.iter().map(|c| c.seq).collect(),
    })
}

/// The window with the recall message after its leading system messages (the system prompt and
/// the summary, when present), its tokens counted in.
pub fn place(window: &mut Window, recalled: &Recalled, leading_system: usize) {
    let at = leading_system.min(window.messages.len());
    window.messages.insert(at, recalled.message.clone());
    window.token_count += recalled.tokens;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(seq: i64, content: &str) -> Candidate {
        Candidate { seq, role: "user".into(), content: content.into() }
    }

    #[test]
    fn the_best_that_fit_are_kept_oldest_first_and_counted_exactly() {
        let enc = Encoding::resolve("cl100k_base").unwrap();
        let cands = [c(9, "my car broke down"), c(2, "word ".repeat(400).trim()), c(4, "the garage fixed it")];
        let r = fit(&cands, 60, enc, &mut || {}).expect("two short ones fit");
        assert_eq!(r.seqs, vec![4, 9]);
        let text = r.message["content"].as_str().unwrap();
        assert_eq!(text, format!("{RECALL_HEADER}\n[user 4] the garage fixed it\n[user 9] my car broke down"));
        assert_eq!(r.tokens, ChatMessage::new(Role::System, text).tokens(enc, &mut || {}));
        assert!(r.tokens <= 60);
    }

    #[test]
    fn nothing_fits_a_budget_below_one_message() {
        let enc = Encoding::resolve("cl100k_base").unwrap();
        assert_eq!(fit(&[c(1, "hello there")], 5, enc, &mut || {}), None);
        assert_eq!(fit(&[], 500, enc, &mut || {}), None);
    }
}
