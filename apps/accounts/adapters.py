from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Grantry's hooks into allauth (sign-up creates the user's organization)."""
