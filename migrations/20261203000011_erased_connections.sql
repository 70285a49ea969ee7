-- `users erase` deletes a person's connections once their vendor confirmed the revocation. One
-- the vendor has not confirmed yet is kept, and only for that: its user id replaced by the
-- person's pseudonym, its tokens (still encrypted) for the retry, marked with the erase. The
-- retry (`connections revoke --retry-pending`, the processor's reconciliation) deletes it once
-- the vendor confirms.
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS erased_at TIMESTAMPTZ;
