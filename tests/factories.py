from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import factory
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from apps.organizations.models import Membership, Organization, OrgRole

PASSWORD = "correct-horse-battery-staple"
T = TypeVar("T")


class _ModelFactory(factory.django.DjangoModelFactory[T]):
    """A DjangoModelFactory whose call is typed as the model it builds (factory_boy's
    own __new__ is untyped, so mypy would take UserFactory(...) for a UserFactory)."""

    class Meta:
        abstract = True

    if TYPE_CHECKING:

        def __new__(cls: Any, *args: Any, **kwargs: Any) -> T: ...  # type: ignore[misc]


class UserFactory(_ModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    username = factory.LazyAttribute(lambda u: u.email)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(obj: Any, create: Any, extracted: Any, **kwargs: Any) -> None:
        """Users are created with a verified primary email unless verified=False."""
        if create and extracted is not False:
            obj.save()
            EmailAddress.objects.get_or_create(
                user=obj, email=obj.email, defaults={"verified": True, "primary": True}
            )


class OrganizationFactory(_ModelFactory[Organization]):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(_ModelFactory[Membership]):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = OrgRole.MEMBER
