-- Deliveries are claimed along (client_id, due_ms) since claims became
-- fair; the index on due_ms alone served no query any more, yet every
-- send, stage move and finished delivery rewrote an entry of it.
DROP INDEX IF EXISTS deliveries_due;
