-- 0003: lease allocation as one server-side function, so an allocation is one round trip.
--
-- imspool_allocate() does what libimspool's allocator did statement by statement, in the
-- caller's transaction: serialise the holder (advisory lock, exact per-holder cap), end
-- the pool's overdue leases, pick a free member (the holder's previous one first, else the
-- one free the longest; FOR UPDATE SKIP LOCKED), then lease it in a later statement. In a
-- VOLATILE PL/pgSQL function every statement takes a fresh snapshot, so that statement sees
-- every earlier lease of the locked member (each updated the member row) and the new lease
-- starts no earlier than the previous one ended. p_now comes from the caller's clock.
--
-- status: ok | pool_unknown | pool_draining | holder_cap | pool_exhausted

CREATE FUNCTION imspool_allocate(p_pool text, p_holder text, p_ttl integer,
                                 p_now timestamptz)
RETURNS TABLE (status text, lease_id uuid, impi text, impu text, expires_at timestamptz,
               retry_after bigint)
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
                            NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    IF pl.state = 'draining' THEN
        RETURN QUERY SELECT 'pool_draining'::text, NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::bigint;
        RETURN;
    END IF;
    v_ttl := CASE WHEN p_ttl = 0 THEN pl.lease_ttl_s ELSE p_ttl END;
    PERFORM pg_advisory_xact_lock(hashtextextended(pl.id || '/' || p_holder, 0));

    WITH ended AS (
        UPDATE leases l SET released_at = l.expires_at, release_reason = 'expired',
               quarantine_until = l.expires_at + make_interval(secs => pl.quarantine_s)
         WHERE l.pool_id = pl.id AND l.released_at IS NULL AND l.expires_at <= p_now
        RETURNING l.member_id, l.holder, l.released_at, l.quarantine_until)
    UPDATE pool_members m SET open_lease = NULL, last_holder = ended.holder,
           last_released_at = ended.released_at, quarantine_until = ended.quarantine_until
      FROM ended WHERE m.id = ended.member_id;

    SELECT count(*) INTO v_open FROM leases
     WHERE pool_id = pl.id AND holder = p_holder AND released_at IS NULL;
    IF v_open >= pl.max_per_holder THEN
        RETURN QUERY SELECT 'holder_cap'::text, NULL::uuid, NULL::text, NULL::text,
                            NULL::timestamptz, NULL::bigint;
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
               NULL::bigint
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
                AND m.quarantine_until > p_now AND m.last_holder <> p_holder)) - p_now))::bigint;
END
$$;

COMMENT ON FUNCTION imspool_allocate(text, text, integer, timestamptz) IS
    'Leases a free member of a pool to a holder in one call; see libimspool lease.c.';
