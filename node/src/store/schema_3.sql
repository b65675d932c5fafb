-- Step 3: meeting settings an owner changes on /account. With the lobby on, guests wait
-- until a host admits them.

ALTER TABLE meetings ADD COLUMN lobby INTEGER NOT NULL DEFAULT 0;
