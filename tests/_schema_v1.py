"""The store as schema version 1 wrote it, frozen: tests check that such a store still opens
(and is migrated), and that the generated DDL means what this literal DDL meant."""

#: The literal DDL of the clean tables as written before it was generated (schema version 1,
#: commit f309c0d). A store created from it must open unchanged.
V1_CLEAN_DDL = """
CREATE TABLE patients (
    patient_id VARCHAR NOT NULL, timezone VARCHAR NOT NULL, programme_start TIMESTAMP NOT NULL,
    clinician VARCHAR, source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ, source_row BIGINT);
CREATE TABLE sessions (
    patient_id VARCHAR NOT NULL, session_id VARCHAR, performed_at TIMESTAMPTZ NOT NULL,
    day TIMESTAMP NOT NULL, exercise_id VARCHAR NOT NULL, side VARCHAR NOT NULL, sets BIGINT,
    reps BIGINT, hold_s DOUBLE, level VARCHAR, variant VARCHAR, pain_before BIGINT,
    pain_after BIGINT, note VARCHAR, source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ,
    source_row BIGINT);
CREATE TABLE pain (
    patient_id VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL, day TIMESTAMP NOT NULL,
    back_pain BIGINT NOT NULL, leg_pain BIGINT, flare BOOLEAN, note VARCHAR,
    source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ, source_row BIGINT);
"""


#: Schema 1's whole store: its version row, the clean tables above, and the tables it had beside
#: them (``prescriptions``, retired in schema 2).
SCHEMA_1 = (
    """
CREATE TABLE meta (key VARCHAR, value VARCHAR);
INSERT INTO meta VALUES ('schema_version', '1');
"""
    + V1_CLEAN_DDL
    + """
CREATE TABLE prescriptions (
    patient_id VARCHAR NOT NULL, exercise_id VARCHAR NOT NULL, valid_from TIMESTAMP NOT NULL,
    valid_to TIMESTAMP, sets BIGINT, reps BIGINT, reps_max BIGINT, hold_s DOUBLE,
    per_side BOOLEAN, level VARCHAR, variant VARCHAR, source VARCHAR);
CREATE TABLE rejects (
    file_sha VARCHAR NOT NULL, kind VARCHAR NOT NULL, "row" BIGINT, "column" VARCHAR,
    reason VARCHAR NOT NULL, detail VARCHAR, raw VARCHAR);
CREATE TABLE imports (
    seq BIGINT NOT NULL, sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL, size_bytes BIGINT,
    format VARCHAR, kind VARCHAR, rows_read BIGINT NOT NULL, accepted BIGINT NOT NULL,
    rejected BIGINT NOT NULL, duplicates BIGINT NOT NULL, replaced BIGINT NOT NULL,
    blank_rows BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, warnings VARCHAR,
    imported_at TIMESTAMPTZ NOT NULL, package_version VARCHAR);
"""
)
