//! What the insert triggers of conversation_messages learn once per statement and reuse for its
//! other rows: that the caller may write a conversation (under the caller's own RLS, for the
//! identity and role it acts as), and the conversation's lock and next seq. A multi-row INSERT
//! then asks each question once per conversation instead of once per row.
//!
//! One frame per INSERT statement that is running, innermost last: a statement-level BEFORE
//! trigger pushes it, the AFTER trigger pops it. A statement nested in another one (a function
//! called by the outer INSERT's SELECT, a trigger of the caller's own) has a frame of its own;
//! when it ends, the seqs it handed out carry over to the frames below, so that the outer
//! statement's next row does not reuse them. A frame belongs to the statement whose key (its
//! snapshot) it carries: a row whose statement has no frame on top is served without one. Frames
//! pushed in a subtransaction that rolls back are dropped with it, and all at the end of the
//! transaction.

use std::collections::{HashMap, HashSet};

/// A conversation's id (a uuid's bytes).
pub type ConversationId = [u8; 16];

/// Which statement a frame serves: its snapshot (address and command id), the same for every row
/// trigger of that statement and different for every other statement of the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementKey {
    pub snapshot: usize,
    pub command_id: u32,
}

/// Who asked whether it may write: the conversation, the caller's memory_ext identity and the
/// database role it acts as. A statement that changes its identity halfway (set_config in its
/// SELECT) asks again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccessKey {
    pub conversation: ConversationId,
    pub user: Option<[u8; 16]>,
    pub role: u32,
}

/// A conversation the caller may write, as the caller's check saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writable {
    pub encoding: String,
    pub owner: Option<[u8; 16]>,
    /// Its readers and editors, where the messages carry the authorization rule on the row (the
    /// distributed layout); None elsewhere.
    pub rule: Option<RuleLists>,
}

/// A conversation's accepted members, as the rule on its rows lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleLists {
    pub readers: Vec<[u8; 16]>,
    pub editors: Vec<[u8; 16]>,
}

/// A conversation this statement has locked: its encoding under the lock, whether it held no
/// message then, and the seq its next row takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    pub encoding: String,
    pub was_empty: bool,
    pub next_seq: i64,
}

/// What a statement's first row of a conversation added to the conversation's counters in the
/// UPDATE that locked it (one row, its tokens, its seq), and what that UPDATE returned for the
/// statement's end: the running total and the agent's threshold and auto-reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub rows: i64,
    pub tokens: i64,
    pub last_seq: i64,
    pub counted: Counted,
}

/// A conversation's counters after an update, with what decides its follow-up work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub total_tokens: i64,
    pub summarize_threshold: i64,
    pub auto_reply: bool,
}

impl Counted {
    /// Whether the statement's end must look further: a summary may be due, or a user's message
    /// asks an auto-reply agent for its answer.
    pub fn follow_up(&self, has_user: bool) -> bool {
        self.total_tokens > self.summarize_threshold || (self.auto_reply && has_user)
    }
}

/// What a statement inserted into one conversation, read from its transition table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Added {
    pub rows: i64,
    pub tokens: i64,
    pub max_seq: i64,
}

/// The change to a conversation's counters that the statement's end still owes: what it inserted
/// less what its first row's UPDATE already added. None when nothing is owed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owed {
    pub rows: i64,
    pub tokens: i64,
    /// The newest seq stored, when past what the counted row took.
    pub last_seq: Option<i64>,
    /// The seq the counted row took, when the statement stored no row of the conversation (ON
    /// CONFLICT DO NOTHING dropped it): given back unless another statement has passed it.
    pub unused_seq: Option<i64>,
}

pub fn owed(applied: Option<&Applied>, added: Option<&Added>) -> Option<Owed> {
    let none = Added::default();
    let stored = added.unwrap_or(&none);
    let (rows, tokens, seq) = applied.map_or((0, 0, 0), |a| (a.rows, a.tokens, a.last_seq));
    let last_seq = (stored.max_seq > seq).then_some(stored.max_seq);
    let unused_seq = applied.filter(|_| added.is_none()).map(|a| a.last_seq);
    (stored.rows != rows || stored.tokens != tokens || last_seq.is_some()).then_some(Owed {
        rows: stored.rows - rows,
        tokens: stored.tokens - tokens,
        last_seq,
        unused_seq,
    })
}

#[derive(Debug)]
pub struct Frame {
    pub statement: StatementKey,
    pub subtransaction: u32,
    pub writable: HashMap<AccessKey, Writable>,
    pub locked: HashMap<ConversationId, Locked>,
    /// The encoding the caller's trigger counted the conversation's latest row with.
    pub counted_with: HashMap<ConversationId, String>,
    /// The conversations whose counters this statement's first row already updated.
    pub applied: HashMap<ConversationId, Applied>,
    /// The conversations this statement has given rows to (kept when `locked` is forgotten).
    pub written: HashSet<ConversationId>,
    /// Whether a row may have left a conversation over its summarize threshold, or asked an
    /// auto-reply agent for an answer: then the statement's end looks further.
    pub follow_up: bool,
}

#[derive(Debug, Default)]
pub struct Frames {
    stack: Vec<Frame>,
}

impl Frames {
    pub fn push(&mut self, statement: StatementKey, subtransaction: u32) {
        self.stack.push(Frame {
            statement,
            subtransaction,
            writable: HashMap::new(),
            locked: HashMap::new(),
            counted_with: HashMap::new(),
            applied: HashMap::new(),
            written: HashSet::new(),
            follow_up: false,
        });
    }

    /// The frame of the statement that is running, if it has one.
    pub fn current(&mut self, statement: StatementKey) -> Option<&mut Frame> {
        self.stack.last_mut().filter(|f| f.statement == statement)
    }

    /// Ends the statement's frame (and any left above it by statements that never reached their
    /// AFTER trigger), carrying the seqs they handed out down to the frames below. A statement
    /// without a frame changes nothing.
    pub fn pop(&mut self, statement: StatementKey) {
        let Some(at) = self.stack.iter().rposition(|f| f.statement == statement) else {
            return;
        };
        for ended in self.stack.split_off(at) {
            for (conversation, locked) in ended.locked {
                for below in &mut self.stack {
                    if let Some(l) = below.locked.get_mut(&conversation) {
                        l.next_seq = l.next_seq.max(locked.next_seq);
                    }
                }
            }
        }
    }

    /// A subtransaction rolled back: the frames of statements that ran in it (or in one nested in
    /// it, whose ids are larger) go with their rows. The seqs the others know are forgotten too:
    /// a nested statement that ended inside the rolled-back part may have handed its seqs down,
    /// and its rows are gone (the conversations stay locked: the next row reads its seq again).
    pub fn abort_subtransaction(&mut self, subtransaction: u32) {
        self.stack.retain(|f| f.subtransaction < subtransaction);
        for frame in &mut self.stack {
            frame.locked.clear();
        }
    }

    /// Whether a running statement has written to the conversation: then its counters may not
    /// yet hold that statement's rows, and a new statement must read its next seq from the rows.
    pub fn knows(&self, conversation: &ConversationId) -> bool {
        self.stack.iter().any(|f| f.written.contains(conversation))
    }

    pub fn clear(&mut self) {
        self.stack.clear();
    }

    pub fn depth(&self) -> usize {
        self.stack.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> StatementKey {
        StatementKey { snapshot: 0x1000, command_id: n }
    }

    fn lock(frames: &mut Frames, statement: StatementKey, conv: u8, next_seq: i64) {
        let f = frames.current(statement).expect("frame");
        f.locked.insert([conv; 16], Locked { encoding: "cl100k_base".into(), was_empty: false, next_seq });
    }

    fn next(frames: &mut Frames, statement: StatementKey, conv: u8) -> Option<i64> {
        frames.current(statement).and_then(|f| f.locked.get(&[conv; 16]).map(|l| l.next_seq))
    }

    #[test]
    fn a_frame_serves_only_its_own_statement() {
        let mut frames = Frames::default();
        assert!(frames.current(key(1)).is_none());
        frames.push(key(1), 1);
        assert!(frames.current(key(1)).is_some());
        assert!(frames.current(key(2)).is_none(), "another statement's rows are served without a frame");
        frames.pop(key(1));
        assert_eq!(frames.depth(), 0);
    }

    #[test]
    fn a_nested_statement_hands_its_seqs_down() {
        let mut frames = Frames::default();
        frames.push(key(1), 1);
        lock(&mut frames, key(1), 7, 11);
        lock(&mut frames, key(1), 8, 3);
        frames.push(key(5), 1);
        assert!(frames.current(key(1)).is_none(), "only the innermost statement is served");
        lock(&mut frames, key(5), 7, 15);
        frames.pop(key(5));
        assert_eq!(next(&mut frames, key(1), 7), Some(15), "the outer statement continues after the nested rows");
        assert_eq!(next(&mut frames, key(1), 8), Some(3), "other conversations keep theirs");
        frames.pop(key(1));
        assert_eq!(frames.depth(), 0);
    }

    #[test]
    fn seqs_never_go_back() {
        let mut frames = Frames::default();
        frames.push(key(1), 1);
        lock(&mut frames, key(1), 7, 20);
        frames.push(key(3), 1);
        lock(&mut frames, key(3), 7, 12);
        frames.pop(key(3));
        assert_eq!(next(&mut frames, key(1), 7), Some(20));
    }

    #[test]
    fn popping_a_statement_ends_frames_left_above_it() {
        let mut frames = Frames::default();
        frames.push(key(1), 1);
        lock(&mut frames, key(1), 7, 5);
        frames.push(key(2), 1);
        frames.push(key(3), 1);
        lock(&mut frames, key(3), 7, 9);
        frames.pop(key(1));
        assert_eq!(frames.depth(), 0);
        frames.push(key(4), 1);
        frames.pop(key(9));
        assert_eq!(frames.depth(), 1, "an unknown statement pops nothing");
    }

    #[test]
    fn a_rolled_back_subtransaction_takes_its_frames_and_the_seqs_handed_down() {
        let mut frames = Frames::default();
        frames.push(key(1), 1);
        lock(&mut frames, key(1), 7, 5);
        // a statement nested in savepoint 3 ends, handing seq 40 down; then savepoint 3 rolls back
        frames.push(key(2), 3);
        lock(&mut frames, key(2), 7, 40);
        frames.pop(key(2));
        assert_eq!(next(&mut frames, key(1), 7), Some(40));
        frames.push(key(3), 4);
        frames.abort_subtransaction(3);
        assert_eq!(frames.depth(), 1, "the frame pushed inside the savepoint is gone");
        assert!(frames.current(key(1)).is_some(), "the outer statement keeps its frame");
        assert_eq!(next(&mut frames, key(1), 7), None, "and reads its next seq again");
        frames.clear();
        assert_eq!(frames.depth(), 0);
    }

    fn applied(rows: i64, tokens: i64, last_seq: i64) -> Applied {
        Applied {
            rows,
            tokens,
            last_seq,
            counted: Counted { total_tokens: 100, summarize_threshold: 1000, auto_reply: false },
        }
    }

    fn added(rows: i64, tokens: i64, max_seq: i64) -> Added {
        Added { rows, tokens, max_seq }
    }

    #[test]
    fn a_single_row_counted_with_its_lock_owes_nothing() {
        assert_eq!(owed(Some(&applied(1, 12, 7)), Some(&added(1, 12, 7))), None);
    }

    #[test]
    fn the_statements_other_rows_are_owed() {
        let owed = owed(Some(&applied(1, 12, 7)), Some(&added(3, 40, 9)));
        assert_eq!(owed, Some(Owed { rows: 2, tokens: 28, last_seq: Some(9), unused_seq: None }));
    }

    #[test]
    fn a_row_dropped_after_its_count_is_taken_back() {
        // ON CONFLICT DO NOTHING, or a later trigger returning NULL: its seq is given back
        assert_eq!(
            owed(Some(&applied(1, 12, 7)), None),
            Some(Owed { rows: -1, tokens: -12, last_seq: None, unused_seq: Some(7) })
        );
        // unless a later row of the statement took the next one
        assert_eq!(
            owed(Some(&applied(1, 12, 7)), Some(&added(1, 5, 8))),
            Some(Owed { rows: 0, tokens: -7, last_seq: Some(8), unused_seq: None })
        );
    }

    #[test]
    fn a_recount_under_the_lock_changes_the_tokens() {
        assert_eq!(
            owed(Some(&applied(1, 12, 1)), Some(&added(1, 15, 1))),
            Some(Owed { rows: 0, tokens: 3, last_seq: None, unused_seq: None })
        );
    }

    #[test]
    fn rows_without_a_counted_first_row_are_owed_whole() {
        assert_eq!(
            owed(None, Some(&added(2, 20, 5))),
            Some(Owed { rows: 2, tokens: 20, last_seq: Some(5), unused_seq: None })
        );
        assert_eq!(owed(None, None), None);
    }

    #[test]
    fn follow_up_when_over_the_threshold_or_asking_an_auto_reply_agent() {
        let mut c = Counted { total_tokens: 100, summarize_threshold: 1000, auto_reply: false };
        assert!(!c.follow_up(true));
        c.auto_reply = true;
        assert!(c.follow_up(true));
        assert!(!c.follow_up(false));
        c.total_tokens = 1001;
        assert!(c.follow_up(false));
    }

    #[test]
    fn a_conversation_is_known_while_a_statement_that_wrote_it_runs() {
        let mut frames = Frames::default();
        frames.push(key(1), 1);
        frames.current(key(1)).expect("frame").written.insert([3; 16]);
        frames.push(key(2), 2);
        assert!(frames.knows(&[3; 16]));
        assert!(!frames.knows(&[4; 16]));
        frames.abort_subtransaction(2);
        assert!(frames.knows(&[3; 16]), "forgetting the seqs does not forget the rows");
        frames.pop(key(1));
        assert!(!frames.knows(&[3; 16]));
    }
}
