"""Regenerates the end of sql/memory_ext--0.1.0--0.2.0.sql that is copied from the install
scripts: the search column and its index (filled for the stored messages), the changed trigger
and conversation functions, sql/history.sql and sql/search.sql. Run after editing those files
(the upgrade test compares the upgraded catalog with a fresh install)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPGRADE = os.path.join(ROOT, "sql", "memory_ext--0.1.0--0.2.0.sql")
MARKER = "\n-- History: search, export and import, fork and rewind, templates, list filters (new in 0.2.0) --\n"
OLD_MARKERS = [MARKER, "\n-- History: export and import, fork and rewind, templates, list filters (new in 0.2.0) ----------\n"]

SEARCH_CONFIG_STUB = """CREATE FUNCTION memory."_search_config"() RETURNS TEXT
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_search_config_wrapper';
"""


def function(text, name, end=r"\nEND \$\$;\n"):
    """The CREATE FUNCTION statement of memory.<name> in an install script."""
    m = re.search(r"CREATE FUNCTION memory\." + name + r"\(.*?" + end, text, re.S)
    return m.group(0)


def replace(text, name):
    return function(text, name).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def main():
    upgrade = open(UPGRADE).read()
    cut = min(upgrade.index(m) for m in OLD_MARKERS if m in upgrade)
    read = lambda name: open(os.path.join(ROOT, "sql", name)).read()  # noqa: E731
    conversations, history, tables, triggers = read("conversations.sql"), read("history.sql"), read("tables.sql"), read("triggers.sql")
    tail = [MARKER,
            "-- search: every message's words in a tsvector, filled for the stored messages, and its index\n",
            SEARCH_CONFIG_STUB, "\n",
            function(tables, "_search_vector", r"\n\$\$;\n"), "\n",
            "ALTER TABLE memory.conversation_messages ADD COLUMN search_vector tsvector;\n",
            "UPDATE memory.conversation_messages\n"
            "   SET search_vector = memory._search_vector(memory._search_config()::regconfig, conversation_id, content, tool_calls);\n",
            "CREATE INDEX conversation_messages_search_idx ON memory.conversation_messages USING gin (search_vector);\n\n",
            replace(triggers, "_message_before_insert"), "\n",
            replace(triggers, "_message_before_update"), "\n",
            "DROP FUNCTION memory.get_messages(uuid, integer, bigint);\n",
            function(conversations, "get_messages"), "\n",
            "-- create_conversation gains template_id, list_conversations its filters\n",
            "DROP FUNCTION memory.create_conversation(uuid, text, jsonb, text);\n",
            "DROP FUNCTION memory.list_conversations(uuid, integer);\n\n",
            function(conversations, "create_conversation"), "\n",
            function(conversations, "list_conversations"), "\n",
            history[history.index("-- ---- export"):], "\n",
            read("search.sql")]
    open(UPGRADE, "w").write(upgrade[:cut] + "".join(tail))


if __name__ == "__main__":
    main()
