-- The parts of a multi-part SMS from a phone, each stored before its deliver_sm_resp, so a
-- crash between acknowledging part 1 and receiving part 3 loses nothing. A retried part is an
-- idempotent insert (the unique key). One row per set that is still waiting for parts: its
-- upsert serialises the transactions that add parts to the same set (two parts committed
-- concurrently must not each miss the other), and last_at lets the sweep find stale sets.
CREATE TABLE inbound_part_sets (
    carrier TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    ref INTEGER NOT NULL,
    total INTEGER NOT NULL,
    last_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (carrier, sender, recipient, ref, total)
);
CREATE INDEX inbound_part_sets_last_at ON inbound_part_sets (last_at);

CREATE TABLE inbound_parts (
    carrier TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    ref INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    carrier_id TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (carrier, sender, recipient, ref, total, seq)
);
