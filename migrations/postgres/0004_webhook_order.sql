-- Callbacks to one URL are posted in the order they were queued: a row waits
-- while an earlier one to the same URL is still pending.
CREATE INDEX webhooks_url ON webhooks(url, id);
