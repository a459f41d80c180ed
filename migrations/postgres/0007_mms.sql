-- MMS: each carrier's largest MMS (0: no limit), a campaign's answer to an
-- MMS for a carrier that cannot carry one, and the MMSC's ids of messages
-- submitted over MM7, which its delivery reports name.
ALTER TABLE carriers ADD COLUMN mms_max_bytes BIGINT NOT NULL DEFAULT 1048576;
ALTER TABLE campaigns ADD COLUMN mms_fallback TEXT NOT NULL DEFAULT 'fail';

CREATE TABLE mm7_messages (
    message_id     TEXT NOT NULL,              -- the MMSC's MessageID
    carrier_id     BIGINT NOT NULL,
    transaction_id BIGINT NOT NULL,
    PRIMARY KEY (carrier_id, message_id)
);
CREATE INDEX mm7_messages_transaction ON mm7_messages(transaction_id);
