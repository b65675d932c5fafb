-- Step 4: more meeting settings. Who may share a screen ('everyone' or 'hosts'), and from
-- how many participants on newcomers join muted (0: never).

ALTER TABLE meetings ADD COLUMN share TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE meetings ADD COLUMN muted_above INTEGER NOT NULL DEFAULT 0;

-- A meeting's title for people (the room name in links never changes), and each registered
-- invite's text, so that its owner can copy a live link again.
ALTER TABLE meetings ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE invites ADD COLUMN text TEXT;
-- Whom an invite was made for, when its owner named one person: a host may then revoke it
-- along with removing them (other invites are shared by many).
ALTER TABLE invites ADD COLUMN for_whom TEXT;
-- When the meeting opens (Unix seconds; 0: always open): guests who come earlier wait on
-- the invite page, which counts down; hosts may come in at any time.
ALTER TABLE meetings ADD COLUMN opens_at INTEGER NOT NULL DEFAULT 0;
