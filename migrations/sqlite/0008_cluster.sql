-- Work that one node at a time may do (an SMPP bind): the node holding a
-- lease renews it; once it lapses, another node takes it over.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,            -- smpp:<carrier_id>:<connection>
    holder     TEXT NOT NULL,               -- the holding node's name
    expires_ms INTEGER NOT NULL
);
