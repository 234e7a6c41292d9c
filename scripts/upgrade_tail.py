"""Regenerates the end of sql/memory_ext--0.1.0--0.2.0.sql that is copied from the install
scripts: the search column and its index (filled for the stored messages), the members table, the
authorization rule and its policies, the changed trigger and conversation functions,
sql/history.sql, sql/search.sql, sql/sharing.sql and sql/analytics.sql. Run after editing those files
(the upgrade test compares the upgraded catalog with a fresh install)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPGRADE = os.path.join(ROOT, "sql", "memory_ext--0.1.0--0.2.0.sql")
MARKER = "\n-- History, sharing and archive (new in 0.2.0) ------------------------------------------------\n"
OLD_MARKERS = [MARKER, "\n-- History: search, export and import, fork and rewind, templates, list filters (new in 0.2.0) --\n", "\n-- History: export and import, fork and rewind, templates, list filters (new in 0.2.0) ----------\n"]

SEARCH_CONFIG_STUB = """CREATE FUNCTION memory."_search_config"() RETURNS TEXT
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_search_config_wrapper';
"""


def function(text, name, end=r"\nEND \$\$;\n"):
    """The CREATE FUNCTION statement of memory.<name> in an install script."""
    m = re.search(r"CREATE FUNCTION memory\." + name + r"\(.*?" + end, text, re.S)
    return m.group(0)


def trigger(text, name):
    """The CREATE TRIGGER statement of <name> in an install script."""
    return re.search(r"CREATE TRIGGER " + name + r" .*?;\n", text, re.S).group(0)


def between(text, start, end):
    """The text of an install script from the line starting with `start` up to `end`."""
    a = text.index(start)
    return text[a:text.index(end, a)]


def replace(text, name):
    return function(text, name).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def main():
    upgrade = open(UPGRADE).read()
    cut = min(upgrade.index(m) for m in OLD_MARKERS if m in upgrade)
    read = lambda name: open(os.path.join(ROOT, "sql", name)).read()  # noqa: E731
    conversations, history, tables, triggers = read("conversations.sql"), read("history.sql"), read("tables.sql"), read("triggers.sql")
    security, agents, summaries = read("security.sql"), read("agents.sql"), read("summaries.sql")
    tail = [MARKER,
            "-- search: every message's words in a tsvector, filled for the stored messages, and its index\n",
            SEARCH_CONFIG_STUB, "\n",
            function(tables, "_conversation_lexeme", r"\n\$\$;\n"),
            function(tables, "_search_vector", r"\n\$\$;\n"), "\n",
            "ALTER TABLE memory.conversation_messages ADD COLUMN search_vector tsvector;\n",
            "UPDATE memory.conversation_messages\n"
            "   SET search_vector = memory._search_vector(memory._search_config()::regconfig, conversation_id, content, tool_calls);\n",
            "CREATE INDEX conversation_messages_search_idx ON memory.conversation_messages USING gin (search_vector)\n"
            "    WITH (gin_pending_list_limit = 512);\n\n",
            "-- tool-call probes read the index, not a pending list (see tables.sql)\n",
            "ALTER INDEX memory.conversation_messages_tool_keys_idx SET (fastupdate = off);\n",
            "SELECT pg_catalog.gin_clean_pending_list('memory.conversation_messages_tool_keys_idx');\n\n",
            "-- the server's retention jobs\n",
            "ALTER TABLE memory.jobs DROP CONSTRAINT jobs_kind_check,\n"
            "    ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('summary', 'reply', 'retention'));\n\n",
            "-- sharing: members, the authorization rule with its three rights, and the policies that apply it\n",
            "ALTER TABLE memory.conversations ADD COLUMN archived_at timestamptz;\n",
            between(tables, "-- Who else may use a conversation", "\n-- pg_dump keeps"), "\n",
            "SELECT pg_catalog.pg_extension_config_dump('memory.conversation_members', '');\n",
            "ALTER TABLE memory.conversation_members ENABLE ROW LEVEL SECURITY;\n",
            "GRANT SELECT ON memory.conversation_members TO PUBLIC;\n",
            "DROP POLICY conversations_owner ON memory.conversations;\n",
            "DROP POLICY messages_owner ON memory.conversation_messages;\n",
            "DROP POLICY summaries_owner ON memory.conversation_summaries;\n",
            "DROP POLICY agents_of_readable_conversations ON memory.agents;\n",
            "DROP FUNCTION memory.can_read(uuid), memory.can_write(uuid);\n",
            "DROP FUNCTION memory._can_read_row(uuid, uuid, uuid), memory._can_write_row(uuid, uuid, uuid);\n\n",
            read("access.sql"), "\n",
            between(security, "-- conversations: read by owner", "-- jobs and queue_turns have no policy"),
            between(agents, "-- whoever may read a conversation may read the agent", "\nCREATE POLICY llm_calls_owner"), "\n",
            replace(summaries, "_request_summary"), "\n",
            replace(agents, "_request_reply"), "\n",
            replace(triggers, "_message_before_insert"), "\n",
            replace(triggers, "_message_before_update"), "\n",
            "-- counters once per INSERT statement instead of once per row\n",
            replace(triggers, "_message_before_insert_write"), "\n",
            function(triggers, "_messages_after_insert"), "\n",
            trigger(triggers, "messages_after_insert"), "\n",
            "REVOKE EXECUTE ON FUNCTION memory._messages_after_insert() FROM PUBLIC;\n\n",
            "DROP FUNCTION memory.get_messages(uuid, integer, bigint);\n",
            function(conversations, "get_messages"), "\n",
            "-- create_conversation gains template_id, list_conversations its filters\n",
            "DROP FUNCTION memory.create_conversation(uuid, text, jsonb, text);\n",
            "DROP FUNCTION memory.list_conversations(uuid, integer);\n\n",
            function(conversations, "create_conversation"), "\n",
            between(conversations, "-- A row of list_conversations", "\n-- The caller's conversations and those shared"), "\n",
            function(conversations, "list_conversations"), "\n",
            history[history.index("-- ---- export"):], "\n",
            "-- per-agent retention\n",
            "ALTER TABLE memory.agents ADD COLUMN retention_days integer CHECK (retention_days >= 0);\n",
            "DROP FUNCTION memory.create_agent(text, text, text, jsonb, integer, integer, real, integer, boolean, jsonb);\n",
            "DROP FUNCTION memory.update_agent(uuid, text, text, text, jsonb, integer, integer, real, integer, boolean, jsonb);\n",
            function(agents, "create_agent"), "\n",
            function(agents, "update_agent"), "\n",
            read("search.sql"), "\n",
            read("sharing.sql"), "\n",
            read("analytics.sql")]
    open(UPGRADE, "w").write(upgrade[:cut] + "".join(tail))


if __name__ == "__main__":
    main()
