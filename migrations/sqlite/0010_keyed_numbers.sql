-- Opt statuses and what is known of a number are found only by their keys:
-- stored in their key's order (WITHOUT ROWID), each is one B-tree instead
-- of a table and the index of its key, and a send writes one entry less to
-- each.
CREATE TABLE opt_status_keyed (
    number      TEXT NOT NULL,
    campaign_id INTEGER NOT NULL,
    status      INTEGER NOT NULL,           -- 1 OPTEDIN, 0 GREY, -2 OPTEDOUT
    source      TEXT NOT NULL DEFAULT '',   -- api | keyword | operator | send
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (number, campaign_id)
) WITHOUT ROWID;
INSERT INTO opt_status_keyed (number, campaign_id, status, source, updated_at)
    SELECT number, campaign_id, status, source, updated_at FROM opt_status;
DROP TABLE opt_status;
ALTER TABLE opt_status_keyed RENAME TO opt_status;

CREATE TABLE users_keyed (
    number       TEXT PRIMARY KEY,
    carrier_id   INTEGER,
    handset_id   INTEGER,
    updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO users_keyed (number, carrier_id, handset_id, updated_at)
    SELECT number, carrier_id, handset_id, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_keyed RENAME TO users;
