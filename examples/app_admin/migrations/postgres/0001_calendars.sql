-- The example application's own table: one or more calendars per internal user.
CREATE TABLE app_calendars (
    id      UUID PRIMARY KEY,
    -- RESTRICT: the calendar hook removes a user's calendars inside the delete transaction;
    -- a delete that skipped it fails here instead of leaving orphans.
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    name    TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200)
);
CREATE INDEX app_calendars_user_id ON app_calendars (user_id);
