-- The audit log: who did what to whose data, when, and how it went. Append-only: the trigger
-- below refuses UPDATE, DELETE and TRUNCATE, so the application's own role cannot rewrite
-- history (a database owner can still drop the trigger; ship the table to WORM storage if that
-- matters). It never holds health data or secrets: the person is a keyed pseudonym
-- (HMAC-SHA-256 under PSEUDONYM_KEY), targets are ids (a token id, a vendor, a topic), details
-- are counts and error classes.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL   PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_kind  TEXT        NOT NULL CHECK (actor_kind IN ('operator', 'api', 'service')),
    actor       TEXT        NOT NULL,   -- OS user of an operator command, the API route, the service
    action      TEXT        NOT NULL,   -- a stable code: token.issue, connection.revoke, ...
    subject     TEXT,                   -- the person, as a pseudonym; NULL when none (or no key)
    target      TEXT,                   -- what was acted on, by id
    outcome     TEXT        NOT NULL CHECK (outcome IN ('ok', 'failed')),
    detail      JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_subject_idx ON audit_log (subject, at) WHERE subject IS NOT NULL;

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS audit_log_no_rewrite ON audit_log;
CREATE TRIGGER audit_log_no_rewrite BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
