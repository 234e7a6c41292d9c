"""Regenerates the end of sql/memory_ext--0.1.0--0.2.0.sql that is copied from the install
scripts: the changed conversation functions and sql/history.sql. Run after editing those
files (the upgrade test compares the upgraded catalog with a fresh install)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPGRADE = os.path.join(ROOT, "sql", "memory_ext--0.1.0--0.2.0.sql")
MARKER = "\n-- History: export and import, fork and rewind, templates, list filters (new in 0.2.0) ----------\n"
OLD_MARKERS = [MARKER, "\n-- History: export and import, fork and rewind (new in 0.2.0) ---------------------------------\n"]


def function(text, name):
    """The CREATE FUNCTION statement of memory.<name> in an install script."""
    m = re.search(r"CREATE FUNCTION memory\." + name + r"\(.*?\nEND \$\$;\n", text, re.S)
    return m.group(0)


def main():
    upgrade = open(UPGRADE).read()
    cut = min(upgrade.index(m) for m in OLD_MARKERS if m in upgrade)
    conversations = open(os.path.join(ROOT, "sql", "conversations.sql")).read()
    history = open(os.path.join(ROOT, "sql", "history.sql")).read()
    tail = [MARKER,
            "-- create_conversation gains template_id, list_conversations its filters\n",
            "DROP FUNCTION memory.create_conversation(uuid, text, jsonb, text);\n",
            "DROP FUNCTION memory.list_conversations(uuid, integer);\n\n",
            function(conversations, "create_conversation"), "\n",
            function(conversations, "list_conversations"), "\n",
            history[history.index("-- ---- export"):]]
    open(UPGRADE, "w").write(upgrade[:cut] + "".join(tail))


if __name__ == "__main__":
    main()
