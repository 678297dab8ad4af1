# `connection: on_behalf_of`: an action rule that uses the personal connection of the
# member the calling worker acts for.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0006_personal_connections'),
        ('policies', '0006_rule_kind_mcp'),
    ]

    operations = [
        migrations.AddField(
            model_name='rule',
            name='on_behalf_of',
            field=models.BooleanField(default=False),
        ),
        migrations.AddConstraint(
            model_name='rule',
            constraint=models.CheckConstraint(condition=models.Q(('on_behalf_of', False), models.Q(('connection__isnull', True), ('kind', 'action')), _connector='OR'), name='rule_on_behalf_of_action_only'),
        ),
    ]
