-- SMS from phones, stored before the carrier is acknowledged; deduplicated on the carrier id.
CREATE TABLE inbound (
    id TEXT PRIMARY KEY,
    carrier TEXT NOT NULL,
    carrier_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    segments INTEGER NOT NULL,
    incomplete INTEGER NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    UNIQUE (carrier, carrier_id)
);
