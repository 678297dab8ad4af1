"""The attempt fence: grantry_attempt_fence(), called by the broker's attempt append
(apps/workers/fence.py says why it is exact)."""

from django.db import migrations

from apps.workers.fence import FENCE_FUNCTION, FENCE_FUNCTION_SQL


class Migration(migrations.Migration):
    dependencies = [
        ("workers", "0003_workertoken_audience_workertoken_oauth_client"),
    ]

    operations = [
        migrations.RunSQL(
            FENCE_FUNCTION_SQL,
            reverse_sql=f"DROP FUNCTION IF EXISTS {FENCE_FUNCTION}(bigint, bigint, bigint)",
        ),
    ]
