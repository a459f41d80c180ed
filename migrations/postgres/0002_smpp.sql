-- SMPP: what the SMSC said of each submitted segment, and receipts that
-- came before the id they name was recorded.

-- One row per segment of a transaction sent over SMPP. `message_id` is the
-- SMSC's id, normalised (lower case, no leading zeros), once accepted.
CREATE TABLE smpp_segments (
    transaction_id BIGINT NOT NULL,
    segment        BIGINT NOT NULL,         -- 1-based
    total          BIGINT NOT NULL,
    message_id     TEXT,
    receipt        TEXT NOT NULL DEFAULT '', -- '' | DELIVRD | UNDELIV | …
    delivered      BIGINT,                  -- NULL: no final receipt; 1 delivered; 0 failed
    accepted_ms    BIGINT,
    PRIMARY KEY (transaction_id, segment)
);
CREATE INDEX smpp_segments_message ON smpp_segments(message_id);

-- A receipt whose id matched no segment yet: one row per reading of its id.
CREATE TABLE smpp_pending_receipts (
    candidate   TEXT NOT NULL,
    receipt_key TEXT NOT NULL,              -- the id as the SMSC wrote it
    stat        TEXT NOT NULL,
    delivered   BIGINT NOT NULL,
    err         TEXT NOT NULL DEFAULT '',
    received_ms BIGINT NOT NULL
);
CREATE INDEX smpp_pending_candidate ON smpp_pending_receipts(candidate);
