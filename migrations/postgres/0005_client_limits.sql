-- Per-client send limits (spec section 1): sends a second and sends a day;
-- 0 means none. Over either, transaction.send and list.send answer HTTP 429.
ALTER TABLE clients ADD COLUMN send_per_second DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN daily_quota BIGINT NOT NULL DEFAULT 0;
CREATE INDEX transactions_client ON transactions(client_id, created_at);
