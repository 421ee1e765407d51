-- 0001_identity_service.sql -- initial schema of the identity service (WWSF/WAF and
-- IMPU pools, 3GPP TS 24.371).
--
-- Applied by `imspool migrate` inside one transaction (the runner adds BEGIN/COMMIT and
-- records this file's SHA-256 in schema_migrations). Never edit this file once applied
-- anywhere: add a new migration instead. It deliberately uses no IF NOT EXISTS, so
-- applying it twice fails at the first statement and changes nothing.
--
-- PostgreSQL 15, core features only (gen_random_uuid() is core since 13), public schema.
-- Every "-- Invariant:" comment below names a rule the database itself enforces; rules
-- the database cannot enforce are marked "-- Not enforced here:".

-- ==========================================================================================
-- Shared value types
-- ==========================================================================================

-- Invariant: an IMPI is 1..1024 bytes with no whitespace and no control characters. It
-- becomes the `impi` token claim and the Digest username of the Trusted Node
-- Authentication REGISTER (docs/token-profile.md 4.1, 10.1), so it must be header-safe.
CREATE DOMAIN ims_impi AS text
    CONSTRAINT ims_impi_form CHECK (
        octet_length(VALUE) BETWEEN 1 AND 1024
        AND VALUE !~ '[[:space:][:cntrl:]]'
    );
COMMENT ON DOMAIN ims_impi IS
    'IMS private identity (IMPI): 1..1024 bytes, no whitespace or control characters.';

-- Invariant: an IMPU is a plain addr-spec: lower-case scheme sip:, sips: or tel:, something
-- after the scheme, at most 1024 bytes, and no whitespace, control characters, '<', '>'
-- or '"' -- never a name-addr such as "Alice" <sip:alice@home1.net>
-- (docs/token-profile.md 4.4). The scheme is stored in lower case so equal IMPUs are
-- spelled alike; the verifier itself compares schemes case-insensitively.
CREATE DOMAIN ims_impu AS text
    CONSTRAINT ims_impu_form CHECK (
        octet_length(VALUE) <= 1024
        AND VALUE ~ '^(sip|sips|tel):.'
        AND VALUE !~ '[[:space:][:cntrl:]<>"]'
    );
COMMENT ON DOMAIN ims_impu IS
    'IMS public identity (IMPU): sip:, sips: or tel: addr-spec, no whitespace, control characters, <, > or ".';

-- Invariant: a home network realm is a DNS-style name (letters, digits, '.', '-';
-- 1..253 characters, starting and ending with a letter or digit).
CREATE DOMAIN ims_realm AS text
    CONSTRAINT ims_realm_form CHECK (
        VALUE ~ '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$'
    );
COMMENT ON DOMAIN ims_realm IS 'IMS home network domain (realm), e.g. home1.net.';

-- Invariant: secrets are stored only as PHC-format hashes, never in plaintext:
-- $argon2id$..., $scrypt$... or $pbkdf2-sha256$..., with at least a parameter, a salt and
-- a hash field (every field non-empty, PHC/base64 characters only), the hash field at
-- least 22 characters (16 bytes), the whole at most 1024 bytes. Examples:
--   $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>
--   $scrypt$ln=16,r=8,p=1$<salt>$<hash>
--   $pbkdf2-sha256$600000$<salt>$<hash>
CREATE DOMAIN phc_hash AS text
    CONSTRAINT phc_hash_form CHECK (
        octet_length(VALUE) <= 1024
        AND VALUE ~ '^\$(argon2id|scrypt|pbkdf2-sha256)(\$[A-Za-z0-9+/=,.-]+){2,}\$[A-Za-z0-9+/.]{22,}$'
    );
COMMENT ON DOMAIN phc_hash IS
    'Password/secret hash as a PHC string ($argon2id$, $scrypt$ or $pbkdf2-sha256$); never plaintext.';

-- The identity under which the P-CSCF compares IMPUs (libimsauth ims_uri_equal(),
-- docs/token-profile.md 9): scheme case-insensitive; tel: the number up to the first
-- ';' or '?', byte for byte; sip:/sips: the user part (up to the first '@') byte for
-- byte, host[:port] case-insensitively (ASCII only), URI parameters and headers ignored.
-- Two IMPUs with the same key are the same identity to the P-CSCF, so uniqueness of IMPUs
-- is enforced on this key, not only on the exact text.
CREATE FUNCTION impu_match_key(uri text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE
    WHEN lower(split_part(uri, ':', 1) COLLATE "C") = 'tel' THEN
        'tel:' || substring(uri FROM '^[^:]*:([^;?>]*)')
    WHEN strpos(uri, '@') > 0 THEN
        lower(split_part(uri, ':', 1) COLLATE "C") || ':'
            || substring(uri FROM '^[^:]*:([^@]*)@') || '@'
            || lower(substring(uri FROM '^[^@]*@([^;?>]*)') COLLATE "C")
    ELSE
        lower(split_part(uri, ':', 1) COLLATE "C") || ':'
            || lower(substring(uri FROM '^[^:]*:([^;?>]*)') COLLATE "C")
END;
COMMENT ON FUNCTION impu_match_key(text) IS
    'Comparison key of an IMPU as libimsauth ims_uri_equal() compares it; used by unique indexes.';

-- ==========================================================================================
-- Trigger functions
-- ==========================================================================================

-- Invariant: updated_at is the time of the last transaction that changed the row. The
-- triggers fire only when the row really changes (WHEN OLD.* IS DISTINCT FROM NEW.*), and
-- overwrite any value the UPDATE itself wrote.
CREATE FUNCTION set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION set_updated_at() IS
    'BEFORE UPDATE row trigger: sets NEW.updated_at to now().';

-- Invariant: audit_log is append-only. UPDATE, DELETE and TRUNCATE raise an error
-- (SQLSTATE 2F003). Only the table owner can get around this (ALTER TABLE ... DISABLE
-- TRIGGER, DROP), so the services must not connect as the owner of audit_log.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'prohibited_sql_statement_attempted',
              HINT = 'Audit records are never changed or removed; add a new record instead.';
END;
$$;
COMMENT ON FUNCTION audit_log_append_only() IS
    'Trigger: rejects UPDATE, DELETE and TRUNCATE on audit_log.';

-- ==========================================================================================
-- Web identities and local passwords
-- ==========================================================================================

CREATE TABLE web_identities (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer       text NOT NULL
                 CONSTRAINT web_identities_issuer_form
                 CHECK (octet_length(issuer) BETWEEN 1 AND 1024 AND issuer !~ '[[:cntrl:]]'),
    subject      text NOT NULL
                 CONSTRAINT web_identities_subject_form
                 CHECK (octet_length(subject) BETWEEN 1 AND 1024 AND subject !~ '[[:cntrl:]]'),
    display_name text
                 CONSTRAINT web_identities_display_name_form
                 CHECK (char_length(display_name) BETWEEN 1 AND 256 AND display_name !~ '[[:cntrl:]]'),
    status       text NOT NULL DEFAULT 'active'
                 CONSTRAINT web_identities_status_valid CHECK (status IN ('active', 'disabled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Invariant: one row per web identity as the identity provider names it.
    CONSTRAINT web_identities_issuer_subject_key UNIQUE (issuer, subject),
    -- Target of password_credentials' (web_identity_id, issuer) foreign key.
    CONSTRAINT web_identities_id_issuer_key UNIQUE (id, issuer)
);
COMMENT ON TABLE web_identities IS
    'A user as the web login knows them: (issuer, subject) from an external IdP, or issuer ''local'' for password accounts.';
COMMENT ON COLUMN web_identities.issuer IS
    'Issuer of the web login: the IdP issuer identifier, or ''local'' for accounts with a row in password_credentials.';
COMMENT ON COLUMN web_identities.subject IS 'Stable subject identifier at that issuer (the "sub" of the IdP).';
COMMENT ON COLUMN web_identities.status IS 'active, or disabled (no login, no token issued).';

CREATE TRIGGER web_identities_set_updated_at
    BEFORE UPDATE ON web_identities
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE password_credentials (
    web_identity_id bigint PRIMARY KEY,
    -- Invariant: only 'local' identities have a password. issuer is always 'local' here and
    -- is part of the foreign key, so the referenced identity has issuer 'local' too (and
    -- its issuer cannot be changed while the password row exists).
    issuer          text NOT NULL DEFAULT 'local'
                    CONSTRAINT password_credentials_issuer_local CHECK (issuer = 'local'),
    username        text NOT NULL
                    CONSTRAINT password_credentials_username_form
                    CHECK (char_length(username) BETWEEN 1 AND 128
                           AND username !~ '[[:space:][:cntrl:]]'),
    -- Invariant: a PHC hash, never a plaintext password (domain phc_hash).
    password_hash   phc_hash NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0
                    CONSTRAINT password_credentials_failed_attempts_nonneg CHECK (failed_attempts >= 0),
    locked_until    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT password_credentials_web_identity_fkey
        FOREIGN KEY (web_identity_id, issuer) REFERENCES web_identities (id, issuer)
        ON DELETE CASCADE
);
-- Invariant: usernames are unique case-insensitively (lower() of the database's
-- collation). Look up with WHERE lower(username) = lower($1) to use this index.
CREATE UNIQUE INDEX password_credentials_username_lower_key
    ON password_credentials (lower(username));
COMMENT ON TABLE password_credentials IS
    'Username and password hash of a local web identity (issuer ''local''), with lockout state.';
COMMENT ON COLUMN password_credentials.username IS
    'Login name; unique case-insensitively (index on lower(username)), stored as entered.';
COMMENT ON COLUMN password_credentials.password_hash IS
    'PHC string ($argon2id$, $scrypt$ or $pbkdf2-sha256$). Never the password.';
COMMENT ON COLUMN password_credentials.failed_attempts IS
    'Consecutive failed logins since the last success; reset to 0 on success.';
COMMENT ON COLUMN password_credentials.locked_until IS
    'Logins are refused until this time; NULL when not locked.';

CREATE TRIGGER password_credentials_set_updated_at
    BEFORE UPDATE ON password_credentials
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION set_updated_at();

-- ==========================================================================================
-- Permanent IMS subscriptions
-- ==========================================================================================

CREATE TABLE ims_subscriptions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Invariant: one subscription per IMPI (UNIQUE), IMPI form checked by ims_impi.
    impi       ims_impi NOT NULL CONSTRAINT ims_subscriptions_impi_key UNIQUE,
    realm      ims_realm NOT NULL,
    status     text NOT NULL DEFAULT 'active'
               CONSTRAINT ims_subscriptions_status_valid CHECK (status IN ('active', 'disabled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ims_subscriptions IS
    'A permanent IMS subscription: one IMPI (private identity) in a home realm, with its IMPUs in impus.';
COMMENT ON COLUMN ims_subscriptions.impi IS 'IMS private identity; the token "impi" claim and TNA username.';
COMMENT ON COLUMN ims_subscriptions.realm IS 'Home network domain of the subscription.';
COMMENT ON COLUMN ims_subscriptions.status IS 'active, or disabled (no token is issued for it).';

CREATE TRIGGER ims_subscriptions_set_updated_at
    BEFORE UPDATE ON ims_subscriptions
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE impus (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL
                    REFERENCES ims_subscriptions (id) ON DELETE CASCADE,
    -- Invariant: IMPU form checked by ims_impu; unique as text (UNIQUE) and as the
    -- P-CSCF compares it (impus_uri_match_key index below).
    uri             ims_impu NOT NULL CONSTRAINT impus_uri_key UNIQUE,
    barred          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Target of identity_mappings' composite foreign key (and the index for "IMPUs of a
    -- subscription").
    CONSTRAINT impus_subscription_id_id_key UNIQUE (subscription_id, id)
);
CREATE UNIQUE INDEX impus_uri_match_key ON impus (impu_match_key(uri));
COMMENT ON TABLE impus IS 'IMS public identities (IMPUs) of a permanent subscription.';
COMMENT ON COLUMN impus.uri IS
    'The IMPU, a plain sip:/sips:/tel: URI, written exactly as requests carry the user part.';
COMMENT ON COLUMN impus.barred IS 'A barred IMPU is never put into a token.';

CREATE TABLE identity_mappings (
    web_identity_id bigint NOT NULL REFERENCES web_identities (id) ON DELETE CASCADE,
    subscription_id bigint NOT NULL REFERENCES ims_subscriptions (id) ON DELETE CASCADE,
    default_impu_id bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (web_identity_id, subscription_id),
    -- Invariant: the default IMPU belongs to the mapped subscription: (subscription_id,
    -- default_impu_id) must be an existing (subscription_id, id) of impus. NO ACTION (not
    -- RESTRICT) so deleting a subscription cascades through impus and this table in one
    -- statement, while deleting a mapping's default IMPU on its own is refused.
    CONSTRAINT identity_mappings_default_impu_fkey
        FOREIGN KEY (subscription_id, default_impu_id) REFERENCES impus (subscription_id, id)
);
-- Reverse lookups, and the foreign-key checks when subscriptions or IMPUs are deleted.
CREATE INDEX identity_mappings_subscription_impu_idx
    ON identity_mappings (subscription_id, default_impu_id);
COMMENT ON TABLE identity_mappings IS
    'Which IMS subscription a web identity may use, and which of its IMPUs is the default (impu[0] of the token).';
COMMENT ON COLUMN identity_mappings.default_impu_id IS
    'The default IMPU; always one of the IMPUs of subscription_id (composite foreign key).';

-- ==========================================================================================
-- Temporary identity pools (TS 24.371 6.2.3)
-- ==========================================================================================

CREATE TABLE pools (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Invariant: pool names are short lower-case tokens (safe in URLs, logs, CLI
    -- arguments and Redis keys).
    name           text NOT NULL CONSTRAINT pools_name_key UNIQUE
                   CONSTRAINT pools_name_form CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    realm          ims_realm NOT NULL,
    lease_ttl_s    integer NOT NULL
                   CONSTRAINT pools_lease_ttl_s_range CHECK (lease_ttl_s > 0 AND lease_ttl_s <= 604800),
    quarantine_s   integer NOT NULL
                   CONSTRAINT pools_quarantine_s_range CHECK (quarantine_s >= 0 AND quarantine_s <= 2592000),
    max_per_holder integer NOT NULL DEFAULT 1
                   CONSTRAINT pools_max_per_holder_min CHECK (max_per_holder >= 1),
    state          text NOT NULL DEFAULT 'active'
                   CONSTRAINT pools_state_valid CHECK (state IN ('active', 'draining')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pools IS
    'A pool of temporary IMS identities (IMPI + IMPU) leased to anonymous or unmapped web users.';
COMMENT ON COLUMN pools.name IS 'Pool name, ^[a-z0-9][a-z0-9_.-]{0,62}$; referenced by oauth_clients.allow_pool.';
COMMENT ON COLUMN pools.lease_ttl_s IS 'Lifetime of a new or renewed lease, seconds (1 .. 7 days).';
COMMENT ON COLUMN pools.quarantine_s IS
    'Seconds a released member stays unusable for other holders before reuse (0 .. 30 days).';
COMMENT ON COLUMN pools.max_per_holder IS 'Maximum number of open leases one holder may have in this pool.';
COMMENT ON COLUMN pools.state IS 'active, or draining (no new leases; open leases run out).';

CREATE TRIGGER pools_set_updated_at
    BEFORE UPDATE ON pools
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE pool_members (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A pool that still has members (or leases) cannot be deleted.
    pool_id    bigint NOT NULL REFERENCES pools (id) ON DELETE RESTRICT,
    impi       ims_impi NOT NULL,
    -- Invariant: one IMPU is in at most one pool, and at most once: unique as text
    -- (UNIQUE, across all pools) and as the P-CSCF compares IMPUs
    -- (pool_members_impu_match_key index below).
    impu       ims_impu NOT NULL CONSTRAINT pool_members_impu_key UNIQUE,
    -- Only the administrative state is stored. Leased and quarantined are derived from
    -- leases, so they can never disagree with them.
    state      text NOT NULL DEFAULT 'available'
               CONSTRAINT pool_members_state_valid CHECK (state IN ('available', 'disabled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Target of leases' composite foreign key.
    CONSTRAINT pool_members_pool_id_id_key UNIQUE (pool_id, id)
);
-- Not enforced here: an IMPU of a pool member must not also be the IMPU of a permanent
-- subscription (impus), nor its IMPI an ims_subscriptions.impi. That spans two tables;
-- the admin API refuses it and `imspool check` reports it.
CREATE UNIQUE INDEX pool_members_impu_match_key ON pool_members (impu_match_key(impu));
CREATE INDEX pool_members_pool_id_state_idx ON pool_members (pool_id, state);
COMMENT ON TABLE pool_members IS
    'One temporary identity (IMPI + IMPU) of a pool. Leased/quarantined are derived from leases, not stored.';
COMMENT ON COLUMN pool_members.impu IS 'The temporary IMPU; in at most one pool.';
COMMENT ON COLUMN pool_members.state IS
    'Administrative state: available (may be leased) or disabled (never leased).';

CREATE TRIGGER pool_members_set_updated_at
    BEFORE UPDATE ON pool_members
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE leases (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pool_id          bigint NOT NULL,
    member_id        bigint NOT NULL,
    holder           text NOT NULL
                     CONSTRAINT leases_holder_form
                     CHECK (char_length(holder) BETWEEN 1 AND 256 AND holder !~ '[[:cntrl:]]'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    released_at      timestamptz,
    release_reason   text
                     CONSTRAINT leases_release_reason_form
                     CHECK (char_length(release_reason) BETWEEN 1 AND 200),
    quarantine_until timestamptz,
    renew_count      integer NOT NULL DEFAULT 0
                     CONSTRAINT leases_renew_count_nonneg CHECK (renew_count >= 0),
    -- Invariant: a lease's member belongs to the lease's pool. Members with lease history
    -- cannot be deleted (disable them instead).
    CONSTRAINT leases_member_fkey
        FOREIGN KEY (pool_id, member_id) REFERENCES pool_members (pool_id, id)
        ON DELETE RESTRICT,
    -- Invariant: a lease ends after it starts.
    CONSTRAINT leases_expires_after_created CHECK (expires_at > created_at),
    -- Invariant: released_at and release_reason are set together, or neither is.
    CONSTRAINT leases_release_complete CHECK ((released_at IS NULL) = (release_reason IS NULL)),
    -- Invariant: a lease is not released before it was created.
    CONSTRAINT leases_released_after_created CHECK (released_at >= created_at),
    -- Invariant: quarantine only follows a release, and does not end before it.
    CONSTRAINT leases_quarantine_after_release
        CHECK (quarantine_until IS NULL OR (released_at IS NOT NULL AND quarantine_until >= released_at))
);
-- THE pool invariant: a member has at most one open (unreleased) lease, so one IMPU is
-- never held by two users at once. An expired lease stays open until the sweeper
-- releases it (release_reason 'expired'), so the allocator sweeps before it allocates.
CREATE UNIQUE INDEX leases_one_open_per_member
    ON leases (member_id) WHERE released_at IS NULL;
-- Not enforced here: a member whose latest lease has quarantine_until > now() must not be
-- leased to another holder, and leases are only taken from 'active' pools and
-- 'available' members. These depend on other rows and on the clock, which no plain
-- constraint can express; the allocator enforces them (in the same transaction that
-- locks the member row) and `imspool check` verifies them.

-- Counting a holder's open leases in a pool (pools.max_per_holder).
CREATE INDEX leases_open_pool_holder_idx
    ON leases (pool_id, holder) WHERE released_at IS NULL;
-- The expiry sweeper.
CREATE INDEX leases_open_expires_at_idx
    ON leases (expires_at) WHERE released_at IS NULL;
-- Latest lease of a member: stickiness and quarantine lookups.
CREATE INDEX leases_member_released_idx
    ON leases (member_id, released_at DESC);
COMMENT ON TABLE leases IS
    'Every lease of a pool member, open and past (history is kept). Open = released_at IS NULL.';
COMMENT ON COLUMN leases.id IS 'Lease id; the "pool_lease" claim of tokens for this identity.';
COMMENT ON COLUMN leases.holder IS
    'Who holds the lease (e.g. the client_id plus an anonymous session id); 1..256 characters.';
COMMENT ON COLUMN leases.expires_at IS 'End of the lease unless renewed; the sweeper releases it afterwards.';
COMMENT ON COLUMN leases.released_at IS 'When the lease ended; NULL while it is open.';
COMMENT ON COLUMN leases.release_reason IS
    'Why it ended, e.g. released, expired, revoked, forced, registration_ended; set with released_at.';
COMMENT ON COLUMN leases.quarantine_until IS
    'released_at + pools.quarantine_s, set at release; the member is not leased to another holder before it.';
COMMENT ON COLUMN leases.renew_count IS 'How many times expires_at was extended.';

-- ==========================================================================================
-- OAuth 2.0 authorisation server
-- ==========================================================================================

CREATE TABLE oauth_clients (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id        text NOT NULL CONSTRAINT oauth_clients_client_id_key UNIQUE
                     CONSTRAINT oauth_clients_client_id_form
                     CHECK (client_id ~ '^[A-Za-z0-9._~-]{1,128}$'),
    name             text NOT NULL
                     CONSTRAINT oauth_clients_name_form
                     CHECK (char_length(name) BETWEEN 1 AND 200 AND name !~ '[[:cntrl:]]'),
    -- Invariant: a PHC hash, never a plaintext secret (domain phc_hash).
    secret_hash      phc_hash,
    client_type      text NOT NULL
                     CONSTRAINT oauth_clients_client_type_valid
                     CHECK (client_type IN ('confidential', 'public')),
    grant_types      text[] NOT NULL
                     -- Invariant: one or more known grant types, no NULL element.
                     CONSTRAINT oauth_clients_grant_types_valid
                     CHECK (cardinality(grant_types) >= 1
                            AND grant_types <@ ARRAY['authorization_code', 'refresh_token',
                                                     'client_credentials',
                                                     'urn:ietf:params:oauth:grant-type:token-exchange']::text[]),
    redirect_uris    text[] NOT NULL DEFAULT '{}',
    scopes           text[] NOT NULL DEFAULT '{}',
    allowed_origins  text[] NOT NULL DEFAULT '{}',
    audience         text NOT NULL
                     CONSTRAINT oauth_clients_audience_form
                     CHECK (octet_length(audience) BETWEEN 1 AND 1024 AND audience !~ '[[:space:][:cntrl:]]'),
    -- Invariant: a client JWKS is {"keys":[...]} of public keys only: no key has a
    -- private member ("d": EC/OKP/RSA private key) or is a symmetric key ("k").
    jwks             jsonb
                     CONSTRAINT oauth_clients_jwks_public
                     CHECK (jsonb_typeof(jwks) = 'object'
                            AND jsonb_typeof(jwks -> 'keys') = 'array'
                            AND NOT jsonb_path_exists(jwks, '$.keys[*].d')
                            AND NOT jsonb_path_exists(jwks, '$.keys[*].k')),
    -- Renaming a pool follows here; deleting it removes the permission.
    allow_pool       text REFERENCES pools (name) ON UPDATE CASCADE ON DELETE SET NULL,
    token_lifetime_s integer
                     CONSTRAINT oauth_clients_token_lifetime_s_range
                     CHECK (token_lifetime_s > 0 AND token_lifetime_s <= 86400),
    status           text NOT NULL DEFAULT 'active'
                     CONSTRAINT oauth_clients_status_valid CHECK (status IN ('active', 'disabled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Invariant: a client is confidential exactly when it has a credential (a secret hash
    -- or a JWKS for private_key_jwt); a public client has neither.
    CONSTRAINT oauth_clients_credentials_match_type
        CHECK ((client_type = 'confidential') = (secret_hash IS NOT NULL OR jwks IS NOT NULL)),
    -- Invariant: the client_credentials grant is for confidential clients only
    -- (RFC 6749 4.4).
    CONSTRAINT oauth_clients_client_credentials_confidential
        CHECK (client_type = 'confidential' OR NOT ('client_credentials' = ANY (grant_types))),
    -- Invariant: a client using authorization_code has at least one registered
    -- redirect URI (they are matched exactly; RFC 6749 3.1.2, OAuth 2.1).
    CONSTRAINT oauth_clients_redirect_uris_for_code
        CHECK (NOT ('authorization_code' = ANY (grant_types)) OR cardinality(redirect_uris) >= 1),
    -- Invariant: the list columns hold no NULL elements.
    CONSTRAINT oauth_clients_lists_no_nulls
        CHECK (array_position(redirect_uris, NULL) IS NULL
               AND array_position(scopes, NULL) IS NULL
               AND array_position(allowed_origins, NULL) IS NULL)
);
-- Not enforced here: the form of each redirect URI, scope and origin (absolute https
-- URIs, loopback exceptions, scope-token syntax); the admin API validates them.
CREATE INDEX oauth_clients_allow_pool_idx ON oauth_clients (allow_pool) WHERE allow_pool IS NOT NULL;
COMMENT ON TABLE oauth_clients IS 'OAuth 2.0 clients of the WAF (web portals, services).';
COMMENT ON COLUMN oauth_clients.client_id IS 'Public client identifier (the "client_id" claim).';
COMMENT ON COLUMN oauth_clients.secret_hash IS
    'PHC hash of the client secret (client_secret_basic/post); NULL for public clients and JWT-only clients.';
COMMENT ON COLUMN oauth_clients.client_type IS
    'confidential (has secret_hash or jwks) or public (has neither).';
COMMENT ON COLUMN oauth_clients.grant_types IS 'Grant types this client may use (non-empty, known values).';
COMMENT ON COLUMN oauth_clients.redirect_uris IS 'Registered redirect URIs, matched exactly.';
COMMENT ON COLUMN oauth_clients.allowed_origins IS 'Browser origins allowed by CORS for this client.';
COMMENT ON COLUMN oauth_clients.audience IS 'The "aud" of the access tokens issued to this client (the P-CSCFs).';
COMMENT ON COLUMN oauth_clients.jwks IS
    'Public keys of the client for private_key_jwt and assertion signatures; {"keys":[...]}.';
COMMENT ON COLUMN oauth_clients.allow_pool IS
    'Name of the pool this client may lease temporary identities from for anonymous users; NULL for none.';
COMMENT ON COLUMN oauth_clients.token_lifetime_s IS
    'Access token lifetime for this client, seconds (1 .. 86400); NULL for the server default.';

CREATE TRIGGER oauth_clients_set_updated_at
    BEFORE UPDATE ON oauth_clients
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION set_updated_at();

CREATE TABLE signing_keys (
    kid             text PRIMARY KEY
                    CONSTRAINT signing_keys_kid_form CHECK (kid ~ '^[A-Za-z0-9._-]{1,64}$'),
    alg             text NOT NULL
                    CONSTRAINT signing_keys_alg_valid
                    CHECK (alg IN ('ES256', 'ES384', 'RS256', 'PS256', 'EdDSA')),
    -- Invariant: the published JWK is a public key: a JSON object with no private member
    -- ("d") and no symmetric key ("k"), whose kty fits alg and whose kid, if present, is
    -- the row's kid.
    public_jwk      jsonb NOT NULL
                    CONSTRAINT signing_keys_public_jwk_object CHECK (jsonb_typeof(public_jwk) = 'object')
                    CONSTRAINT signing_keys_public_jwk_no_private CHECK (NOT (public_jwk ? 'd') AND NOT (public_jwk ? 'k')),
    private_key_enc bytea NOT NULL
                    CONSTRAINT signing_keys_private_key_enc_nonempty CHECK (octet_length(private_key_enc) > 0),
    state           text NOT NULL DEFAULT 'next'
                    CONSTRAINT signing_keys_state_valid CHECK (state IN ('next', 'active', 'retired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    retired_at      timestamptz,
    publish_until   timestamptz,
    CONSTRAINT signing_keys_public_jwk_kty_matches_alg
        CHECK (public_jwk ->> 'kty' = CASE
                   WHEN alg IN ('ES256', 'ES384') THEN 'EC'
                   WHEN alg IN ('RS256', 'PS256') THEN 'RSA'
                   ELSE 'OKP' END),
    CONSTRAINT signing_keys_public_jwk_kid_matches
        CHECK (NOT (public_jwk ? 'kid') OR public_jwk ->> 'kid' = kid),
    -- Invariant: lifecycle timestamps agree with state: a 'next' key was never activated
    -- or retired; an 'active' key has activated_at and no retired_at; a 'retired' key
    -- has retired_at and publish_until (it stays in the JWKS until every token it signed
    -- has expired), and publish_until is not before retired_at.
    CONSTRAINT signing_keys_state_next
        CHECK (state <> 'next' OR (activated_at IS NULL AND retired_at IS NULL AND publish_until IS NULL)),
    CONSTRAINT signing_keys_state_active
        CHECK (state <> 'active' OR (activated_at IS NOT NULL AND retired_at IS NULL AND publish_until IS NULL)),
    CONSTRAINT signing_keys_state_retired
        CHECK (state <> 'retired' OR (retired_at IS NOT NULL AND publish_until IS NOT NULL)),
    CONSTRAINT signing_keys_publish_after_retire CHECK (publish_until >= retired_at),
    CONSTRAINT signing_keys_retired_after_activated CHECK (retired_at >= activated_at)
);
-- Invariant: at most one key is 'active' (the one new tokens are signed with).
CREATE UNIQUE INDEX signing_keys_one_active
    ON signing_keys ((true)) WHERE state = 'active';
COMMENT ON TABLE signing_keys IS
    'Token signing keys: next (published, not yet used), active (signs new tokens, at most one), retired (published until publish_until).';
COMMENT ON COLUMN signing_keys.public_jwk IS 'Public JWK as published in the JWKS; never holds private members.';
COMMENT ON COLUMN signing_keys.private_key_enc IS
    'The private key, encrypted with the service''s key-encryption key; never stored in clear.';
COMMENT ON COLUMN signing_keys.publish_until IS
    'A retired key stays in the JWKS until this time: at least the expiry (plus leeway) of the last token it signed.';

CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY
               CONSTRAINT revoked_tokens_jti_form CHECK (char_length(jti) BETWEEN 1 AND 256),
    exp        timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason     text CONSTRAINT revoked_tokens_reason_form CHECK (char_length(reason) BETWEEN 1 AND 200),
    -- Deliberately no foreign key: the record must outlive the client.
    client_id  text
);
-- Cleanup of records whose token has expired anyway.
CREATE INDEX revoked_tokens_exp_idx ON revoked_tokens (exp);
COMMENT ON TABLE revoked_tokens IS
    'Revoked access tokens by jti (mirrored into the Redis revocation set); kept until exp plus leeway.';
COMMENT ON COLUMN revoked_tokens.exp IS 'Expiry of the revoked token; the row may be deleted after exp plus leeway.';

CREATE TABLE refresh_tokens (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id       uuid NOT NULL,
    -- Only the SHA-256 of the token is stored.
    token_hash      bytea NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE
                    CONSTRAINT refresh_tokens_token_hash_sha256 CHECK (octet_length(token_hash) = 32),
    client_id       text NOT NULL
                    REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    web_identity_id bigint REFERENCES web_identities (id) ON DELETE CASCADE,
    scope           text NOT NULL DEFAULT ''
                    CONSTRAINT refresh_tokens_scope_form CHECK (scope !~ '[[:cntrl:]]'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    revoked_at      timestamptz,
    CONSTRAINT refresh_tokens_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT refresh_tokens_used_after_created CHECK (used_at >= created_at)
);
-- Invariant: rotation keeps a family a chain: at most one token of a family is live
-- (neither used nor revoked). Presenting a used token revokes the whole family
-- (UPDATE ... SET revoked_at = now() WHERE family_id = $1).
CREATE UNIQUE INDEX refresh_tokens_one_live_per_family
    ON refresh_tokens (family_id) WHERE used_at IS NULL AND revoked_at IS NULL;
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_client_id_idx ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_web_identity_id_idx ON refresh_tokens (web_identity_id)
    WHERE web_identity_id IS NOT NULL;
COMMENT ON TABLE refresh_tokens IS
    'Refresh tokens, rotated on every use; a family is one chain of rotations and is revoked as a whole on reuse.';
COMMENT ON COLUMN refresh_tokens.family_id IS 'Chain of rotations this token belongs to (the id of the first token).';
COMMENT ON COLUMN refresh_tokens.token_hash IS 'SHA-256 of the refresh token (32 bytes); the token itself is never stored.';
COMMENT ON COLUMN refresh_tokens.web_identity_id IS 'The user; NULL for tokens not bound to a web identity.';
COMMENT ON COLUMN refresh_tokens.used_at IS 'When it was exchanged for its successor; a second use means theft.';

-- ==========================================================================================
-- Audit log
-- ==========================================================================================

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL CONSTRAINT audit_log_actor_form CHECK (char_length(actor) BETWEEN 1 AND 256),
    action      text NOT NULL CONSTRAINT audit_log_action_form CHECK (char_length(action) BETWEEN 1 AND 128),
    target_type text NOT NULL CONSTRAINT audit_log_target_type_form CHECK (char_length(target_type) BETWEEN 1 AND 64),
    target_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);
COMMENT ON TABLE audit_log IS
    'Append-only record of administrative and security-relevant changes (UPDATE, DELETE, TRUNCATE are refused by triggers).';
COMMENT ON COLUMN audit_log.actor IS 'Who acted: admin user, client_id, or a service name.';
COMMENT ON COLUMN audit_log.action IS 'What was done, e.g. pool.create, lease.revoke, key.rotate.';
COMMENT ON COLUMN audit_log.before IS 'The target before the change (secrets removed); NULL for creations.';
COMMENT ON COLUMN audit_log.after IS 'The target after the change (secrets removed); NULL for deletions.';
COMMENT ON COLUMN audit_log.request_id IS 'Id of the request that caused the change, for log correlation.';

-- Invariant: append-only (see audit_log_append_only()).
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
