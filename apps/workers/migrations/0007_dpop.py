"""DPoP (RFC 9449): a worker may require it, a token may be bound to a key."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workers", "0006_trust_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="worker",
            name="require_dpop",
            field=models.BooleanField(
                default=False,
                help_text="Its tokens work only with a DPoP proof signed by the key each was "
                "bound to (RFC 9449): a stolen token alone is useless. Unbound tokens of it are "
                "refused and none are issued.",
                verbose_name="Require DPoP",
            ),
        ),
        migrations.AddField(
            model_name="workertoken",
            name="dpop_jkt",
            field=models.CharField(blank=True, default="", editable=False, max_length=43),
        ),
    ]
