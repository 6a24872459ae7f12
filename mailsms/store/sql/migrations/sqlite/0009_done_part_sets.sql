-- A set that completed keeps its row and parts until reassembly_timeout has passed since
-- (done_at, the id of the inbound row it became in inbound_id). An SMSC that lost our
-- deliver_sm_resp for a part sends that part again after the rebind; with the set deleted,
-- the retry started a new set that the sweep later stored as an incomplete duplicate SMS.
-- Now a part identical to the stored one (same key, seq and text) of a done set is
-- recognised as the retry it is; a different text under the same reference is a new message
-- reusing it, and starts the set afresh.
ALTER TABLE inbound_part_sets ADD COLUMN done_at REAL;
ALTER TABLE inbound_part_sets ADD COLUMN inbound_id TEXT;
