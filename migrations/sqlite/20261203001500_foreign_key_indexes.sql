-- Deleting a user (admin delete, GDPR purge, merge) deletes or detaches the rows that refer
-- to it. Without an index on the referring column, each of those cascades and each of the
-- purge's own deletes reads the whole table: harmless on an empty invites table, a full scan
-- per deleted user on an instance with millions of invites and outbox rows. Partial indexes:
-- most of these columns are NULL on most rows.
CREATE INDEX invites_invitee_idx ON invites (invitee_user_id) WHERE invitee_user_id IS NOT NULL;
CREATE INDEX invites_accepted_by_idx ON invites (accepted_by_user_id) WHERE accepted_by_user_id IS NOT NULL;
CREATE INDEX invites_person_idx ON invites (person_id) WHERE person_id IS NOT NULL;
-- Deleting a role cascades to its invites and memberships.
CREATE INDEX invites_role_idx ON invites (role_id);
CREATE INDEX memberships_role_idx ON memberships (role_id);
-- The purge deletes a user's outbox rows by user, by invite and by recipient address.
CREATE INDEX notification_outbox_user_idx ON notification_outbox (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX notification_outbox_invite_idx ON notification_outbox (invite_id) WHERE invite_id IS NOT NULL;
CREATE INDEX notification_outbox_recipient_idx ON notification_outbox (recipient);
