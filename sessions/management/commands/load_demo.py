"""Demo and training data: one user per role, and active sessions across the simulator's CPOs.

Safe to run again: users keep their passwords reset to the printed ones, and sessions are topped
up to the requested number of active ones.
"""

import random
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sessions import roles, services
from sessions.models import ChargingSession
from sessions.oicp.simulator import DEMO_OPERATORS

DEMO_USERS = [
    ("agent", roles.AGENT, False),
    ("agent2", roles.AGENT, False),
    ("admin", roles.ADMIN, True),
    ("supervisor", roles.SUPERVISOR, True),
    ("auditor", roles.AUDITOR, True),
]
DEMO_PASSWORD_SUFFIX = "-demo-pass"


class Command(BaseCommand):
    help = "Create demo users (one per role) and active demo sessions for the simulator's CPOs."

    def add_arguments(self, parser):
        parser.add_argument("--sessions", type=int, default=50, help="active sessions to have (default 50)")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable data")

    def handle(self, *args, sessions: int, seed: int | None, **options):
        if settings.PORTAL_ENVIRONMENT != "SANDBOX":
            # The demo users' passwords are published (README); never against a real Hubject system.
            raise CommandError(
                f"load_demo only runs in the sandbox (this is {settings.PORTAL_ENVIRONMENT}, OICP_BASE_URL "
                f"{settings.OICP_BASE_URL or '(empty)'}): its users have published passwords. Create the first "
                "administrator with `manage.py createsuperuser`, then the others on the Team page or in /admin/."
            )
        rng = random.Random(seed)
        self.stdout.write("Demo users (username / password, role):")
        User = get_user_model()
        for username, role, staff in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = staff
            user.set_password(username + DEMO_PASSWORD_SUFFIX)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            self.stdout.write(f"  {username:<11} / {username + DEMO_PASSWORD_SUFFIX:<22} {role}")

        active = ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE).count()
        provider_id = settings.OICP_PROVIDER_ID or "DE-EMP"
        now = timezone.now()
        created = 0
        for index in range(max(0, sessions - active)):
            operator = DEMO_OPERATORS[index % len(DEMO_OPERATORS)]
            started = now - timedelta(minutes=rng.randint(5, 300))
            session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if seed is not None else str(uuid.uuid4())
            if "upper_case_session_ids" in operator["behaviour"].get("quirks", ()):
                session_id = session_id.upper()  # as this CPO writes them; the stop sends them back so
            services.create_charging_session(
                session_id=session_id,
                evse_id=f"{operator['operator_id']}*E{rng.randint(1, 9999):04d}*{rng.randint(1, 4)}",
                provider_id=provider_id,
                started_at=started,
                emp_partner_session_id=f"EMP-{rng.randint(100000, 999999)}",
                energy_kwh=Decimal(rng.randint(500, 60000)) / 1000,
                source="demo",
            )
            created += 1
        self.stdout.write(f"Active demo sessions: {active + created} ({created} created).")
        for operator in DEMO_OPERATORS:
            self.stdout.write(f"  {operator['operator_id']:<8} {operator['name']:<22} {operator['summary']}")
