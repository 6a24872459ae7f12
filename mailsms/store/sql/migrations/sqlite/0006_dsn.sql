-- RFC 3461 requests per message, and the notification each terminal transition makes due.
ALTER TABLE messages ADD COLUMN notify_failure INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN notify_delay INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN notify_success INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN dsn_due TEXT;
ALTER TABLE messages ADD COLUMN delay_notified INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_dsn_due ON messages (dsn_due);

-- Delivery reports whose carrier id we do not know (yet): a report can race ahead of the
-- submit response that tells us the id. Kept for dlr.unknown_keep, applied on submit.
CREATE TABLE pending_reports (
    carrier TEXT NOT NULL,
    carrier_id TEXT NOT NULL,
    part_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (carrier, carrier_id)
);
