"""Append-only in the database itself: UPDATE and DELETE on audit_auditevent
raise for everyone, TRUNCATE for every non-superuser role (the application's
database user must not be a superuser). The ORM guards are only a courtesy.

Why superusers may TRUNCATE: a superuser can `ALTER TABLE … DISABLE TRIGGER
USER` anyway, so refusing them protects nothing, while Django's test runner
flushes tables with TRUNCATE as the (superuser) test user. The hash chain and
`audit_verify` catch what a superuser does."""

from django.db import migrations

INSTALL = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('is_superuser') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_event_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();

CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""

REMOVE = """
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_exports_and_filter_indexes")]

    operations = [migrations.RunSQL(INSTALL, REMOVE)]
