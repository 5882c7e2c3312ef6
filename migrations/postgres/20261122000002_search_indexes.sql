-- `user list` orders, pages (--after) and prefix-searches (--search) live users by
-- lower(username) compared bytewise (COLLATE "C"), so one btree range scan serves every page
-- of a million-user table. Emails are prefix-searched through their own bytewise index.
CREATE INDEX users_username_c_live_idx ON users ((lower(username) COLLATE "C")) WHERE deleted_at IS NULL;
CREATE INDEX passports_email_c_idx ON passports ((value COLLATE "C")) WHERE kind = 'email';
