import uuid
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from sessions import roles
from sessions.directory.pull_write import remember_words
from sessions.directory.search_text import search_text
from sessions.models import ChargingSession, EvseRecord, Operator, RemoteStopRequest, StopReason
from sessions.oicp import ids


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get(name=extracted))
        if create:
            self.save()


class AgentFactory(UserFactory):
    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        self.groups.add(Group.objects.get(name=extracted or roles.AGENT))
        if create:
            self.save()


class ChargingSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargingSession

    session_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    evse_id = factory.Sequence(lambda n: f"DE*ACC*E{n:05d}*1")
    operator_id = factory.LazyAttribute(lambda o: o.evse_id.split("*E")[0])
    provider_id = "DE-EMP"
    emp_partner_session_id = factory.Sequence(lambda n: f"EMP-{n}")
    started_at = factory.LazyFunction(timezone.now)
    last_update_at = factory.LazyFunction(timezone.now)
    energy_kwh = Decimal("12.345")


class RemoteStopRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RemoteStopRequest

    charging_session = factory.SubFactory(ChargingSessionFactory)
    # As request_remote_stop sets it: the session's OperatorID.
    operator_id = factory.LazyAttribute(lambda stop: stop.charging_session.operator_id)
    requested_by = factory.SubFactory(AgentFactory)
    reason = StopReason.DRIVER_ASKED
    requested_at = factory.LazyFunction(timezone.now)


class OperatorFactory(factory.django.DjangoModelFactory):
    """A CPO as Hubject's EVSE directory lists it."""

    class Meta:
        model = Operator
        django_get_or_create = ["operator_id"]

    operator_id = "DE*ACC"
    operator_key = factory.LazyAttribute(lambda o: ids.operator_key(o.operator_id))
    name = "Offgrid Ladestationen GmbH"
    hotline = "+49 30 1234567"
    evse_count = 0
    updated_at = factory.LazyFunction(timezone.now)


class EvseRecordFactory(factory.django.DjangoModelFactory):
    """One EVSE of the directory; `search_text` is built from its place as the pull builds it."""

    class Meta:
        model = EvseRecord
        skip_postgeneration_save = True

    evse_id = factory.Sequence(lambda n: f"DE*ACC*E{n:05d}*1")
    operator = factory.SubFactory(OperatorFactory)
    charging_station_id = ""
    station_name = "Lidl Köln-Ehrenfeld"
    street = "Hauptstraße"
    house_number = "12"
    postal_code = "50823"
    city = "Köln"
    country = "DEU"
    latitude = Decimal("50.949300")
    longitude = Decimal("6.918200")
    hotline = ""
    search_text = factory.LazyAttribute(
        lambda o: search_text(o.station_name, o.street, o.house_number, o.postal_code, o.city)
    )
    updated_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def place_words(obj, create, extracted, **kwargs):
        """Its words in the place search's vocabulary, as the pull adds them."""
        if create:
            remember_words([obj.search_text], set())
