use super::*;
use crate::core::chat::{count_messages, parse_messages_json};
use serde_json::json;

const ENC: Encoding = Encoding::Cl100kBase;

fn build_from(msgs: &Value, max: i64, system: Option<&str>) -> Result<Window> {
    build_over(msgs, max, system, None)
}

fn build_with_summary(msgs: &Value, max: i64, summary: &str, covers: i64) -> Window {
    build_with_summary_and_prompt(msgs, max, summary, covers, None)
}

fn build_with_summary_and_prompt(msgs: &Value, max: i64, summary: &str, covers: i64, system: Option<&str>) -> Window {
    let tokens = Summary::message(summary).tokens(ENC, &mut || {});
    build_over(msgs, max, system, Some(Summary { content: summary.into(), tokens, covers_through_seq: covers }))
        .unwrap()
}

fn build_over(msgs: &Value, max: i64, system: Option<&str>, summary: Option<Summary>) -> Result<Window> {
    let parsed = parse_messages_json(msgs)?;
    let (mut src, total, orphans) = SliceSource::new(parsed, ENC, &mut || {});
    let total_rows = src.len() as i64;
    build(
        &mut src,
        Params {
            max_tokens: max,
            system_prompt: system,
            encoding: ENC,
            total_rows,
            total_tokens: total,
            summary,
            orphans,
        },
    )
}

fn recount(w: &Window) -> i64 {
    count_messages(&parse_messages_json(&Value::Array(w.messages.clone())).unwrap(), ENC, &mut || {})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}
fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}
fn call(ids: &[&str]) -> Value {
    json!({"role": "assistant", "content": "", "tool_calls": ids.iter().map(|id|
        json!({"id": id, "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}})).collect::<Vec<_>>()})
}
fn result(id: &str, text: &str) -> Value {
    json!({"role": "tool", "tool_call_id": id, "content": text})
}
fn words(n: usize) -> String {
    "lorem ipsum ".repeat(n).trim_end().to_owned()
}

/// Checks the payload rules an OpenAI endpoint enforces on tool messages.
fn assert_valid_payload(msgs: &[Value]) {
    let mut i = 0;
    let mut seen_non_system = false;
    while i < msgs.len() {
        let m = &msgs[i];
        let role = m["role"].as_str().unwrap();
        assert!(role != "tool", "tool message not directly after its call at {i}: {msgs:#?}");
        if role != "system" {
            seen_non_system = true;
        }
        if let Some(calls) = m.get("tool_calls") {
            let calls = calls.as_array().unwrap();
            assert!(!calls.is_empty());
            let mut ids: HashSet<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
            i += 1;
            while i < msgs.len() && msgs[i]["role"] == "tool" {
                let id = msgs[i]["tool_call_id"].as_str().unwrap();
                assert!(ids.remove(id), "tool result {id} does not answer the preceding call");
                i += 1;
            }
            assert!(ids.is_empty(), "calls without results: {ids:?}");
            continue;
        }
        i += 1;
    }
    let _ = seen_non_system;
}

#[test]
fn everything_fits() {
    let msgs = json!([user("hi"), assistant("hello"), user("how are you?")]);
    let w = build_from(&msgs, 1000, Some("be brief")).unwrap();
    assert_eq!(w.messages.len(), 4);
    assert_eq!(w.messages[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!((w.included_messages, w.omitted_messages, w.overflow), (3, 0, false));
    assert_eq!(w.token_count, recount(&w));
}

#[test]
fn system_prompt_over_budget_is_an_error() {
    let e = build_from(&json!([user("hi")]), 5, Some(&words(20))).unwrap_err();
    assert!(e.message.contains("system prompt alone needs"), "{}", e.message);
    assert!(build_from(&json!([user("hi")]), 0, None).unwrap_err().message.contains("positive"));
    assert!(build_from(&json!([user("hi")]), 2, None).unwrap_err().message.contains("reply priming"));
}

#[test]
fn newest_always_included_with_overflow() {
    let msgs = json!([user("short"), user(&words(500))]);
    let w = build_from(&msgs, 50, Some("sys")).unwrap();
    assert!(w.overflow);
    assert_eq!(w.messages.len(), 2);
    assert_eq!(w.included_seqs, vec![2]);
    assert!(w.token_count > 50);
    assert_eq!(w.token_count, recount(&w));
}

#[test]
fn contiguous_stop_at_first_that_does_not_fit() {
    // the middle message is big; the small oldest one must not be picked up past it
    let msgs = json!([user("a"), user(&words(200)), user("b"), user("c")]);
    let w = build_from(&msgs, 40, None).unwrap();
    assert_eq!(w.included_seqs, vec![3, 4]);
    assert_eq!(w.omitted_messages, 2);
}

#[test]
fn empty_conversation_gives_system_only() {
    let w = build_from(&json!([]), 100, Some("sys")).unwrap();
    assert_eq!(w.messages, vec![json!({"role": "system", "content": "sys"})]);
    assert_eq!(w.token_count, recount(&w));
    assert_eq!(w.included_messages, 0);
}

#[test]
fn tool_group_kept_or_dropped_together() {
    let msgs =
        json!([user(&words(5)), call(&["a", "b"]), result("a", &words(30)), result("b", &words(30)), user("thanks")]);
    let all = build_from(&msgs, 10_000, None).unwrap();
    assert_eq!(all.included_messages, 5);
    // a budget that fits the last user message and one result but not the whole group
    let w = build_from(&msgs, 60, None).unwrap();
    assert_eq!(w.included_seqs, vec![5]);
    assert_valid_payload(&w.messages);
    // a budget for the group but not the first user message
    let group: i64 = all.token_count - build_from(&json!([user(&words(5))]), 10_000, None).unwrap().token_count + 3;
    let w = build_from(&msgs, group + 3, None).unwrap();
    assert_eq!(w.included_seqs, vec![2, 3, 4, 5]);
    assert_valid_payload(&w.messages);
}

#[test]
fn newest_tool_result_pulls_in_its_group_even_over_budget() {
    let msgs = json!([user("x"), call(&["a"]), result("a", &words(100))]);
    let w = build_from(&msgs, 20, None).unwrap();
    assert!(w.overflow);
    assert_eq!(w.included_seqs, vec![2, 3]);
    assert_valid_payload(&w.messages);
}

#[test]
fn result_far_from_its_call_is_moved_next_to_it() {
    let msgs = json!([call(&["a"]), user("meanwhile"), assistant("waiting"), result("a", "done")]);
    let w = build_from(&msgs, 1000, None).unwrap();
    assert_valid_payload(&w.messages);
    assert_eq!(w.messages[1]["role"], "tool");
    assert_eq!(w.messages[3]["content"], "waiting");
    assert_eq!(w.token_count, recount(&w));
    // the newest message is the result: its call comes with it even over budget
    let w = build_from(&msgs, 14, None).unwrap();
    assert!(w.overflow);
    assert_eq!(w.included_seqs, vec![1, 2, 3, 4]);
    // a budget too small for the call: the window starts after the result, not with it
    let mut longer = msgs.as_array().unwrap().clone();
    longer.push(user("next"));
    let w = build_from(&Value::Array(longer), 20, None).unwrap();
    assert_valid_payload(&w.messages);
    assert_eq!(w.included_seqs, vec![5]);
}

#[test]
fn pending_calls_are_stripped_and_orphans_left_out() {
    let msgs = json!([user("q"), result("ghost", "orphan"), {"role": "assistant", "content": "let me check",
        "tool_calls": [{"id": "p", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]);
    let w = build_from(&msgs, 1000, None).unwrap();
    assert_valid_payload(&w.messages);
    assert_eq!(w.messages.len(), 2);
    assert!(w.messages[1].get("tool_calls").is_none());
    assert_eq!(w.included_seqs, vec![1, 3]);
    assert_eq!(w.omitted_messages, 1);
    assert_eq!(w.token_count, recount(&w));
    // a pending call with no content disappears entirely
    let w = build_from(&json!([user("q"), call(&["p"])]), 1000, None).unwrap();
    assert_eq!(w.included_seqs, vec![1]);
    assert_eq!(w.token_count, recount(&w));
}

#[test]
fn guide_records_expand() {
    let msgs = json!([user("weather?"), {"role": "assistant", "content": "",
        "tool_calls": [{"id": "w1", "tool": "weather", "input": {"city": "Paris"}, "output": {"temp": 21}}]}]);
    let w = build_from(&msgs, 1000, None).unwrap();
    assert_eq!(w.messages.len(), 3);
    assert_eq!(w.messages[2], json!({"role": "tool", "tool_call_id": "w1", "content": "{\"temp\":21}"}));
    assert_eq!(w.included_messages, 2);
    assert_valid_payload(&w.messages);
    assert_eq!(w.token_count, recount(&w));
}

#[test]
fn consecutive_system_messages_are_ordinary_rows() {
    let msgs = json!([{"role": "system", "content": "rule 1"}, {"role": "system", "content": "rule 2"}, user("go")]);
    let w = build_from(&msgs, 1000, Some("top")).unwrap();
    assert_eq!(w.messages.len(), 4);
    assert_eq!(w.token_count, recount(&w));
}

#[test]
fn summary_used_only_when_not_everything_fits() {
    let msgs: Vec<Value> = (0..20).map(|i| user(&format!("message {i} {}", words(10)))).collect();
    let msgs = Value::Array(msgs);
    let all = build_with_summary(&msgs, 100_000, "earlier stuff", 10);
    assert!(!all.summary_included);
    assert_eq!(all.included_messages, 20);

    let w = build_with_summary(&msgs, 200, "earlier stuff", 10);
    assert!(w.summary_included);
    assert_eq!(w.messages[0]["content"], format!("{SUMMARY_PREFIX}earlier stuff"));
    assert!(w.included_seqs.iter().all(|&s| s > 10));
    assert_eq!(w.token_count, recount(&w));
    assert!(w.token_count <= 200);
    let first = w.included_seqs[0];
    assert_eq!(w.unsummarized_omitted, first - 11);
    assert_eq!(w.omitted_messages, 20 - w.included_messages);

    // a summary older than the window: only messages after it are candidates, all fit
    let w = build_with_summary(&msgs, 300, "earlier stuff", 15);
    assert!(w.summary_included);
    assert_eq!(w.included_seqs, vec![16, 17, 18, 19, 20]);
    assert_eq!(w.unsummarized_omitted, 0);
}

#[test]
fn summary_covering_everything_still_sends_the_newest() {
    let msgs = Value::Array((0..10).map(|i| user(&format!("m{i} {}", words(10)))).collect());
    let w = build_with_summary(&msgs, 100, "all of it", 10);
    assert!(w.summary_included);
    assert_eq!(w.included_seqs, vec![10]);
    assert_eq!(w.token_count, recount(&w));
}

#[test]
fn summary_dropped_when_it_leaves_no_room_for_the_newest() {
    let msgs = Value::Array(vec![user(&words(50)), user(&words(50))]);
    let w = build_with_summary(&msgs, 120, &words(40), 1);
    assert!(!w.summary_included);
    assert_eq!(w.included_seqs, vec![2]);
    assert_eq!(w.unsummarized_omitted, 1);
}

// ---- property tests over random conversations ------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_conversation(rng: &mut Rng) -> Value {
    let mut out = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let n = rng.below(40) as usize;
    let mut call_no = 0;
    let text = |rng: &mut Rng| words(rng.below(60) as usize);
    while out.len() < n {
        match rng.below(10) {
            0..=2 => out.push(user(&text(rng))),
            3..=4 => out.push(assistant(&text(rng))),
            5 => out.push(json!({"role": "system", "content": text(rng)})),
            6 => {
                let k = 1 + rng.below(3);
                let ids: Vec<String> = (0..k)
                    .map(|_| {
                        call_no += 1;
                        format!("call_{call_no}")
                    })
                    .collect();
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                out.push(call(&refs));
                pending.extend(ids);
            }
            7 if !pending.is_empty() => {
                let id = pending.remove(rng.below(pending.len() as u64) as usize);
                out.push(result(&id, &text(rng)));
            }
            8 => {
                call_no += 1;
                out.push(json!({"role": "assistant", "content": "", "tool_calls": [
                    {"id": format!("g{call_no}"), "tool": "calc", "input": {"n": call_no}, "output": text(rng)}]}));
            }
            9 if rng.below(4) == 0 => out.push(result("nowhere", "stray")),
            _ => out.push(user("ok")),
        }
    }
    Value::Array(out)
}

#[test]
fn properties_hold_over_random_conversations() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for case in 0..3000 {
        let msgs = random_conversation(&mut rng);
        let n = msgs.as_array().unwrap().len() as i64;
        let max = 20 + rng.below(600) as i64;
        let w = build_from(&msgs, max, Some("system")).unwrap();
        let ctx = format!("case {case} max {max}: {msgs}");
        assert_eq!(w.token_count, recount(&w), "{ctx}");
        assert!(w.overflow || w.token_count <= max, "{ctx}");
        assert_valid_payload(&w.messages);
        assert_eq!(w.included_messages + w.omitted_messages, n, "{ctx}");
        // contiguous: every row from the first included one on is included, unless it cannot
        // be sent at all (an orphan result, or a pending call with nothing else in it)
        if let Some(&first) = w.included_seqs.first() {
            let full = build_from(&msgs, i64::MAX / 4, Some("system")).unwrap();
            let expected: Vec<i64> = full.included_seqs.iter().copied().filter(|&s| s >= first).collect();
            assert_eq!(w.included_seqs, expected, "{ctx}");
            assert_eq!(w.included_seqs.last(), full.included_seqs.last(), "newest missing: {ctx}");
        }
        // a larger budget never shrinks the window
        let bigger = build_from(&msgs, max + 1 + rng.below(300) as i64, Some("system")).unwrap();
        assert!(bigger.included_messages >= w.included_messages, "{ctx}");
    }
}

#[test]
fn summary_properties_over_random_conversations() {
    let mut rng = Rng(12345);
    for case in 0..1000 {
        let msgs = random_conversation(&mut rng);
        let n = msgs.as_array().unwrap().len() as i64;
        if n == 0 {
            continue;
        }
        let covers = rng.below(n as u64) as i64;
        let max = 100 + rng.below(500) as i64;
        let system = if rng.below(2) == 0 { None } else { Some(words(rng.below(20) as usize)) };
        let w = build_with_summary_and_prompt(&msgs, max, "the story so far", covers, system.as_deref());
        let ctx = format!("case {case} max {max} covers {covers} system {system:?}: {msgs}");
        assert_eq!(w.token_count, recount(&w), "{ctx}");
        assert!(w.overflow || w.token_count <= max, "{ctx}");
        assert_valid_payload(&w.messages);
        if w.summary_included {
            assert!(
                w.unsummarized_omitted <= w.omitted_messages,
                "{} {} {:?} {ctx}",
                w.unsummarized_omitted,
                w.omitted_messages,
                w.included_seqs
            );
            let at = usize::from(system.is_some());
            assert_eq!(w.messages[at]["content"], format!("{SUMMARY_PREFIX}the story so far"), "{ctx}");
        } else {
            assert_eq!(w.unsummarized_omitted, w.omitted_messages, "{ctx}");
        }
        if let Some(p) = &system {
            assert_eq!(w.messages[0]["content"], json!(p), "{ctx}");
        }
        // the system prompt counts when deciding whether the history fits: a window that omits
        // messages the summary covers uses the summary whenever it and the newest row fit
        // (without tool groups, whose results may not follow their calls, the summary is left out
        // only when it does not fit beside the newest rows)
        let plain = build_from(&msgs, max, system.as_deref()).unwrap();
        let summary_tokens = Summary::message("the story so far").tokens(ENC, &mut || {});
        let has_tools = msgs.as_array().unwrap().iter().any(|m| m.get("tool_calls").is_some() || m["role"] == "tool");
        if !has_tools && plain.omitted_messages > 0 && !w.summary_included {
            assert!(w.overflow || w.token_count + summary_tokens > max, "summary ignored: {ctx}");
        }
    }
}
