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

use std::collections::HashMap;

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
}

/// A conversation this statement has locked: its encoding under the lock, whether it held no
/// message then, and the seq its next row takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    pub encoding: String,
    pub was_empty: bool,
    pub next_seq: i64,
}

#[derive(Debug)]
pub struct Frame {
    pub statement: StatementKey,
    pub subtransaction: u32,
    pub writable: HashMap<AccessKey, Writable>,
    pub locked: HashMap<ConversationId, Locked>,
    /// The encoding the caller's trigger counted the conversation's latest row with.
    pub counted_with: HashMap<ConversationId, String>,
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
}
