# A worker bound to a member ("Alice's coding agent"): Worker.acts_for.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('workers', '0008_trust_policy_idjag'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='worker',
            name='acts_for',
            field=models.ForeignKey(blank=True, help_text="The member this worker acts for: rules with connection 'on_behalf_of' use that member's personal connections.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='agents', to=settings.AUTH_USER_MODEL),
        ),
    ]
