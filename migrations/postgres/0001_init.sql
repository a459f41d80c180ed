-- The whole schema of one moms installation on PostgreSQL: the same tables as
-- migrations/sqlite, with BIGINT for every integer (the code reads i64). Times
-- are unix seconds (or milliseconds where the column says so), UTC; numbers
-- are E.164 digits.
--
-- Tables the store reads in insertion order (ORDER BY rowid, SQLite's hidden
-- row number) have a column of that name here, so the same SQL runs on both.

CREATE TABLE clients (
    id              BIGINT PRIMARY KEY,
    name            TEXT NOT NULL,
    token_hash      TEXT NOT NULL,            -- hex SHA-256 of the token; the token itself is never stored
    callback_secret TEXT NOT NULL,            -- HMAC key of callback signatures
    senders         TEXT NOT NULL DEFAULT '', -- comma-separated short codes and numbers
    whitelist       TEXT NOT NULL DEFAULT '', -- comma-separated CIDRs; empty allows every address
    created_at      BIGINT NOT NULL
);

CREATE TABLE campaigns (
    id              BIGINT PRIMARY KEY,
    client_id       BIGINT NOT NULL REFERENCES clients(id),
    name            TEXT NOT NULL,
    type            TEXT NOT NULL DEFAULT 'sms',
    sender          TEXT NOT NULL DEFAULT '', -- the default `from`
    keyword         TEXT NOT NULL DEFAULT '', -- the master keyword
    callback_url    TEXT NOT NULL DEFAULT '',
    callback_format TEXT NOT NULL DEFAULT 'xml',
    opt_in          TEXT NOT NULL DEFAULT 'none',
    require_names   BIGINT NOT NULL DEFAULT 0,
    help_message    TEXT NOT NULL DEFAULT '',
    stop_message    TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    destroyed_at    BIGINT
);
CREATE INDEX campaigns_client ON campaigns(client_id);

CREATE TABLE keywords (
    shortcode   TEXT NOT NULL,
    keyword     TEXT NOT NULL,               -- upper-case
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
    master      BIGINT NOT NULL DEFAULT 0,
    rowid       BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order, as SQLite's rowid
    PRIMARY KEY (shortcode, keyword)
);
CREATE INDEX keywords_campaign ON keywords(campaign_id);

CREATE TABLE promos (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
    code        TEXT NOT NULL,               -- as created
    code_key    TEXT NOT NULL,               -- upper-case, for matching
    status      TEXT NOT NULL,               -- approved | pending
    uses        BIGINT NOT NULL DEFAULT 0,
    max_uses    BIGINT,
    starts      TEXT,                        -- YYYY-MM-DD
    ends        TEXT,
    created_at  BIGINT NOT NULL,
    rowid       BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order, as SQLite's rowid
    PRIMARY KEY (campaign_id, code_key)
);

-- One row per message; `id` is the API's message_id.
CREATE TABLE transactions (
    id           BIGINT PRIMARY KEY,
    hash         TEXT NOT NULL,
    client_id    BIGINT NOT NULL,
    campaign_id  BIGINT NOT NULL,
    sender       TEXT NOT NULL,             -- E.164 digits or short code
    from_name    TEXT NOT NULL,
    recipient    TEXT NOT NULL,             -- E.164 digits
    to_input     TEXT NOT NULL,             -- `to` as the caller sent it
    to_name      TEXT NOT NULL,
    kind         TEXT NOT NULL,             -- sms | mms
    body         TEXT,                      -- NULL once retention removed it
    subject      TEXT NOT NULL DEFAULT '',
    content_id   BIGINT,
    status       TEXT NOT NULL,             -- HELD | QUEUED | SENT | COMPLETE | FAILED
    code         BIGINT,                    -- final code once FAILED or COMPLETE
    carrier_id   BIGINT,
    callback     TEXT NOT NULL DEFAULT '',
    udp          TEXT NOT NULL DEFAULT '',  -- JSON array of [name, value]
    blast_id     BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX transactions_recipient ON transactions(recipient, created_at);

CREATE TABLE history (
    transaction_id BIGINT NOT NULL,
    at_ms          BIGINT NOT NULL,
    event          TEXT NOT NULL,
    rowid          BIGINT GENERATED ALWAYS AS IDENTITY -- insertion order, as SQLite's rowid
);
CREATE INDEX history_transaction ON history(transaction_id);

-- Delivery work: one row per transaction that still needs the worker.
-- stage: submit (hand to the carrier), receipt (a sandbox receipt is due),
-- await (waiting for a receipt until due_ms, then 601), held (double opt-in).
CREATE TABLE deliveries (
    transaction_id BIGINT PRIMARY KEY,
    stage          TEXT NOT NULL,
    due_ms         BIGINT NOT NULL,
    expires_ms     BIGINT NOT NULL,         -- the validity period ends here (601)
    attempts       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_due ON deliveries(due_ms);

-- Idempotent retries of transaction.send (24 hours).
CREATE TABLE request_ids (
    client_id      BIGINT NOT NULL,
    request_id     TEXT NOT NULL,
    transaction_id BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (client_id, request_id)
);

-- Opt-in status per (number, campaign); absent means UNSEEN.
CREATE TABLE opt_status (
    number      TEXT NOT NULL,
    campaign_id BIGINT NOT NULL,
    status      BIGINT NOT NULL,            -- 1 OPTEDIN, 0 GREY, -2 OPTEDOUT
    source      TEXT NOT NULL DEFAULT '',   -- api | keyword | operator | send
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (number, campaign_id)
);

-- What is known of a number: its carrier as last resolved, its handset.
CREATE TABLE users (
    number       TEXT PRIMARY KEY,
    carrier_id   BIGINT,
    handset_id   BIGINT,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE handsets (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_agent TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL
);

CREATE TABLE carriers (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    prefixes    TEXT NOT NULL DEFAULT '',   -- comma-separated E.164 digit prefixes
    served      BIGINT NOT NULL DEFAULT 1,
    mms         BIGINT NOT NULL DEFAULT 1,
    connector   TEXT NOT NULL DEFAULT 'sandbox'
);

CREATE TABLE ported_numbers (
    number     TEXT PRIMARY KEY,
    carrier_id BIGINT NOT NULL
);

CREATE TABLE blacklist (
    number     TEXT NOT NULL,
    carrier_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (number, carrier_id)
);

CREATE TABLE lists (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    client_id  BIGINT NOT NULL,
    name       TEXT NOT NULL,
    type       TEXT NOT NULL DEFAULT 'uploaded',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_used  BIGINT,
    destroyed_at BIGINT
);
CREATE INDEX lists_client ON lists(client_id);
-- Names are unique per client among live lists (spec section 5.5).
CREATE UNIQUE INDEX lists_live_name ON lists(client_id, name) WHERE destroyed_at IS NULL;

CREATE TABLE list_members (
    list_id    BIGINT NOT NULL,
    number     TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (list_id, number)
);

-- A list.send: its members become transactions in the background.
CREATE TABLE blasts (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    client_id   BIGINT NOT NULL,
    list_id     BIGINT NOT NULL,
    campaign_id BIGINT NOT NULL,
    request     TEXT NOT NULL,              -- JSON of the send's parameters
    callback    TEXT NOT NULL DEFAULT '',
    total       BIGINT NOT NULL DEFAULT 0,
    queued      BIGINT NOT NULL DEFAULT 0,
    skipped     BIGINT NOT NULL DEFAULT 0,
    sent        BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    cursor      TEXT NOT NULL DEFAULT '',   -- last member queued
    state       TEXT NOT NULL DEFAULT 'queueing', -- queueing | sending | done
    created_at  BIGINT NOT NULL
);
-- The blast worker looks at unfinished blasts only.
CREATE INDEX blasts_active ON blasts(id) WHERE state <> 'done';

CREATE TABLE media (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, -- content_id
    client_id   BIGINT,                     -- NULL for inbound media
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,              -- image | audio | video
    mime        TEXT NOT NULL,              -- sniffed from the bytes
    filename    TEXT NOT NULL,
    size        BIGINT NOT NULL,
    token       TEXT NOT NULL UNIQUE,       -- the smart URL's token
    base_url    TEXT NOT NULL,              -- public base URL when created
    sha256      TEXT NOT NULL,
    sender      TEXT,                       -- the number that sent it (inbound)
    created_at  BIGINT NOT NULL,
    destroyed_at BIGINT
);
CREATE INDEX media_client ON media(client_id);

CREATE TABLE inbound (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    sender      TEXT NOT NULL,              -- the phone
    shortcode   TEXT NOT NULL,
    body        TEXT,
    subject     TEXT NOT NULL DEFAULT '',
    campaign_id BIGINT,
    carrier_id  BIGINT,
    created_at  BIGINT NOT NULL
);

-- The campaign that last messaged a number from a short code, for routing
-- replies without a keyword.
CREATE TABLE conversations (
    shortcode   TEXT NOT NULL,
    number      TEXT NOT NULL,
    campaign_id BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (shortcode, number)
);

-- Callbacks to clients' applications, kept until delivered or given up.
CREATE TABLE webhooks (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    client_id    BIGINT NOT NULL,
    url          TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    due_ms       BIGINT NOT NULL,
    last_error   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL
);
CREATE INDEX webhooks_due ON webhooks(due_ms);

-- Bumped by every operator change so running servers drop their caches.
CREATE TABLE generation (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);

-- Operator actions and opt changes, for opt-out proof.
CREATE TABLE audit (
    id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
