"""Splits PostgreSQL script text into statements, with the comments that lead each one.

Knows what can hide a semicolon: quoted strings ('…', E'…' with backslash escapes), quoted
identifiers, dollar-quoted bodies ($$…$$, $tag$…$tag$), -- comments and nested /* */ comments.
psql meta-commands are not expected (install scripts have none)."""
import re

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def statements(text):
    """The statements of `text`, each with the comments and blank lines before it and its ';'.
    Text after the last ';' (comments only, in a well-formed script) is returned as a last item
    when it holds anything but whitespace."""
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            i = _end_of(text, "\n", i)
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch == "'":
            backslashes = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i += 1
            while i < n:
                if backslashes and text[i] == "\\":
                    i += 2
                elif text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif ch == '"':
            i = _end_of(text, '"', i + 1)
        elif ch == "$" and (m := _DOLLAR.match(text, i)) and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
            tag = m.group(0)
            i = _end_of(text, tag, m.end())
        elif ch == ";":
            out.append(text[start:i + 1])
            start = i = i + 1
        else:
            i += 1
    if text[start:].strip():
        out.append(text[start:])
    return out


def _end_of(text, token, i):
    """The index just past the next `token` at or after `i` (the end of text when there is none)."""
    j = text.find(token, i)
    return len(text) if j < 0 else j + len(token)


def code(statement):
    """The statement without its leading comments and whitespace."""
    s = statement
    while True:
        s = s.lstrip()
        if s.startswith("--"):
            s = s[s.find("\n") + 1:] if "\n" in s else ""
        elif s.startswith("/*"):
            s = s[_end_of(s, "*/", 2):]
        else:
            return s
