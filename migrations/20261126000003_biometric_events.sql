-- Event history written by `biometric-bridge sink postgres`: one row per event_id (upsert), plus
-- the sink's Kafka offsets in the same database, updated in the same transaction as the rows, so
-- a crash can neither lose nor double a row (the exactly-once JDBC sink pattern).
CREATE TABLE IF NOT EXISTS biometric_events (
    event_id        UUID             PRIMARY KEY,
    user_id         TEXT             NOT NULL,
    vendor          TEXT             NOT NULL,
    vendor_user_id  TEXT             NOT NULL,
    source_device   TEXT,
    kind            TEXT             NOT NULL,
    measured_at     TIMESTAMPTZ      NOT NULL,
    measured_until  TIMESTAMPTZ,
    local_date      DATE,
    received_at     TIMESTAMPTZ      NOT NULL,
    hrv_rmssd_ms    DOUBLE PRECISION,
    hrv_sdnn_ms     DOUBLE PRECISION,
    priority        TEXT             NOT NULL,
    triggers        JSONB            NOT NULL DEFAULT '[]',
    metrics         JSONB            NOT NULL DEFAULT '{}',  -- every non-null metric, by field name
    trace_id        TEXT,
    source_topic    TEXT             NOT NULL,
    source_partition INTEGER         NOT NULL,
    source_offset   BIGINT           NOT NULL,
    written_at      TIMESTAMPTZ      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS biometric_events_user_time_idx ON biometric_events (user_id, measured_at DESC);
CREATE INDEX IF NOT EXISTS biometric_events_priority_idx ON biometric_events (priority) WHERE priority <> 'NORMAL';

CREATE TABLE IF NOT EXISTS sink_offsets (
    sink        TEXT    NOT NULL,   -- sink name (consumer group)
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT  NOT NULL,   -- the next offset to read
    PRIMARY KEY (sink, topic, partition)
);
