-- SQLite stores opt statuses and users in their key's order from this
-- version on (WITHOUT ROWID). PostgreSQL has no such choice and nothing
-- changes here; the version stays in step with SQLite's, which transfers
-- between the two stores compare.
SELECT 1;
