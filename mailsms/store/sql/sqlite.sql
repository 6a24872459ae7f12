-- SQLite versions of the queries whose SQL differs. The SQLite store has one writer, so a
-- plain UPDATE ... RETURNING over the due rows is an atomic claim.

-- name: claim
-- Due messages first, then leases left by a crashed worker. Each branch walks its index in
-- order and stops at the limit: no gathering and sorting every due row on each claim.
UPDATE messages SET state = 'submitting', lease_owner = :owner,
    lease_expires_at = :lease_expires_at, attempts = attempts + 1, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id FROM messages WHERE state = 'queued' AND next_attempt_at <= :now
        ORDER BY next_attempt_at LIMIT :limit
    )
    UNION ALL
    SELECT id FROM (
        SELECT id FROM messages WHERE state = 'submitting' AND lease_expires_at < :now
        LIMIT :limit
    )
    LIMIT :limit
)
-- Only what a submit needs (not the returned original or the DSN parameters).
RETURNING id, state, origin, sender, recipient, source_addr, carrier, text, encoding, subject,
    mail_message_id, created_at, updated_at, expires_at, attempts, next_attempt_at,
    last_error, segments;

-- name: get_parts_many
SELECT * FROM parts WHERE message_id IN (SELECT value FROM json_each(:ids))
ORDER BY message_id, seq;

-- name: claim_mail
UPDATE outbound_mail SET state = 'sending', lease_owner = :owner,
    lease_expires_at = :lease_expires_at, attempts = attempts + 1, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id FROM outbound_mail WHERE state = 'queued' AND next_attempt_at <= :now
        ORDER BY next_attempt_at LIMIT :limit
    )
    UNION ALL
    SELECT id FROM (
        SELECT id FROM outbound_mail WHERE state = 'sending' AND lease_expires_at < :now
        LIMIT :limit
    )
    LIMIT :limit
)
RETURNING *;
