-- build_context must walk the (conversation_id, seq) index backwards and stop after the
-- window, whatever the statistics say about the size of this conversation: with a small
-- average conversation the planner would otherwise pick a bitmap scan plus a sort, which reads
-- the whole history of a long one.
ALTER FUNCTION memory.build_context(uuid, integer, text, double precision)
    SET enable_sort = off
    SET enable_bitmapscan = off
    SET enable_seqscan = off;

-- It reads through SPI: its search_path is pinned like every other function's.
ALTER FUNCTION memory.build_context(uuid, integer, text, double precision) SET search_path = pg_catalog, pg_temp;
