-- stackwright:no-transaction
-- "My orders" looks orders up by user. By the time this ships, orders is taking
-- writes, so the index is built CONCURRENTLY (no write lock), which PostgreSQL
-- only allows outside a transaction: hence the directive on the first line.
-- If the build fails, PostgreSQL leaves an INVALID index behind and stackwright
-- marks this migration failed: DROP INDEX CONCURRENTLY orders_user_id_idx, then
-- delete its history row and run again (IF NOT EXISTS would skip the invalid one).
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);
