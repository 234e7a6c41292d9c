"""Token counts are bit-exact with Python tiktoken (live, on generated text), and the chat
framing matches the OpenAI cookbook's num_tokens_from_messages."""
import json
import random

import pytest

import support.tiktoken_offline  # noqa: F401  (tiktoken's vocabularies without network)

# isort: split
import tiktoken

from support.pg import connect, rpc

ALPHABET = ["the", " quick", "  ", "\n", "\t", "don't", "I'LL", "123", "45678", "é", "ñ", "日本語", "中文", "한국", "😀", "👩‍💻",
            "{\"a\": [1, 2]}", "fn main() {", "}", "<|endoftext|>", "<|im_start|>", " \n ", "HTTPServer", "x_y", "\r\n",
            "   a", "..", "!?", "Привет", "مرحبا", "\u0301", "aaaaaaaaaaaaaaaa", "ZZZZ", "'s", "'ve"]


def random_texts(n, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 200))) for _ in range(n)]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_counts_and_ids_match_python_tiktoken(db, encoding):
    enc = tiktoken.get_encoding(encoding)
    texts = random_texts(500, encoding)
    with connect(db) as c:
        rows = c.execute("SELECT memory.estimate_tokens(t, %s), memory.tokenize(t, %s), memory.detokenize(memory.tokenize(t, %s), %s) FROM unnest(%s::text[]) t",
                         (encoding, encoding, encoding, encoding, texts)).fetchall()
    mismatches = 0
    for text, (count, ids, back) in zip(texts, rows):
        expected = enc.encode_ordinary(text)
        mismatches += (count != len(expected)) + (ids != expected) + (back != text)
    assert mismatches == 0
    print(f"{encoding}: {len(texts)} texts, {sum(len(t) for t in texts)} chars, 0 mismatches")


def test_model_names_map_like_tiktoken(db):
    with connect(db) as c:
        for model in ["gpt-4o", "gpt-4o-mini", "gpt-4", "gpt-3.5-turbo", "gpt-4-turbo", "text-embedding-3-small", "gpt-4.1", "o1", "o3"]:
            try:
                expected = tiktoken.encoding_for_model(model).name
            except KeyError:
                continue
            assert rpc(c, "SELECT memory.resolve_encoding(%s)", model) == expected, model


def num_tokens_from_messages(messages, enc):
    """The OpenAI cookbook's function, for gpt-4 / gpt-4o style models."""
    n = 0
    for m in messages:
        n += 3
        for key, value in m.items():
            n += len(enc.encode_ordinary(value))
            if key == "name":
                n += 1
    return n + 3


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_count_message_tokens_equals_cookbook(db, encoding):
    enc = tiktoken.get_encoding(encoding)
    rng = random.Random(7)
    with connect(db) as c:
        for texts in [random_texts(6, i) for i in range(40)]:
            msgs = []
            for t in texts:
                m = {"role": rng.choice(["system", "user", "assistant"]), "content": t}
                if rng.random() < 0.3:
                    m["name"] = rng.choice(["alice", "example_user", "bot-7"])
                msgs.append(m)
            assert rpc(c, "SELECT memory.count_message_tokens(%s::jsonb, %s)", json.dumps(msgs), encoding) == num_tokens_from_messages(msgs, enc)


def test_chars4_is_the_guides_heuristic(db):
    with connect(db) as c:
        assert rpc(c, "SELECT memory.estimate_tokens('abcdefghi', 'chars4')") == 3
