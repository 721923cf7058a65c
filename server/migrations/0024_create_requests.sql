-- Request ids for creates (issue 17 item 5; AIP-155, README "Request ids"). CreateMember,
-- CreateItem and CreateCampaign may carry a request_id: the create and its row here commit
-- in one transaction, so a retry finds the resource the first attempt made (the same
-- request: that resource again; another request under the same id: ALREADY_EXISTS /
-- REQUEST_ID_REUSED naming it), and retries racing each other make one resource (the
-- primary key, behind the advisory lock common/create_requests.py takes first).
-- request_hash: SHA-256 of every field of the request, as validated. resource_id names a
-- member, an item or a campaign by kind (no foreign key: none of the three is ever deleted).
-- Kept for good: a row is ~150 bytes per create. A new table, so nothing to backfill.
CREATE TABLE create_requests (
    kind         text NOT NULL CHECK (kind IN ('member', 'item', 'campaign')),
    request_id   text NOT NULL CHECK (request_id <> '' AND length(request_id) <= 128),
    request_hash text NOT NULL CHECK (length(request_hash) = 64),
    resource_id  uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, request_id)
);
