-- Mail that mailsms itself sends (SMS turned into mail, bounces): a durable outgoing queue,
-- so a smarthost outage loses nothing.
CREATE TABLE outbound_mail (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    ref_id TEXT,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,
    data BYTEA NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX outbound_mail_due ON outbound_mail (state, next_attempt_at);
CREATE INDEX outbound_mail_ref ON outbound_mail (ref_id);

-- Who wrote to which phone from which of our numbers: where a reply SMS goes.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    our_number TEXT NOT NULL,
    message_id TEXT,
    subject TEXT,
    refs TEXT NOT NULL DEFAULT '',
    last_text TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX conversations_phone ON conversations (phone, our_number, last_at);

-- The Message-IDs of mail we rendered from SMS, so a reply from a mail client (In-Reply-To /
-- References) finds its conversation and keeps its sender id.
CREATE TABLE conversation_mail (
    message_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL
);

ALTER TABLE inbound ADD COLUMN routed_to TEXT;
ALTER TABLE inbound ADD COLUMN conversation_id TEXT;
ALTER TABLE inbound ADD COLUMN last_error TEXT;
ALTER TABLE messages ADD COLUMN dsn TEXT NOT NULL DEFAULT '{}';
ALTER TABLE messages ADD COLUMN original BYTEA;
