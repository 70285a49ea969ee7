-- Retractions: a vendor deleted a record (Oura `delete`, WHOOP `*.deleted` notifications), and the
-- processor emitted a DELETED event naming the event that record had produced. Both columns are
-- filled by `sink postgres`; the view hides deletions and what they retract, whichever of the two
-- rows arrived first.
ALTER TABLE biometric_events ADD COLUMN IF NOT EXISTS vendor_record_id TEXT;
ALTER TABLE biometric_events ADD COLUMN IF NOT EXISTS retracts_event_id UUID;
CREATE INDEX IF NOT EXISTS biometric_events_retracts_idx ON biometric_events (retracts_event_id) WHERE retracts_event_id IS NOT NULL;

CREATE OR REPLACE VIEW current_biometric_events AS
SELECT e.*
FROM biometric_events e
WHERE e.kind <> 'DELETED'
  AND NOT EXISTS (SELECT 1 FROM biometric_events d WHERE d.retracts_event_id = e.event_id);
