-- The next concatenation reference per destination, so references do not repeat within
-- 256 (or 65536) consecutive long messages to a number, across restarts and processes.
CREATE TABLE concat_refs (
    destination TEXT PRIMARY KEY,
    next_ref BIGINT NOT NULL
);
