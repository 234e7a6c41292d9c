-- Exact token counting
\i tests/pg_regress/setup.psql
SELECT memory.estimate_tokens('tiktoken is great!');
SELECT memory.tokenize('tiktoken is great!');
SELECT memory.detokenize(ARRAY[83, 1609, 5963, 374, 2294, 0]);
SELECT memory.estimate_tokens('Hello 世界 🎉', 'o200k_base') AS o200k,
       memory.estimate_tokens('Hello 世界 🎉', 'gpt-4o') AS gpt4o,
       memory.estimate_tokens('Hello 世界 🎉', 'gpt-4') AS gpt4,
       memory.estimate_tokens('Hello 世界 🎉', 'chars4') AS chars4;
-- special-token strings are ordinary text
SELECT memory.estimate_tokens('<|endoftext|>');
SELECT memory.resolve_encoding(m) FROM unnest(ARRAY['gpt-4o-mini', 'gpt-3.5-turbo', 'llama-3.3-70b-versatile', 'O200K_BASE']) m;
-- one chat message: 3 framing + role + content (+ 1 + name)
SELECT memory.message_tokens('user', 'hello world');
SELECT memory.message_tokens('user', 'hello world', name => 'alice');
SELECT memory.message_tokens('assistant', '', '[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]');
-- a combined tool record counts as the assistant call plus its tool message
SELECT memory.message_tokens('assistant', '', '[{"id":"c1","tool":"f","input":{},"output":"ok"}]')
     = memory.count_message_tokens('[{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                                     {"role":"tool","tool_call_id":"c1","content":"ok"}]') - 3 AS expands;
-- the OpenAI cookbook's example conversation: 129 tokens
SELECT memory.count_message_tokens('[
  {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
  {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
  {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
  {"role": "system", "name": "example_user", "content": "Let''s circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
  {"role": "system", "name": "example_assistant", "content": "Let''s talk later when we''re less busy about how to do better."},
  {"role": "user", "content": "This late pivot means we don''t have time to boil the ocean for the client deliverable."}
]', 'gpt-4');
-- errors
SELECT memory.estimate_tokens('x', 'p50k_base');
SELECT memory.tokenize('x', 'chars4');
SELECT memory.detokenize(ARRAY[-1]);
SELECT memory.message_tokens('robot', 'x');
SELECT memory.message_tokens('tool', 'x');
SELECT memory.message_tokens('assistant', '', '{"not": "an array"}');
SELECT memory.count_message_tokens('[{"content": "no role"}]');
-- NULL text gives NULL, like any strict function
SELECT memory.estimate_tokens(NULL) IS NULL AS is_null;
