-- A username may not have the shape of another way to name a user: a uuid would be taken as
-- a user id (32 hex digits, or 36 with hyphens), so a command given that name would act on a
-- different user. Emails ('@') and phone numbers ('+') are already outside the alphabet
-- (users_username_format). NOT VALID: rows written before this rule are not re-checked (an
-- upgrade never fails on old data), every new or renamed row is.
ALTER TABLE users ADD CONSTRAINT users_username_not_an_id CHECK (
    username !~* '^[0-9a-f]{32}$'
    AND username !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
) NOT VALID;
