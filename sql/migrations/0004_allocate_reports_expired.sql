-- 0004: imspool_allocate() also reports the leases it ended.
--
-- The allocator ends the pool's overdue leases inline (0003). Those ends were invisible to
-- the caller, so the lease event stream and the Redis counters missed them. The function
-- now returns one row with status 'expired' per lease it ended (lease id, impi, impu, the
-- expiry, the holder) before its final status row, and every row carries a holder column.
-- Otherwise unchanged.
--
-- status: expired (zero or more rows) then ok | pool_unknown | pool_draining | holder_cap |
-- pool_exhausted

DROP FUNCTION imspool_allocate(text, text, integer, timestamptz);

CREATE FUNCTION imspool_allocate(p_pool text, p_holder text, p_ttl integer,
                                 p_now timestamptz)
RETURNS TABLE (status text, lease_id uuid, impi text, impu text, expires_at timestamptz,
               retry_after bigint, holder text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    pl pools%ROWTYPE;
    v_member bigint;
    v_open bigint;
    v_ttl integer;
BEGIN
    SELECT * INTO pl FROM pools WHERE name = p_pool;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'pool_unknown'::text, NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF pl.state = 'draining' THEN
        RETURN QUERY SELECT 'pool_draining'::text, NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    v_ttl := CASE WHEN p_ttl = 0 THEN pl.lease_ttl_s ELSE p_ttl END;
    PERFORM pg_advisory_xact_lock(hashtextextended(pl.id || '/' || p_holder, 0));

    RETURN QUERY
    WITH ended AS (
        UPDATE leases l SET released_at = l.expires_at, release_reason = 'expired',
               quarantine_until = l.expires_at + make_interval(secs => pl.quarantine_s)
         WHERE l.pool_id = pl.id AND l.released_at IS NULL AND l.expires_at <= p_now
        RETURNING l.id, l.member_id, l.holder, l.released_at, l.quarantine_until, l.expires_at),
    upd AS (
        UPDATE pool_members m SET open_lease = NULL, last_holder = ended.holder,
               last_released_at = ended.released_at, quarantine_until = ended.quarantine_until
          FROM ended WHERE m.id = ended.member_id
        RETURNING m.impi, m.impu, ended.id, ended.holder, ended.expires_at)
    SELECT 'expired'::text, upd.id, upd.impi::text, upd.impu::text, upd.expires_at,
           NULL::bigint, upd.holder FROM upd;

    SELECT count(*) INTO v_open FROM leases
     WHERE leases.pool_id = pl.id AND leases.holder = p_holder AND leases.released_at IS NULL;
    IF v_open >= pl.max_per_holder THEN
        RETURN QUERY SELECT 'holder_cap'::text, NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::bigint, NULL::text;
        RETURN;
    END IF;

    FOR attempt IN 1..5 LOOP
        v_member := NULL;
        SELECT m.id INTO v_member FROM pool_members m
         WHERE m.pool_id = pl.id AND m.state = 'available' AND m.open_lease IS NULL
           AND m.last_holder = p_holder
         LIMIT 1 FOR UPDATE OF m SKIP LOCKED;
        IF v_member IS NULL THEN
            SELECT m.id INTO v_member FROM pool_members m
             WHERE m.pool_id = pl.id AND m.state = 'available' AND m.open_lease IS NULL
               AND (m.quarantine_until IS NULL OR m.quarantine_until <= p_now
                    OR m.last_holder = p_holder)
             ORDER BY m.last_released_at NULLS FIRST, m.id
             LIMIT 1 FOR UPDATE OF m SKIP LOCKED;
        END IF;
        EXIT WHEN v_member IS NULL;

        RETURN QUERY
        WITH ins AS (
            INSERT INTO leases (pool_id, member_id, holder, created_at, expires_at)
            SELECT pl.id, m.id, p_holder, t.start, t.start + make_interval(secs => v_ttl)
              FROM pool_members m,
                   LATERAL (SELECT greatest(p_now, m.last_released_at) AS start) t
             WHERE m.id = v_member AND m.state = 'available' AND m.open_lease IS NULL
               AND (m.quarantine_until IS NULL OR m.quarantine_until <= p_now
                    OR m.last_holder = p_holder)
            RETURNING leases.id, leases.member_id, leases.expires_at),
        upd AS (
            UPDATE pool_members pm SET open_lease = ins.id FROM ins
             WHERE pm.id = ins.member_id RETURNING pm.impi, pm.impu)
        SELECT 'ok'::text, ins.id, upd.impi::text, upd.impu::text, ins.expires_at,
               NULL::bigint, p_holder
          FROM ins, upd;
        IF FOUND THEN
            RETURN;
        END IF;
        -- Taken between the pick's snapshot and its lock: pick again.
    END LOOP;

    RETURN QUERY SELECT 'pool_exhausted'::text, NULL::uuid, NULL::text, NULL::text,
        NULL::timestamptz,
        ceil(extract(epoch FROM least(
            (SELECT min(l.expires_at) FROM leases l
              WHERE l.pool_id = pl.id AND l.released_at IS NULL)
                + make_interval(secs => pl.quarantine_s),
            (SELECT min(m.quarantine_until) FROM pool_members m
              WHERE m.pool_id = pl.id AND m.open_lease IS NULL
                AND m.quarantine_until > p_now AND m.last_holder <> p_holder)) - p_now))::bigint,
        NULL::text;
END
$$;

COMMENT ON FUNCTION imspool_allocate(text, text, integer, timestamptz) IS
    'Leases a free member of a pool to a holder in one call; see libimspool lease.c.';
