-- Named queries shared by every store. Parameters are :name; the PostgreSQL store rewrites
-- them to %(name)s. A dialect file (sqlite.sql, postgres.sql) overrides a query by name.

-- name: insert_message
INSERT INTO messages (id, state, origin, sender, recipient, original_recipient, source_addr,
    carrier, text, encoding, shift_table, segments, subject, mail_message_id, meta,
    created_at, updated_at, expires_at, attempts, next_attempt_at, lease_owner, lease_expires_at,
    notify_failure, notify_delay, notify_success, dsn, original)
VALUES (:id, :state, :origin, :sender, :recipient, :original_recipient, :source_addr,
    :carrier, :text, :encoding, :shift_table, :segments, :subject, :mail_message_id, :meta,
    :now, :now, :expires_at, :attempts, :now, :lease_owner, :lease_expires_at,
    :notify_failure, :notify_delay, :notify_success, :dsn, :original);

-- name: insert_part
INSERT INTO parts (message_id, seq, text, udh, payload, size, state, updated_at)
VALUES (:message_id, :seq, :text, :udh, :payload, :size, 'pending', :now);

-- name: insert_event
INSERT INTO events (message_id, at, state, reason, source)
VALUES (:message_id, :at, :state, :reason, :source);

-- name: get_message
SELECT * FROM messages WHERE id = :id;

-- name: get_parts
SELECT * FROM parts WHERE message_id = :id ORDER BY seq;

-- name: get_events
SELECT at, state, reason, source FROM events WHERE message_id = :id ORDER BY id;

-- name: list_messages
SELECT * FROM messages ORDER BY id DESC LIMIT :limit;

-- name: list_messages_in_state
SELECT * FROM messages WHERE state = :state ORDER BY id DESC LIMIT :limit;

-- name: mark_submitted
UPDATE messages SET state = 'submitted', carrier = :carrier, updated_at = :now,
    lease_owner = NULL, lease_expires_at = NULL, last_error = NULL
WHERE id = :id AND state = 'submitting' AND lease_owner = :owner;

-- name: mark_delivered_on_submit
UPDATE messages SET state = 'delivered', carrier = :carrier, updated_at = :now,
    lease_owner = NULL, lease_expires_at = NULL, last_error = NULL,
    dsn_due = CASE WHEN notify_success = 1 THEN 'delivered' ELSE dsn_due END
WHERE id = :id AND state = 'submitting' AND lease_owner = :owner;

-- name: mark_part_delivered
UPDATE parts SET state = 'delivered', carrier_id = :carrier_id, updated_at = :now
WHERE message_id = :message_id AND seq = :seq;

-- name: mark_part_submitted
UPDATE parts SET state = 'submitted', carrier_id = :carrier_id, updated_at = :now
WHERE message_id = :message_id AND (seq = :seq OR :seq = 0);

-- name: insert_carrier_id
INSERT INTO carrier_ids (carrier, carrier_id, message_id, seq, created_at)
VALUES (:carrier, :carrier_id, :message_id, :seq, :now)
ON CONFLICT (carrier, carrier_id) DO UPDATE
SET message_id = excluded.message_id, seq = excluded.seq, created_at = excluded.created_at;

-- name: mark_retry
UPDATE messages SET state = 'queued', next_attempt_at = :next_attempt_at, updated_at = :now,
    lease_owner = NULL, lease_expires_at = NULL, last_error = :reason
WHERE id = :id AND state = 'submitting' AND lease_owner = :owner;

-- name: release
UPDATE messages SET state = 'queued', attempts = attempts - 1, updated_at = :now,
    lease_owner = NULL, lease_expires_at = NULL
WHERE id = :id AND state = 'submitting' AND lease_owner = :owner;

-- name: finish_leased
UPDATE messages SET state = :state, updated_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, last_error = :reason, carrier = COALESCE(:carrier, carrier),
    dsn_due = CASE
        WHEN :state IN ('failed', 'expired') AND notify_failure = 1 THEN 'failed'
        WHEN :state = 'delivered' AND notify_success = 1 THEN 'delivered'
        ELSE dsn_due END
WHERE id = :id AND state = 'submitting' AND lease_owner = :owner;

-- name: finish_parts
UPDATE parts SET state = :part_state, updated_at = :now, error = :reason
WHERE message_id = :id AND state IN ('pending', 'submitted');

-- name: set_state_from
UPDATE messages SET state = :state, updated_at = :now, last_error = :reason
WHERE id = :id AND state = :from_state;

-- name: requeue
UPDATE messages SET state = 'queued', updated_at = :now, next_attempt_at = :now,
    attempts = 0, expires_at = :expires_at, last_error = NULL, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = :id AND state IN ('failed', 'expired', 'cancelled');

-- name: reset_parts
UPDATE parts SET state = 'pending', carrier_id = NULL, error = NULL, updated_at = :now
WHERE message_id = :id;

-- name: find_part_by_carrier_id
SELECT message_id, seq FROM carrier_ids WHERE carrier = :carrier AND carrier_id = :carrier_id;

-- name: update_part_state
UPDATE parts SET state = :state, error = :error, updated_at = :now
WHERE message_id = :message_id AND (seq = :seq OR :seq = 0);

-- name: part_states
SELECT state FROM parts WHERE message_id = :id;

-- name: set_state_from_submitted
UPDATE messages SET state = :state, updated_at = :now, last_error = :reason,
    dsn_due = CASE
        WHEN :state IN ('failed', 'expired') AND notify_failure = 1 THEN 'failed'
        WHEN :state = 'delivered' AND notify_success = 1 THEN 'delivered'
        ELSE dsn_due END
WHERE id = :id AND state IN ('submitted', 'submitting');

-- name: queue_depth
SELECT state, COUNT(*) AS n FROM messages GROUP BY state;

-- name: next_due
SELECT MIN(next_attempt_at) AS t FROM messages WHERE state = 'queued';

-- name: next_lease_expiry
SELECT MIN(lease_expires_at) AS t FROM messages WHERE state = 'submitting';

-- name: ping
SELECT 1 AS ok;

-- name: find_inbound
SELECT id FROM inbound WHERE carrier = :carrier AND carrier_id = :carrier_id;

-- name: insert_inbound
INSERT INTO inbound (id, carrier, carrier_id, sender, recipient, text, segments, incomplete,
    received_at, created_at, state)
VALUES (:id, :carrier, :carrier_id, :sender, :recipient, :text, :segments, :incomplete,
    :received_at, :now, 'received');

-- name: list_inbound
SELECT * FROM inbound ORDER BY id DESC LIMIT :limit;

-- name: find_optout
SELECT number, at, source FROM optouts WHERE number = :number;

-- name: delete_optout
DELETE FROM optouts WHERE number = :number;

-- name: insert_optout
INSERT INTO optouts (number, at, source) VALUES (:number, :at, :source);

-- name: list_optouts
SELECT number, at, source FROM optouts ORDER BY at DESC;

-- name: allocate_refs
INSERT INTO concat_refs (destination, next_ref) VALUES (:destination, :start + :count)
ON CONFLICT (destination) DO UPDATE SET next_ref = concat_refs.next_ref + :count
RETURNING next_ref;

-- name: insert_mail
INSERT INTO outbound_mail (id, kind, ref_id, mail_from, rcpt_to, data, state, attempts,
    next_attempt_at, expires_at, created_at, updated_at)
VALUES (:id, :kind, :ref_id, :mail_from, :rcpt_to, :data, 'queued', 0, :now, :expires_at,
    :now, :now);

-- name: mail_sent
UPDATE outbound_mail SET state = 'sent', updated_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, last_error = :detail
WHERE id = :id AND lease_owner = :owner;

-- name: mail_retry
UPDATE outbound_mail SET state = 'queued', next_attempt_at = :next_attempt_at,
    updated_at = :now, lease_owner = NULL, lease_expires_at = NULL, last_error = :error
WHERE id = :id AND lease_owner = :owner;

-- name: mail_failed
UPDATE outbound_mail SET state = 'failed', updated_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, last_error = :error
WHERE id = :id AND lease_owner = :owner;

-- name: mail_for_ref
SELECT id, kind, mail_from, rcpt_to, state, attempts, last_error, created_at, updated_at
FROM outbound_mail WHERE ref_id = :ref_id ORDER BY created_at;

-- name: mail_next_due
SELECT MIN(next_attempt_at) AS t FROM outbound_mail WHERE state = 'queued';

-- name: insert_conversation
INSERT INTO conversations (id, email, phone, our_number, message_id, subject, refs,
    last_text, created_at, last_at)
VALUES (:id, :email, :phone, :our_number, :message_id, :subject, :refs, :last_text,
    :now, :now);

-- name: find_conversation
SELECT * FROM conversations
WHERE phone = :phone AND (our_number = :our_number OR our_number = '') AND last_at >= :since
ORDER BY last_at DESC LIMIT 1;

-- name: conversation_for_mail
SELECT c.* FROM conversation_mail m JOIN conversations c ON c.id = m.conversation_id
WHERE m.message_id = :message_id;

-- name: insert_conversation_mail
INSERT INTO conversation_mail (message_id, conversation_id) VALUES (:message_id, :conversation_id)
ON CONFLICT (message_id) DO NOTHING;

-- name: touch_conversation
UPDATE conversations SET last_at = :now WHERE id = :id;

-- name: inbound_pending
SELECT * FROM inbound WHERE state = 'received' ORDER BY id LIMIT :limit;

-- name: get_inbound
SELECT * FROM inbound WHERE id = :id;

-- name: set_inbound_state
UPDATE inbound SET state = :state, routed_to = :routed_to, conversation_id = :conversation_id,
    last_error = :error
WHERE id = :id;

-- name: set_message_dsn
UPDATE messages SET dsn = :dsn, original = :original WHERE id = :id;

-- name: dsn_due
SELECT * FROM messages WHERE dsn_due IS NOT NULL ORDER BY updated_at LIMIT :limit;

-- name: delay_due
SELECT * FROM messages
WHERE notify_delay = 1 AND delay_notified = 0 AND created_at <= :before
  AND state IN ('queued', 'submitting', 'submitted')
ORDER BY created_at LIMIT :limit;

-- name: clear_dsn_due
UPDATE messages SET dsn_due = NULL WHERE id = :id AND dsn_due = :action;

-- name: mark_delay_notified
UPDATE messages SET delay_notified = 1 WHERE id = :id;

-- name: stale_submitted
SELECT id FROM messages WHERE state = 'submitted' AND updated_at <= :before LIMIT :limit;

-- name: insert_pending_report
INSERT INTO pending_reports (carrier, carrier_id, part_state, reason, source, received_at)
VALUES (:carrier, :carrier_id, :part_state, :reason, :source, :now)
ON CONFLICT (carrier, carrier_id) DO UPDATE SET part_state = excluded.part_state,
    reason = excluded.reason, source = excluded.source, received_at = excluded.received_at;

-- name: take_pending_report
DELETE FROM pending_reports WHERE carrier = :carrier AND carrier_id = :carrier_id
RETURNING part_state, reason, source;

-- name: purge_pending_reports
DELETE FROM pending_reports WHERE received_at < :before;

-- name: set_inbound_result
UPDATE inbound SET state = :state, last_error = :error WHERE id = :id;

-- name: insert_event_only
INSERT INTO events (message_id, at, state, reason, source)
VALUES (:message_id, :at, :state, :reason, :source);

-- Parts of multi-part SMS from phones (mailsms/store/fragments.py). A set is keyed by
-- (carrier, sender, recipient, ref, total).

-- name: touch_inbound_part_set
-- The upsert locks the set's row until the commit: transactions adding parts to the same set
-- take turns, so the one adding the last part sees every other.
INSERT INTO inbound_part_sets (carrier, sender, recipient, ref, total, last_at)
VALUES (:carrier, :sender, :recipient, :ref, :total, :received_at)
ON CONFLICT (carrier, sender, recipient, ref, total) DO UPDATE
SET last_at = CASE WHEN excluded.last_at > inbound_part_sets.last_at
    THEN excluded.last_at ELSE inbound_part_sets.last_at END;

-- name: insert_inbound_part
INSERT INTO inbound_parts (carrier, sender, recipient, ref, total, seq, text, carrier_id,
    received_at)
VALUES (:carrier, :sender, :recipient, :ref, :total, :seq, :text, :carrier_id, :received_at)
ON CONFLICT (carrier, sender, recipient, ref, total, seq) DO NOTHING;

-- name: inbound_parts_of_set
SELECT seq, text, carrier_id, received_at FROM inbound_parts
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total
ORDER BY seq;

-- name: delete_inbound_parts_of_set
DELETE FROM inbound_parts
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total;

-- name: inbound_part_set_state
SELECT done_at, inbound_id FROM inbound_part_sets
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total;

-- name: inbound_part_text
SELECT text FROM inbound_parts
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total AND seq = :seq;

-- name: finish_inbound_part_set
-- The set became inbound row :inbound_id; its row and parts stay until the sweep, so that a
-- retried part is recognised (migration 0009).
UPDATE inbound_part_sets SET done_at = :done_at, inbound_id = :inbound_id
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total;

-- name: reopen_inbound_part_set
-- A new message reusing a done set's reference: the set waits for parts again.
UPDATE inbound_part_sets SET done_at = NULL, inbound_id = NULL, last_at = :received_at
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total;

-- name: stale_inbound_part_sets
SELECT carrier, sender, recipient, ref, total FROM inbound_part_sets
WHERE last_at < :before AND done_at IS NULL ORDER BY last_at LIMIT :limit;

-- name: take_stale_inbound_part_set
-- Re-checks last_at: a part committed since the set was listed keeps it waiting.
DELETE FROM inbound_part_sets
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total AND last_at < :before AND done_at IS NULL;

-- name: old_done_inbound_part_sets
SELECT carrier, sender, recipient, ref, total FROM inbound_part_sets
WHERE done_at < :before LIMIT :limit;

-- name: take_old_done_inbound_part_set
-- Re-checks done_at: a set reopened since it was listed is no longer done.
DELETE FROM inbound_part_sets
WHERE carrier = :carrier AND sender = :sender AND recipient = :recipient AND ref = :ref
  AND total = :total AND done_at < :before;

-- name: purge_messages
DELETE FROM messages WHERE id IN (
    SELECT id FROM messages
    WHERE state IN ('delivered', 'failed', 'expired', 'rejected', 'cancelled')
      AND updated_at < :before AND dsn_due IS NULL
    LIMIT :limit
);

-- name: purge_mail
DELETE FROM outbound_mail WHERE id IN (
    SELECT id FROM outbound_mail WHERE state IN ('sent', 'failed') AND updated_at < :before
    LIMIT :limit
);

-- name: purge_inbound
DELETE FROM inbound WHERE id IN (
    SELECT id FROM inbound WHERE state <> 'received' AND state <> 'queued'
      AND created_at < :before
    LIMIT :limit
);

-- name: purge_conversations
DELETE FROM conversations WHERE id IN (
    SELECT id FROM conversations WHERE last_at < :before LIMIT :limit
);

-- name: purge_conversation_mail
DELETE FROM conversation_mail WHERE conversation_id NOT IN (SELECT id FROM conversations);

-- Intake keys (migration 0010): what an IMAP mailbox has already handed us.

-- name: insert_intake_key
INSERT INTO intake_keys (key, ids, created_at) VALUES (:key, :ids, :now)
ON CONFLICT (key) DO NOTHING;

-- name: find_intake_key
SELECT ids FROM intake_keys WHERE key = :key;

-- name: purge_intake_keys
DELETE FROM intake_keys WHERE key IN (
    SELECT key FROM intake_keys WHERE created_at < :before LIMIT :limit
);
