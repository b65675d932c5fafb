-- Step 4: more meeting settings. Who may share a screen ('everyone' or 'hosts'), and from
-- how many participants on newcomers join muted (0: never).

ALTER TABLE meetings ADD COLUMN share TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE meetings ADD COLUMN muted_above INTEGER NOT NULL DEFAULT 0;
