//! Recall in the window: facts about the user and older messages of a conversation that are
//! relevant to its newest user message, brought back as one system message placed after the
//! system prompt and the summary, within a reserved share of the budget by exact count. Plain Rust
//! over candidates the caller ranked; pgvector ranks them in SQL.

use serde_json::Value;

use super::chat::{ChatMessage, Role};
use super::tokenizer::Encoding;
use super::window::Window;

pub const RECALL_HEADER: &str = "Relevant earlier messages of this conversation (recalled; seq in brackets):";
pub const FACTS_HEADER: &str = "Facts about the user (remembered):";

/// A fact of the user's, ranked by the caller (best first).
#[derive(Debug, Clone)]
pub struct Fact {
    pub id: String,
    pub content: String,
}

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
    /// The recalled facts' ids, best first.
    pub facts: Vec<String>,
}

fn render(facts: &[&Fact], kept: &[&Candidate]) -> ChatMessage {
    let mut parts = Vec::new();
    if !facts.is_empty() {
        let mut text = String::from(FACTS_HEADER);
        for f in facts {
            text.push_str(&format!("\n- {}", f.content));
        }
        parts.push(text);
    }
    if !kept.is_empty() {
        let mut text = String::from(RECALL_HEADER);
        for c in kept {
            text.push_str(&format!("\n[{} {}] {}", c.role, c.seq, c.content));
        }
        parts.push(text);
    }
    ChatMessage::new(Role::System, parts.join("\n\n"))
}

/// The recall message of the best facts and candidates that fit `budget` framed tokens together:
/// the facts first, then the messages, each best first and kept when the message with it still
/// fits (a long one is skipped, a shorter one after it may fit); facts are listed best first,
/// messages oldest first. None when nothing fits.
pub fn fit(
    facts: &[Fact],
    candidates: &[Candidate],
    budget: i64,
    enc: Encoding,
    interrupt: &mut dyn FnMut(),
) -> Option<Recalled> {
    let (mut kept_facts, mut kept): (Vec<&Fact>, Vec<&Candidate>) = (Vec::new(), Vec::new());
    let mut best: Option<(ChatMessage, i64)> = None;
    for f in facts {
        let mut trial = kept_facts.clone();
        trial.push(f);
        let message = render(&trial, &kept);
        let tokens = message.tokens(enc, interrupt);
        if tokens <= budget {
            kept_facts = trial;
            best = Some((message, tokens));
        }
    }
    for c in candidates {
        let mut trial = kept.clone();
        trial.push(c);
        trial.sort_by_key(|c| c.seq);
        let message = render(&kept_facts, &trial);
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
        facts: kept_facts.iter().map(|f| f.id.clone()).collect(),
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
        let r = fit(&[], &cands, 60, enc, &mut || {}).expect("two short ones fit");
        assert_eq!(r.seqs, vec![4, 9]);
        let text = r.message["content"].as_str().unwrap();
        assert_eq!(text, format!("{RECALL_HEADER}\n[user 4] the garage fixed it\n[user 9] my car broke down"));
        assert_eq!(r.tokens, ChatMessage::new(Role::System, text).tokens(enc, &mut || {}));
        assert!(r.tokens <= 60);
    }

    #[test]
    fn nothing_fits_a_budget_below_one_message() {
        let enc = Encoding::resolve("cl100k_base").unwrap();
        assert_eq!(fit(&[], &[c(1, "hello there")], 5, enc, &mut || {}), None);
        assert_eq!(fit(&[], &[], 500, enc, &mut || {}), None);
    }

    #[test]
    fn facts_come_first_and_share_the_budget_with_messages() {
        let enc = Encoding::resolve("cl100k_base").unwrap();
        let facts = [
            Fact { id: "f1".into(), content: "The user is allergic to peanuts.".into() },
            Fact { id: "f2".into(), content: "word ".repeat(300).trim().into() },
        ];
        let r = fit(&facts, &[c(3, "my car broke down")], 60, enc, &mut || {}).expect("one fact and one message fit");
        assert_eq!(r.facts, vec!["f1".to_owned()]);
        assert_eq!(r.seqs, vec![3]);
        let text = r.message["content"].as_str().unwrap();
        assert_eq!(
            text,
            format!(
                "{FACTS_HEADER}\n- The user is allergic to peanuts.\n\n{RECALL_HEADER}\n[user 3] my car broke down"
            )
        );
        assert_eq!(r.tokens, ChatMessage::new(Role::System, text).tokens(enc, &mut || {}));
        let only = fit(&facts[..1], &[], 60, enc, &mut || {}).unwrap();
        assert_eq!(only.message["content"], format!("{FACTS_HEADER}\n- The user is allergic to peanuts."));
    }
}
