-- Cost in money: every LLM call's cost in US dollars at its model's price (memory.model_prices,
-- kept by the operator), fixed when the call's row is written, and a seed of common models' list
-- prices. The day's cost per user and its limit are in usage.sql; the figures per day, agent and
-- conversation in analytics.sql.

-- The cost in US dollars of a call to p_model at p_at that was billed p_input prompt and p_output
-- completion tokens; NULL when memory.model_prices has no price of the model at that time.
CREATE OR REPLACE FUNCTION memory._llm_call_cost(p_model text, p_input bigint, p_output bigint, p_at timestamptz) RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (p.input_usd_per_million * _llm_call_cost.p_input + p.output_usd_per_million * _llm_call_cost.p_output) / 1000000
      FROM memory.model_prices p
     WHERE p.model = _llm_call_cost.p_model
       AND p.valid_from <= _llm_call_cost.p_at AND _llm_call_cost.p_at < p.valid_to;
$$;

-- Prices a call's row when it is written and whenever its tokens change (the worker completes a
-- pending row with the provider's figures): the tokens billed are the provider's, else the prompt
-- as counted locally and no output (the rule of core::ledger's Charge::billed_tokens), at the price
-- in force when the row was created. A later change of price leaves it as it was.
CREATE OR REPLACE FUNCTION memory._llm_call_price() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.cost_usd := memory._llm_call_cost(NEW.model, coalesce(NEW.prompt_tokens, NEW.local_prompt_tokens, 0),
                                          coalesce(NEW.completion_tokens, 0), NEW.created_at);
    RETURN NEW;
END $$;

CREATE TRIGGER llm_calls_price BEFORE INSERT OR UPDATE OF model, prompt_tokens, completion_tokens, local_prompt_tokens
    ON memory.llm_calls FOR EACH ROW EXECUTE FUNCTION memory._llm_call_price();

-- The cost of p_user's rolled-back calls that the worker has not written yet (the daily cost
-- limit counts them at once, as the token limit does), at today's prices.
CREATE OR REPLACE FUNCTION memory._pending_llm_cost(p_user uuid) RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(memory._llm_call_cost(c.model, c.input_tokens, c.output_tokens, now())), 0)
      FROM memory._pending_llm_charges(_pending_llm_cost.p_user) c;
$$;

-- One model's periods never overlap, so a call has at most one price (an exclusion constraint
-- would need btree_gist). After the write, so that the row is in place; the lock makes two
-- writers of one model's prices take turns, and the second one sees the first one's row.
CREATE OR REPLACE FUNCTION memory._model_prices_no_overlap() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_other memory.model_prices;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('memory.model_prices'), hashtext(NEW.model));
    SELECT * INTO v_other FROM memory.model_prices p
     WHERE p.model = NEW.model AND p.valid_from <> NEW.valid_from
       AND p.valid_from < NEW.valid_to AND NEW.valid_from < p.valid_to
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the price of % from % to % overlaps its price from % to %',
                        NEW.model, NEW.valid_from, NEW.valid_to, v_other.valid_from, v_other.valid_to
            USING ERRCODE = 'exclusion_violation',
                  HINT = 'End the earlier price first (UPDATE memory.model_prices SET valid_to = ...).';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER model_prices_no_overlap AFTER INSERT OR UPDATE OF model, valid_from, valid_to ON memory.model_prices
    FOR EACH ROW EXECUTE FUNCTION memory._model_prices_no_overlap();

-- Adds the list prices of common OpenAI and Groq models (US dollars per million tokens, standard
-- tier, uncached input, as the providers' price pages listed them in August 2025) for each model
-- that has no price yet: the operator's own prices are never replaced. Returns how many rows it
-- added; running it again adds none. Check the providers' current prices before relying on them.
-- Operators only (it writes memory.model_prices with the caller's privileges).
CREATE OR REPLACE FUNCTION memory.seed_model_prices() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_added integer;
BEGIN
    INSERT INTO memory.model_prices (model, input_usd_per_million, output_usd_per_million, source)
    SELECT s.model, s.input, s.output, s.source
      FROM (VALUES
            ('gpt-5', 1.25, 10.00, 'OpenAI price list, 2025-08'),
            ('gpt-5-mini', 0.25, 2.00, 'OpenAI price list, 2025-08'),
            ('gpt-5-nano', 0.05, 0.40, 'OpenAI price list, 2025-08'),
            ('gpt-4.1', 2.00, 8.00, 'OpenAI price list, 2025-08'),
            ('gpt-4.1-mini', 0.40, 1.60, 'OpenAI price list, 2025-08'),
            ('gpt-4.1-nano', 0.10, 0.40, 'OpenAI price list, 2025-08'),
            ('gpt-4o', 2.50, 10.00, 'OpenAI price list, 2025-08'),
            ('gpt-4o-mini', 0.15, 0.60, 'OpenAI price list, 2025-08'),
            ('o3', 2.00, 8.00, 'OpenAI price list, 2025-08'),
            ('o4-mini', 1.10, 4.40, 'OpenAI price list, 2025-08'),
            ('llama-3.3-70b-versatile', 0.59, 0.79, 'Groq price list, 2025-08'),
            ('llama-3.1-8b-instant', 0.05, 0.08, 'Groq price list, 2025-08'),
            ('openai/gpt-oss-120b', 0.15, 0.75, 'Groq price list, 2025-08'),
            ('openai/gpt-oss-20b', 0.10, 0.50, 'Groq price list, 2025-08'),
            ('meta-llama/llama-4-scout-17b-16e-instruct', 0.11, 0.34, 'Groq price list, 2025-08'),
            ('meta-llama/llama-4-maverick-17b-128e-instruct', 0.20, 0.60, 'Groq price list, 2025-08'),
            ('qwen/qwen3-32b', 0.29, 0.59, 'Groq price list, 2025-08')
           ) AS s(model, input, output, source)
     WHERE NOT EXISTS (SELECT 1 FROM memory.model_prices p WHERE p.model = s.model);
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END $$;

-- internal (see CONTRIBUTING.md): not executable by PUBLIC; the seed is the operator's
REVOKE EXECUTE ON FUNCTION
    memory._llm_call_cost(text, bigint, bigint, timestamptz),
    memory._llm_call_price(),
    memory._pending_llm_cost(uuid),
    memory._pending_llm_charges(uuid),
    memory._model_prices_no_overlap(),
    memory.seed_model_prices()
FROM PUBLIC;
