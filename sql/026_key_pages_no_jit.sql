-- 026_key_pages_no_jit.sql - the key pages never compile their plans with
-- JIT, whatever the caller's session says.
--
-- Why: with PostgreSQL's default (jit = on, jit_above_cost 100000) the
-- statements inside cd_history / cd_utxos are costed past jit_above_cost
-- (the planner's guess for a key is thousands of rows, and the probes of
-- each row's tx and spender multiply it), and compiling them then costs far
-- more than running them: a history of a typical key (2 rows) took 702 ms
-- at 150k txs, 671 ms of it JIT (generation, inlining, optimisation,
-- emission of 95 functions), 1 ms executing. The HTTP API's sessions set
-- jit = off (src/api/cd_http_int.h) and docs/QUERIES.md advises SQL users to
-- do the same; a setting on the functions themselves holds for every
-- caller (a function's SET applies while it runs, to every statement it
-- runs). tests/functional/test_key_pages.py
-- ::test_key_pages_never_jit_compile failed before.
--
-- On the entry points only: cd_history_scan / cd_utxos_scan (sql/007's
-- definitions, LANGUAGE sql) are inlined into the callers above, which a
-- SET clause would prevent; cd_balance is LANGUAGE sql too, but is called by
-- users directly, and its body reads every output of the key (an aggregate
-- costed past jit_above_cost for a key with many rows), so it gets the
-- setting and is no longer inlined (its body is planned on its own, in its
-- own setting).

ALTER FUNCTION cd_history(text, bytea, integer, integer, bigint) SET jit = off;
ALTER FUNCTION cd_utxos(text, bytea, integer, integer, bigint, integer) SET jit = off;
ALTER FUNCTION cd_balance(text, bytea) SET jit = off;
