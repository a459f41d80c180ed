-- Work that one node at a time may do (an SMPP bind): the node holding a
-- lease renews it; once it lapses, another node takes it over.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,            -- smpp:<carrier_id>:<connection>
    holder     TEXT NOT NULL,               -- the holding node's name
    expires_ms BIGINT NOT NULL
);

-- Nodes take transaction ids from one sequence (SQLite's one writer counts
-- on from the largest id instead); it starts past any id already stored.
CREATE SEQUENCE transaction_ids START 100000001;
SELECT setval('transaction_ids', GREATEST((SELECT MAX(id) FROM transactions), 100000000));
