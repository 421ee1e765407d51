-- 0006: what the WAF needs for the browser flow and for client-signed JWTs.
--
-- * consumed_assertions: a JWT a client signed (a private_key_jwt client assertion, RFC 7523
--   3, or a portal's subject assertion in token exchange, RFC 8693) is accepted once; its
--   jti is kept until the JWT expires, so replaying it fails on every WAF instance.
-- * authorization_codes: RFC 6749 4.1 codes with PKCE S256 (RFC 7636), stored as the
--   SHA-256 of the code. A code is redeemed once; what it issued is remembered so that a
--   replay can revoke it (RFC 6749 4.1.2, OAuth 2.1 4.1.3).
-- * refresh_tokens gets the pooled lease of the session and the access token issued with
--   each refresh token, so that rotation keeps the same temporary identity and a revoked
--   family takes its access token with it.

CREATE TABLE consumed_assertions (
    client_id text NOT NULL,
    jti       text NOT NULL
              CONSTRAINT consumed_assertions_jti_form
              CHECK (char_length(jti) BETWEEN 1 AND 256 AND jti !~ '[[:cntrl:]]'),
    exp       timestamptz NOT NULL,
    -- Invariant: a client's JWT id is accepted once.
    PRIMARY KEY (client_id, jti)
);
-- Cleanup of entries whose JWT has expired anyway.
CREATE INDEX consumed_assertions_exp_idx ON consumed_assertions (exp);
COMMENT ON TABLE consumed_assertions IS
    'jti of client-signed JWTs (client assertions, subject assertions) already accepted; kept until exp.';

CREATE TABLE authorization_codes (
    -- Only the SHA-256 of the code is stored.
    code_hash       bytea PRIMARY KEY
                    CONSTRAINT authorization_codes_code_hash_sha256 CHECK (octet_length(code_hash) = 32),
    client_id       text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    web_identity_id bigint NOT NULL REFERENCES web_identities (id) ON DELETE CASCADE,
    redirect_uri    text NOT NULL
                    CONSTRAINT authorization_codes_redirect_uri_form
                    CHECK (octet_length(redirect_uri) BETWEEN 1 AND 2048 AND redirect_uri !~ '[[:space:][:cntrl:]]'),
    scope           text NOT NULL DEFAULT ''
                    CONSTRAINT authorization_codes_scope_form CHECK (scope !~ '[[:cntrl:]]'),
    -- Invariant: PKCE S256 only: the challenge is BASE64URL(SHA-256(verifier)), 43 characters.
    code_challenge  text NOT NULL
                    CONSTRAINT authorization_codes_code_challenge_s256 CHECK (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    -- What the redemption issued, revoked when the code is presented again.
    issued_jti      text,
    issued_exp      timestamptz,
    refresh_family  uuid,
    CONSTRAINT authorization_codes_expires_after_created CHECK (expires_at > created_at),
    CONSTRAINT authorization_codes_issued_when_used
        CHECK (used_at IS NOT NULL OR (issued_jti IS NULL AND refresh_family IS NULL))
);
CREATE INDEX authorization_codes_expires_at_idx ON authorization_codes (expires_at);
COMMENT ON TABLE authorization_codes IS
    'Authorization codes (SHA-256 only) with PKCE S256 challenge; redeemed once, replay revokes what they issued.';

ALTER TABLE refresh_tokens
    ADD COLUMN lease_id uuid REFERENCES leases (id) ON DELETE SET NULL,
    ADD COLUMN access_jti text
        CONSTRAINT refresh_tokens_access_jti_form CHECK (char_length(access_jti) BETWEEN 1 AND 256),
    ADD COLUMN access_exp timestamptz;
COMMENT ON COLUMN refresh_tokens.lease_id IS
    'Pool lease of the session when its identity is a temporary one; renewed on refresh, released with the family.';
COMMENT ON COLUMN refresh_tokens.access_jti IS
    'jti of the access token issued with this refresh token; revoked when the family is.';
