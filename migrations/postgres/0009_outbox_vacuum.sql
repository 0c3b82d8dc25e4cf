-- The outbox is a queue: every posting inserts a row and the relay deletes it moments later, so at 1,000 postings/s
-- it makes 1,000 dead rows a second. The relay reads `ORDER BY id LIMIT n` from the head of the primary key, which is
-- exactly where the dead entries pile up until a vacuum removes them, and with the default thresholds (20% of a table
-- that is nearly empty, checked every autovacuum_naptime) a minute's worth piled up between vacuums.
--
-- Measured at 1,000 postings/s on the `large` data (pg_stat_statements): the relay's SELECT took 3.8 ms and its
-- DELETE 3.9 ms per round, 11.3 of the 18 seconds of statement time per 30 s of load. With the outbox vacuumed after
-- every 2,000 dead rows (and compose/stack's autovacuum_naptime of 5 s), 0.09 ms each.
--
-- No cost delay: vacuuming a table this small is quick, and a throttled vacuum lets the dead rows come back.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 100000
);
