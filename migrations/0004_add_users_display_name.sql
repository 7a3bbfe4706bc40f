-- Step 1 of 3 for a required column: add it nullable. Adding a nullable column
-- without a default only touches the catalog, so the lock is brief and the app
-- keeps running; new code starts writing display_name from here on.
ALTER TABLE users ADD COLUMN display_name text;
