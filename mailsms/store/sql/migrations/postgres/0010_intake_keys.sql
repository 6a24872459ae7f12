-- What an intake without a reply channel has already queued: an IMAP message is marked
-- \Seen (or moved) only after its messages are committed, so a crash between the two would
-- queue it again on the next poll. Its key (account, UIDVALIDITY, UID) is committed with the
-- messages; a key already here means "queued before, only the flag is missing".
CREATE TABLE intake_keys (
    key TEXT PRIMARY KEY,
    ids TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX intake_keys_created_at ON intake_keys (created_at);
