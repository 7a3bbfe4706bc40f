-- Step 3 of 3: make display_name required now that every row has one.
-- stackwright:allow adding-not-nullable-field because users is small (thousands of rows), so the validating scan under the ACCESS EXCLUSIVE lock takes milliseconds, and lock_timeout bounds the wait; a large table would first add CHECK (display_name IS NOT NULL) NOT VALID and VALIDATE it in a later migration
ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;
