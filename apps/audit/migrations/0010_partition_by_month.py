"""The audit table becomes range-partitioned by month (native PostgreSQL partitioning).

What stays the same: the table's name and columns, the one-statement append (an INSERT
into `audit_auditevent` is routed to its month), every index (created on the parent, so
on every month), the check constraints, the identity of `id` (it continues where it
was), and the append-only triggers: the row trigger refusing UPDATE and DELETE is
declared on the parent and PostgreSQL clones it onto every partition; the statement
trigger refusing TRUNCATE is declared on the parent and on each partition by
`audit_partition_ensure()` (statement triggers are not cloned).

What changes, because a partitioned table's unique keys must contain the partition key:
the primary key is (id, created_at) and the chain's unique key (chain_key, seq,
created_at). A chain's seq stays unique by construction (the append takes the chain's
head row lock and moves it in the same statement) and `audit_verify` refuses a
duplicate or a gap. Rows are copied in one transaction (the table is locked meanwhile):
the copy is a plain INSERT … SELECT, so it takes about as long as a bulk load of the
table plus its indexes.

`audit_partition_ensure(at)` creates the month that holds `at` (UTC) if it is missing;
the scheduler calls it ahead of time (apps.audit.partitions). There is no default
partition on purpose: a row for a month nobody created fails its append loudly (503
audit_unavailable, nothing done) rather than landing where no retention applies."""

from django.db import migrations, models

# Months created ahead by the migration itself; the scheduler keeps
# GRANTRY_AUDIT_PARTITIONS_AHEAD months ahead from then on.
AHEAD = 3

ENSURE = r"""
CREATE OR REPLACE FUNCTION audit_partition_ensure(at timestamptz) RETURNS text AS $$
DECLARE
    lo timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
    hi timestamp := lo + interval '1 month';
    name text := 'audit_auditevent_' || to_char(lo, 'YYYY_MM');
BEGIN
    -- Two schedulers (or the migration and one) may race for the same month.
    PERFORM pg_advisory_xact_lock(hashtext('audit_partition_ensure'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF audit_auditevent FOR VALUES FROM (%L) TO (%L)',
            name, lo AT TIME ZONE 'UTC', hi AT TIME ZONE 'UTC');
        EXECUTE format(
            'CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()', name);
    END IF;
    RETURN name;
END;
$$ LANGUAGE plpgsql;
"""

# Shared by both directions: copy the table `src` into a new `audit_auditevent` built
# LIKE it, with the given keys; `partitioned` decides PARTITION BY and the months.
CONVERT = r"""
DO $$
DECLARE
    partitioned boolean := {partitioned};
    defs text[];
    def text;
    idx text;
    old_seq text;
    new_seq text;
    last bigint;
    called boolean;
    m timestamptz;
BEGIN
    LOCK TABLE audit_auditevent IN ACCESS EXCLUSIVE MODE;
    -- The plain indexes, as PostgreSQL prints them (ON public.audit_auditevent …).
    SELECT coalesce(array_agg(indexdef ORDER BY indexname), '{{}}') INTO defs
    FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = 'audit_auditevent'
      AND indexname NOT IN (
          SELECT conname FROM pg_constraint WHERE conrelid = 'audit_auditevent'::regclass);
    old_seq := pg_get_serial_sequence('audit_auditevent', 'id');
    EXECUTE format('SELECT last_value, is_called FROM %s', old_seq) INTO last, called;

    ALTER TABLE audit_auditevent RENAME TO audit_auditevent_old;
    -- Free the names the new table takes (the old table goes at the end).
    FOR idx IN
        SELECT indexname FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename = 'audit_auditevent_old'
          AND indexname NOT IN (
              SELECT conname FROM pg_constraint
              WHERE conrelid = 'audit_auditevent_old'::regclass)
    LOOP
        EXECUTE format('DROP INDEX %I', idx);
    END LOOP;
    ALTER TABLE audit_auditevent_old DROP CONSTRAINT audit_chain_seq_unique;
    ALTER TABLE audit_auditevent_old DROP CONSTRAINT audit_auditevent_pkey;

    IF partitioned THEN
        CREATE TABLE audit_auditevent (LIKE audit_auditevent_old INCLUDING DEFAULTS
            INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING STORAGE)
            PARTITION BY RANGE (created_at);
        -- Every month from the oldest row's to {ahead} months ahead.
        m := coalesce((SELECT min(created_at) FROM audit_auditevent_old), now());
        WHILE m < now() + interval '{ahead} months' LOOP
            PERFORM audit_partition_ensure(m);
            m := m + interval '1 month';
        END LOOP;
        PERFORM audit_partition_ensure(now() + interval '{ahead} months');
    ELSE
        CREATE TABLE audit_auditevent (LIKE audit_auditevent_old INCLUDING DEFAULTS
            INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING STORAGE);
    END IF;

    INSERT INTO audit_auditevent SELECT * FROM audit_auditevent_old;
    new_seq := pg_get_serial_sequence('audit_auditevent', 'id');
    PERFORM setval(new_seq, last, called);

    IF partitioned THEN
        ALTER TABLE audit_auditevent
            ADD CONSTRAINT audit_auditevent_pkey PRIMARY KEY (id, created_at),
            ADD CONSTRAINT audit_chain_seq_unique UNIQUE (chain_key, seq, created_at);
    ELSE
        ALTER TABLE audit_auditevent
            ADD CONSTRAINT audit_auditevent_pkey PRIMARY KEY (id),
            ADD CONSTRAINT audit_chain_seq_unique UNIQUE (chain_key, seq);
    END IF;
    FOREACH def IN ARRAY defs LOOP
        EXECUTE def;
    END LOOP;
    CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON audit_auditevent
        FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
    CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
        FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();

    DROP TABLE audit_auditevent_old;
    EXECUTE format('ALTER SEQUENCE %s RENAME TO audit_auditevent_id_seq', new_seq);
    ANALYZE audit_auditevent;
END;
$$;
"""

FORWARD = ENSURE + CONVERT.format(partitioned="true", ahead=AHEAD)
BACKWARD = (
    CONVERT.format(partitioned="false", ahead=AHEAD)
    + "DROP FUNCTION IF EXISTS audit_partition_ensure(timestamptz);"
)


class Migration(migrations.Migration):
    dependencies = [("audit", "0009_outcome_pending_refused_decision_approval")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.RemoveConstraint(model_name="auditevent", name="audit_chain_seq_unique"),
                migrations.AddConstraint(
                    model_name="auditevent",
                    constraint=models.UniqueConstraint(
                        fields=("chain_key", "seq", "created_at"), name="audit_chain_seq_unique"
                    ),
                ),
            ],
        )
    ]
