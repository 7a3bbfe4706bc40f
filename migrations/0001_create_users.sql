-- Customer accounts for the shop. Emails are unique regardless of case, so
-- "Ada@example.com" and "ada@example.com" cannot both sign up.
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL CHECK (email LIKE '%_@_%'),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Built in the same transaction that creates the (empty) table, so a plain
-- CREATE INDEX locks nothing anyone else is using.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
