//! The ledger of LLM calls whose usage rows were rolled back: a fixed-size list (it lives in
//! shared memory) that backends append to when a transaction that made a synchronous chat call
//! aborts, and that the background worker empties by writing each charge as a `memory.llm_calls`
//! row of its own. Until then the daily token limit counts the charges still listed.

/// One call's usage, as a plain `Copy` value (no heap: it lives in shared memory).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Charge {
    /// Assigned by the ledger: the order charges were added in.
    pub seq: u64,
    pub user: [u8; 16],
    pub conversation: [u8; 16],
    pub agent: Option<[u8; 16]>,
    model: [u8; 64],
    model_len: u8,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub total_tokens: Option<i32>,
    pub local_prompt_tokens: i32,
    pub latency_ms: f64,
    /// The call gave no usable answer (timed out, or answered something unusable).
    pub failed: bool,
    /// When the call was made, in whole minutes since the Unix epoch: a rolled-back turn counts
    /// one message against the per-minute limit of that minute.
    pub minute: i64,
}

impl Charge {
    pub const EMPTY: Charge = Charge {
        seq: 0,
        user: [0; 16],
        conversation: [0; 16],
        agent: None,
        model: [0; 64],
        model_len: 0,
        prompt_tokens: None,
        completion_tokens: None,
        total_tokens: None,
        local_prompt_tokens: 0,
        latency_ms: 0.0,
        failed: false,
        minute: 0,
    };

    /// A call about to be made, counted at its locally counted prompt until the provider reports.
    pub fn provisional(
        user: [u8; 16],
        conversation: [u8; 16],
        agent: Option<[u8; 16]>,
        model: &str,
        local_prompt_tokens: i32,
    ) -> Charge {
        Charge { user, conversation, agent, local_prompt_tokens, failed: true, ..Charge::EMPTY }.with_model(model)
    }

    /// The model's name, cut at 64 bytes (on a character boundary).
    pub fn with_model(mut self, model: &str) -> Charge {
        let mut end = model.len().min(self.model.len());
        while !model.is_char_boundary(end) {
            end -= 1;
        }
        self.model[..end].copy_from_slice(&model.as_bytes()[..end]);
        self.model_len = end as u8;
        self
    }

    pub fn model(&self) -> &str {
        std::str::from_utf8(&self.model[..self.model_len as usize]).unwrap_or("")
    }

    /// What the daily token limit counts for it: the provider's total, else the prompt as counted
    /// locally (the same rule as for the rows of `memory.llm_calls`).
    pub fn tokens(&self) -> i64 {
        i64::from(self.total_tokens.unwrap_or(self.local_prompt_tokens))
    }

    /// The input and output tokens it is billed for (what its cost is computed from): the
    /// provider's figures, else the prompt as counted locally and no output (the same rule as
    /// `memory._llm_call_price` applies to the rows of `memory.llm_calls`).
    pub fn billed_tokens(&self) -> (i64, i64) {
        (
            i64::from(self.prompt_tokens.unwrap_or(self.local_prompt_tokens)),
            i64::from(self.completion_tokens.unwrap_or(0)),
        )
    }
}

pub struct Ledger<const N: usize> {
    next_seq: u64,
    len: usize,
    /// Charges that found the ledger full (reported by the worker).
    dropped: u64,
    items: [Charge; N],
}

impl<const N: usize> Default for Ledger<N> {
    fn default() -> Self {
        Ledger { next_seq: 1, len: 0, dropped: 0, items: [Charge::EMPTY; N] }
    }
}

impl<const N: usize> Ledger<N> {
    /// Adds a charge; false (and counted as dropped) when the ledger is full.
    pub fn push(&mut self, mut charge: Charge) -> bool {
        if self.len == N {
            self.dropped += 1;
            return false;
        }
        charge.seq = self.next_seq;
        self.next_seq += 1;
        self.items[self.len] = charge;
        self.len += 1;
        true
    }

    pub fn pending(&self) -> &[Charge] {
        &self.items[..self.len]
    }

    /// Tokens of one user's charges still listed.
    pub fn pending_tokens(&self, user: &[u8; 16]) -> i64 {
        self.pending().iter().filter(|c| &c.user == user).map(Charge::tokens).sum()
    }

    /// One user's charges still listed.
    pub fn pending_of(&self, user: &[u8; 16]) -> Vec<Charge> {
        self.pending().iter().filter(|c| &c.user == user).copied().collect()
    }

    /// How many of one user's charges still listed were made in `minute` (see `Charge::minute`).
    pub fn pending_turns(&self, user: &[u8; 16], minute: i64) -> i32 {
        self.pending().iter().filter(|c| &c.user == user && c.minute == minute).count() as i32
    }

    /// Removes the charges up to `seq` (written by the worker), keeping the later ones in order.
    pub fn forget_through(&mut self, seq: u64) {
        let kept: Vec<Charge> = self.pending().iter().filter(|c| c.seq > seq).copied().collect();
        self.items[..kept.len()].copy_from_slice(&kept);
        self.len = kept.len();
    }

    /// How many charges were dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(user: u8, total: Option<i32>, local: i32) -> Charge {
        Charge { user: [user; 16], total_tokens: total, local_prompt_tokens: local, ..Charge::EMPTY }
    }

    #[test]
    fn counts_each_users_pending_tokens() {
        let mut l: Ledger<8> = Ledger::default();
        assert!(l.push(charge(1, Some(100), 90)));
        assert!(l.push(charge(1, None, 40)));
        assert!(l.push(charge(2, Some(7), 5)));
        assert_eq!(l.pending_tokens(&[1; 16]), 140);
        assert_eq!(l.pending_tokens(&[2; 16]), 7);
        assert_eq!(l.pending_tokens(&[3; 16]), 0);
    }

    #[test]
    fn lists_each_users_charges_with_the_tokens_they_are_billed_for() {
        let mut l: Ledger<8> = Ledger::default();
        let answered = Charge { prompt_tokens: Some(30), completion_tokens: Some(12), ..charge(1, Some(42), 25) };
        assert!(l.push(answered.with_model("gpt-4o")));
        assert!(l.push(charge(1, None, 40).with_model("llama")));
        assert!(l.push(charge(2, Some(7), 5)));
        let mine = l.pending_of(&[1; 16]);
        let billed: Vec<_> = mine.iter().map(|c| (c.model(), c.billed_tokens())).collect();
        // the provider's figures when it reported them, else the local prompt count and no output
        assert_eq!(billed, vec![("gpt-4o", (30, 12)), ("llama", (40, 0))]);
        assert!(l.pending_of(&[3; 16]).is_empty());
    }

    #[test]
    fn counts_each_users_pending_turns_per_minute() {
        let mut l: Ledger<8> = Ledger::default();
        for (user, minute) in [(1, 10), (1, 10), (1, 9), (2, 10)] {
            l.push(Charge { minute, ..charge(user, Some(1), 1) });
        }
        assert_eq!(l.pending_turns(&[1; 16], 10), 2);
        assert_eq!(l.pending_turns(&[1; 16], 9), 1);
        assert_eq!(l.pending_turns(&[2; 16], 10), 1);
        assert_eq!(l.pending_turns(&[3; 16], 10), 0);
    }

    #[test]
    fn forgets_what_was_written_and_keeps_what_came_later() {
        let mut l: Ledger<8> = Ledger::default();
        for u in 1..=4 {
            l.push(charge(u, Some(1), 1));
        }
        let written = l.pending()[1].seq;
        l.forget_through(written);
        assert_eq!(l.pending().iter().map(|c| c.user[0]).collect::<Vec<_>>(), vec![3, 4]);
        l.push(charge(5, Some(1), 1));
        assert_eq!(l.pending().iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    }

    #[test]
    fn a_full_ledger_counts_what_it_drops() {
        let mut l: Ledger<2> = Ledger::default();
        assert!(l.push(charge(1, Some(1), 1)) && l.push(charge(1, Some(1), 1)));
        assert!(!l.push(charge(1, Some(1), 1)));
        assert_eq!(l.take_dropped(), 1);
        assert_eq!(l.take_dropped(), 0);
    }

    #[test]
    fn model_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(40);
        let c = Charge::EMPTY.with_model(&long);
        assert_eq!(c.model(), "é".repeat(32));
        assert_eq!(Charge::EMPTY.with_model("gpt-4o").model(), "gpt-4o");
    }
}
