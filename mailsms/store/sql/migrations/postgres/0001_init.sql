-- The outbound queue: one row per (mail, recipient), its parts, its events, carrier ids.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    origin TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    original_recipient TEXT,
    source_addr TEXT,
    carrier TEXT,
    text TEXT NOT NULL,
    encoding TEXT NOT NULL,
    shift_table TEXT,
    segments INTEGER NOT NULL,
    subject TEXT,
    mail_message_id TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    last_error TEXT
);
CREATE INDEX messages_due ON messages (state, next_attempt_at);

CREATE TABLE parts (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    udh BYTEA NOT NULL,
    payload BYTEA NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    carrier_id TEXT,
    error TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (message_id, seq)
);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX events_message ON events (message_id, id);

CREATE TABLE carrier_ids (
    carrier TEXT NOT NULL,
    carrier_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (carrier, carrier_id)
);
