-- Revoking a connection revokes the user's authorization at the vendor too (WHOOP
-- `DELETE /v2/user/access`, Oura `/oauth/revoke`): until the vendor confirmed, the revocation is
-- pending and retried (`connections revoke --retry-pending`, and the processor's scheduled
-- reconciliation), so nobody is left believing a user's data has stopped flowing when it has not.
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS vendor_revoke_pending BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS vendor_revoked_at TIMESTAMPTZ;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS vendor_revoke_error TEXT;
