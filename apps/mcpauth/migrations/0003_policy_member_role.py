# Members connect their own MCP clients as workers acting for them: McpPolicy.member_role.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mcpauth', '0002_code_digest_and_registration'),
        ('policies', '0007_rule_on_behalf_of'),
    ]

    operations = [
        migrations.AddField(
            model_name='mcppolicy',
            name='member_role',
            field=models.ForeignKey(blank=True, help_text='Members may connect their own MCP clients, each as a worker acting for them with this role (their personal connections where a rule says on behalf of). Empty: only admins connect clients.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='policies.role'),
        ),
    ]
