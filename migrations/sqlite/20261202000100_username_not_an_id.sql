-- A username may not have the shape of another way to name a user: a uuid would be taken as
-- a user id (32 hex digits, or 36 with hyphens), so a command given that name would act on a
-- different user. Emails ('@') and phone numbers ('+') are already outside the alphabet
-- (users_username_format). SQLite cannot add a CHECK to an existing table, so two triggers
-- enforce it; the message starts with the constraint name PostgreSQL uses.
CREATE TRIGGER users_username_not_an_id_insert BEFORE INSERT ON users
    WHEN (length(NEW.username) = 32 AND NEW.username NOT GLOB '*[^0-9A-Fa-f]*')
      OR (length(NEW.username) = 36
          AND substr(NEW.username, 9, 1) = '-' AND substr(NEW.username, 14, 1) = '-'
          AND substr(NEW.username, 19, 1) = '-' AND substr(NEW.username, 24, 1) = '-'
          AND length(replace(NEW.username, '-', '')) = 32
          AND replace(NEW.username, '-', '') NOT GLOB '*[^0-9A-Fa-f]*')
BEGIN
    SELECT RAISE(ABORT, 'users_username_not_an_id: a username may not have the shape of a user id');
END;
CREATE TRIGGER users_username_not_an_id_update BEFORE UPDATE OF username ON users
    WHEN (length(NEW.username) = 32 AND NEW.username NOT GLOB '*[^0-9A-Fa-f]*')
      OR (length(NEW.username) = 36
          AND substr(NEW.username, 9, 1) = '-' AND substr(NEW.username, 14, 1) = '-'
          AND substr(NEW.username, 19, 1) = '-' AND substr(NEW.username, 24, 1) = '-'
          AND length(replace(NEW.username, '-', '')) = 32
          AND replace(NEW.username, '-', '') NOT GLOB '*[^0-9A-Fa-f]*')
BEGIN
    SELECT RAISE(ABORT, 'users_username_not_an_id: a username may not have the shape of a user id');
END;
