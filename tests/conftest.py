import pytest

from sessions import roles
from tests.factories import ChargingSessionFactory, UserFactory


@pytest.fixture
def agent(db):
    return UserFactory(username="agent-a", role=roles.AGENT)


@pytest.fixture
def other_agent(db):
    return UserFactory(username="agent-b", role=roles.AGENT)


@pytest.fixture
def auditor(db):
    return UserFactory(username="auditor-a", role=roles.AUDITOR)


@pytest.fixture
def charging_session(db):
    return ChargingSessionFactory()


@pytest.fixture
def agent_client(client, agent):
    client.force_login(agent)
    return client
