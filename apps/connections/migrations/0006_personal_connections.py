# A member's own account at a provider: Connection.owner, and the connect flow's flag.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0005_mcp_servers_and_tools'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='connection',
            name='owner',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='personal_connections', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='oauthstate',
            name='personal',
            field=models.BooleanField(default=False),
        ),
    ]
