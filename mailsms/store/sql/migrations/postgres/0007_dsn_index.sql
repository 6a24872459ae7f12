-- Only messages with a DSN due are ever looked up by it: a partial index keeps that lookup
-- O(due) instead of a scan of every message.
DROP INDEX messages_dsn_due;
CREATE INDEX messages_dsn_due ON messages (updated_at) WHERE dsn_due IS NOT NULL;
CREATE INDEX messages_delay_due ON messages (created_at)
    WHERE notify_delay = 1 AND delay_notified = 0;
