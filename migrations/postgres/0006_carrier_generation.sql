-- A change counter of its own for carriers, ported numbers and blacklists:
-- reloading millions of ported numbers is worth doing only when they change,
-- not on every client or campaign change.
ALTER TABLE generation ADD COLUMN carriers BIGINT NOT NULL DEFAULT 0;
