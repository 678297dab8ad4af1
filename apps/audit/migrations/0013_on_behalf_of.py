"""The member a worker acts for, beside the worker: two nullable/empty columns and a
partial index. On the partitioned table (migration 0010) ADD COLUMN and CREATE INDEX on
the parent reach every month; the columns are empty on existing rows, and a column added
later is hashed only when it holds a value (apps.audit.chain.LATER_FIELDS), so no
existing digest changes."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0012_installation_signing_key'),
        ('organizations', '0003_tenant_updated_at'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditevent',
            name='on_behalf_of_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='on_behalf_of_label',
            field=models.CharField(blank=True, default='', max_length=200),
        ),
        migrations.AddIndex(
            model_name='auditevent',
            index=models.Index(condition=models.Q(('on_behalf_of_id__isnull', False)), fields=['organization', 'on_behalf_of_id', '-id'], name='audit_org_on_behalf_of_id'),
        ),
    ]
