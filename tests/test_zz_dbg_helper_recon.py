import pytest
from tests.test_import_sessions import *
def test_dbg(tmp_path):
    existing = ChargingSessionFactory(evse_id="DE*ACC*E0042*1", operator_id="DE*ACC", energy_kwh=Decimal("1.000"))
    path = write(tmp_path, line(str(uuid.uuid4()), EvseID="nl*fst*e0001*2", CPOPartnerSessionID="CPO-7", ConsumedEnergy=3.5),
        line(existing.session_id, SessionStart=existing.started_at.isoformat(), ConsumedEnergy=7.25, Status="CHARGING_ENDED", EMPPartnerSessionID=existing.emp_partner_session_id))
    print(run_failing(path, "--commit"))
    assert 0
