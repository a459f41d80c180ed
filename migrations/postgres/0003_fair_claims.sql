-- Deliveries are claimed client by client in turn, so one client's large
-- blast cannot hold up another client's single message.
ALTER TABLE deliveries ADD COLUMN client_id BIGINT NOT NULL DEFAULT 0;
UPDATE deliveries SET client_id = COALESCE(
    (SELECT client_id FROM transactions WHERE transactions.id = deliveries.transaction_id), 0);
CREATE INDEX deliveries_client_due ON deliveries(client_id, due_ms);
