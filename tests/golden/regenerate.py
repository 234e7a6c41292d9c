"""Regenerates tests/golden/tokens.json from Python tiktoken (the reference implementation).
    PYTHONPATH=tests python3 tests/golden/regenerate.py
The Rust test `core::tokenizer::golden` checks memory_ext's counts and ids against it."""
import json
import os

import support.tiktoken_offline  # noqa: F401  (tiktoken's vocabularies without network)

# isort: split
import tiktoken

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus():
    texts = [
        "",
        " ",
        "hello world",
        "Hello, World! How's it going? I'm fine, you'll see; they'd've known.",
        "The quick brown fox jumps over the lazy dog. " * 20,
        "It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
        # code
        "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
        "def fib(n):\n\tif n < 2:\n\t\treturn n\n\treturn fib(n - 1) + fib(n - 2)\n\n\nprint(fib(30))\n",
        "SELECT c.id, count(*) FROM memory.conversations c JOIN memory.conversation_messages m ON m.conversation_id = c.id GROUP BY 1;",
        "<div class=\"x\">&nbsp;<a href='https://example.com/path?q=1&r=2#frag'>link</a></div>",
        # JSON
        json.dumps({"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}),
        json.dumps([{"a": [1, 2.5, -3e10, None, True]}, {"nested": {"deep": ["x" * 30]}}], indent=2),
        # CJK, other scripts, emoji
        "日本語のテキストを数えます。東京は晴れです。",
        "中文分词测试：今天天气很好，我们去公园散步吧。",
        "한국어 문장도 셉니다. 안녕하세요!",
        "Привет, мир! Съешь же ещё этих мягких французских булок.",
        "مرحبا بالعالم، هذا نص عربي.",
        "नमस्ते दुनिया, यह हिंदी पाठ है।",
        "🎉🎉🎉 emoji 👩‍👩‍👧‍👦 family 🇫🇷 flag 🧑🏽‍💻 coder ✨",
        "Ünïcödé çombining: e\u0301 a\u0308 n\u0303 — and ligatures ﬁ ﬂ",
        # whitespace runs
        "a  b   c    d\n\n\ne\t\t\tf \n \n g",
        "   leading and trailing   ",
        "\n\n\n\n",
        " " * 100 + "x" + "\t" * 50,
        "line1\r\nline2\r\n\r\nline3\r",
        # numbers
        "1234567890 3.14159 1,000,000 -42 0x1F 1e-9 12345678901234567890",
        # special-token look-alikes count as ordinary text
        "<|endoftext|>",
        "<|im_start|>user\nhi<|im_end|>",
        "<|fim_prefix|><|fim_middle|><|fim_suffix|><|endofprompt|>",
        # contractions, case
        "DON'T YOU'LL I'D WE'VE THEY'RE IT'S",
        "camelCaseWordsAndHTTPServer XMLHttpRequest",
        # long unsplittable runs (tiktoken is quadratic on these)
        "a" * 5000,
        "ab" * 3000,
        "😀" * 1000,
        "1" * 3000,
        "!" * 4000,
        "\u00e9" * 3000,
    ]
    return texts


def main():
    out = []
    for enc_name in ("cl100k_base", "o200k_base"):
        enc = tiktoken.get_encoding(enc_name)
        for i, text in enumerate(corpus()):
            ids = enc.encode_ordinary(text)
            entry = {"encoding": enc_name, "case": i, "text": text, "count": len(ids)}
            if len(text) <= 2000:
                entry["ids"] = ids
            out.append(entry)
    meta = {"generator": "tests/golden/regenerate.py", "tiktoken": tiktoken.__version__, "cases": out}
    with open(os.path.join(HERE, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {len(out)} cases with tiktoken {tiktoken.__version__}")


if __name__ == "__main__":
    main()
