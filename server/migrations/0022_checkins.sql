-- Daily check-in (issue 17 item 3; README "Daily check-in"). One row per member per local
-- day (SURGE_TIME_ZONE): the UNIQUE (member_id, local_day) is the last word on "at most once
-- a day" whatever runs concurrently, and UNIQUE (member_id, idempotency_key) makes a retry
-- find its check-in. Each row carries the streak it reached and the points it credited (the
-- lot and the ledger entry, reference 'checkin:<day>', are written in the same transaction).
-- A new table: existing data needs no backfill.

CREATE TABLE checkins (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    member_id       uuid NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    local_day       date NOT NULL,
    idempotency_key text NOT NULL CHECK (idempotency_key <> ''),
    streak          integer NOT NULL CHECK (streak > 0),
    points          bigint NOT NULL CHECK (points > 0),
    ledger_entry_id uuid NOT NULL REFERENCES ledger_entries (id) ON DELETE CASCADE,
    checked_in_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT checkins_once_a_day UNIQUE (member_id, local_day),
    CONSTRAINT checkins_key UNIQUE (member_id, idempotency_key)
);
