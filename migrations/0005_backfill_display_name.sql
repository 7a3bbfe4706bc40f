-- Step 2 of 3: give existing users a display name (the part of their email
-- before the @). Only rows still missing one are touched, so running the
-- statement again is harmless.
UPDATE users
SET display_name = split_part(email, '@', 1)
WHERE display_name IS NULL;
