-- Numbers that asked not to be texted (STOP, carrier opt-out reports, the operator).
CREATE TABLE optouts (
    number TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL
);
