-- Data-quality notes: values a vendor sent that the processor removed from the event (out of the
-- topology's plausible range, not finite, not representable), as the event's `data_quality`
-- array. Kept beside the row so a history query can tell "not measured" from "measured, but
-- impossible".
ALTER TABLE biometric_events ADD COLUMN IF NOT EXISTS data_quality JSONB NOT NULL DEFAULT '[]'::jsonb;

-- `e.*` is expanded when a view is created: recreate it so it has the new column.
CREATE OR REPLACE VIEW current_biometric_events AS
SELECT e.*
FROM biometric_events e
WHERE e.kind <> 'DELETED'
  AND NOT EXISTS (SELECT 1 FROM biometric_events d WHERE d.retracts_event_id = e.event_id);
