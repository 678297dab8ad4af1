# A trust policy may name a company identity provider for MCP clients (ID-JAG,
# apps.mcpauth.idjag): a new preset, and the MCP client ids it lets in.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('workers', '0007_dpop'),
    ]

    operations = [
        migrations.AddField(
            model_name='trustpolicy',
            name='clients',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AlterField(
            model_name='trustpolicy',
            name='preset',
            field=models.CharField(choices=[('github', 'GitHub Actions'), ('gitlab', 'GitLab CI'), ('kubernetes', 'Kubernetes service account'), ('oidc', 'Any OpenID Connect issuer'), ('idjag', 'Company IdP for MCP clients (ID-JAG)')], max_length=16),
        ),
    ]
