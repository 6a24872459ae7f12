-- PostgreSQL versions of the queries whose SQL differs. Several gateway processes may share
-- one database: FOR UPDATE SKIP LOCKED lets each claim different rows without waiting.

-- name: claim
-- Each branch walks its index and stops at the limit (no sort of every due row); FOR UPDATE
-- is not allowed in a UNION, hence one CTE per branch.
WITH queued AS (
    SELECT id FROM messages WHERE state = 'queued' AND next_attempt_at <= :now
    ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED
), abandoned AS (
    SELECT id FROM messages WHERE state = 'submitting' AND lease_expires_at < :now
    LIMIT :limit FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM queued UNION ALL SELECT id FROM abandoned LIMIT :limit
)
UPDATE messages AS m SET state = 'submitting', lease_owner = :owner,
    lease_expires_at = :lease_expires_at, attempts = m.attempts + 1, updated_at = :now
FROM due WHERE m.id = due.id
-- Only what a submit needs (not the returned original or the DSN parameters).
RETURNING m.id, m.state, m.origin, m.sender, m.recipient, m.source_addr, m.carrier, m.text,
    m.encoding, m.subject, m.mail_message_id, m.created_at, m.updated_at, m.expires_at,
    m.attempts, m.next_attempt_at, m.last_error, m.segments;

-- name: get_parts_many
SELECT * FROM parts WHERE message_id = ANY(:ids) ORDER BY message_id, seq;

-- name: claim_mail
WITH queued AS (
    SELECT id FROM outbound_mail WHERE state = 'queued' AND next_attempt_at <= :now
    ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED
), abandoned AS (
    SELECT id FROM outbound_mail WHERE state = 'sending' AND lease_expires_at < :now
    LIMIT :limit FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM queued UNION ALL SELECT id FROM abandoned LIMIT :limit
)
UPDATE outbound_mail AS m SET state = 'sending', lease_owner = :owner,
    lease_expires_at = :lease_expires_at, attempts = m.attempts + 1, updated_at = :now
FROM due WHERE m.id = due.id
RETURNING m.*;
