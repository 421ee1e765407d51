-- 0002: per-member lease state for fast allocation.
--
-- Allocation must find a free member without scanning the lease history of every member
-- (10,000-member pools). pool_members now carries the member's current lease and the end of
-- its last one, maintained by libimspool in the same statements that open and close leases.
-- The leases table stays the authority: leases_one_open_per_member still forbids two open
-- leases, and `imspool check` verifies that these columns agree with the leases.

ALTER TABLE pool_members
    ADD COLUMN open_lease uuid REFERENCES leases (id) ON DELETE SET NULL,
    ADD COLUMN last_holder text,
    ADD COLUMN last_released_at timestamptz,
    ADD COLUMN quarantine_until timestamptz,
    ADD CONSTRAINT pool_members_last_release_complete
        CHECK ((last_holder IS NULL) = (last_released_at IS NULL)),
    ADD CONSTRAINT pool_members_quarantine_after_release
        CHECK (quarantine_until IS NULL OR quarantine_until >= last_released_at);

COMMENT ON COLUMN pool_members.open_lease IS
    'The open lease of this member (NULL when none); mirrors leases, verified by imspool check.';
COMMENT ON COLUMN pool_members.last_holder IS 'Holder of the member''s last ended lease.';
COMMENT ON COLUMN pool_members.last_released_at IS 'When the member''s last lease ended.';
COMMENT ON COLUMN pool_members.quarantine_until IS
    'No other holder than last_holder may lease the member before this time.';

-- Bring existing data in line.
UPDATE pool_members m SET open_lease = l.id
  FROM leases l WHERE l.member_id = m.id AND l.released_at IS NULL;
UPDATE pool_members m SET last_holder = l.holder, last_released_at = l.released_at,
       quarantine_until = l.quarantine_until
  FROM (SELECT DISTINCT ON (member_id) member_id, holder, released_at, quarantine_until
          FROM leases WHERE released_at IS NOT NULL
         ORDER BY member_id, released_at DESC) l
 WHERE l.member_id = m.id;

-- Free members of a pool, the one free the longest first (never-leased ones before all).
CREATE INDEX pool_members_free_idx ON pool_members (pool_id, last_released_at NULLS FIRST, id)
    WHERE state = 'available' AND open_lease IS NULL;
-- A holder's previous member (stickiness).
CREATE INDEX pool_members_last_holder_idx ON pool_members (pool_id, last_holder)
    WHERE last_holder IS NOT NULL;
