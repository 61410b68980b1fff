-- wrk script for bench/ingest.py: POSTs ChargingNotifications (Start) or CDRs, each with its own
-- SessionID and EvseID (valid OICP formats).
--   wrk -s bench/ingest.lua URL -- KIND NONCE TARGET
-- KIND: start | cdr (the body); NONCE: a number that keeps the IDs of each run apart (a CDR run
-- with the nonce of a Start run closes the sessions that run started); TARGET: oicp | baseline.
dofile("bench/wrk_common.lua")  -- setup() (the thread number `tid`) and done() (the summary)
local counter = 0
local kind, nonce, target

local function ids(n)
  -- GUID-shaped SessionID, unique per (nonce, thread, request); EvseID of one of 10 operators.
  local sid = string.format("%08x-%04x-4000-8000-%012x", nonce, tid, n)
  local op = string.format("DE*B%02d", n % 10)
  local evse = string.format("%s*E%d%03d%07d*1", op, nonce % 100000, tid, n)
  return sid, op, evse
end

function init(args)
  kind = args[1] or "start"
  nonce = tonumber(args[2] or "1")
  target = args[3] or "oicp"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local sid, op, evse = ids(counter)
  local ident = '{"RemoteIdentification":{"EvcoID":"DE-EMP-C12345678-X"}}'
  local body, path
  if kind == "start" then
    body = string.format('{"Type":"Start","SessionID":"%s","EMPPartnerSessionID":"EMP-%d-%d","Identification":%s,'
      .. '"EvseID":"%s","ChargingStart":"2026-11-24T10:00:00+01:00","SessionStart":"2026-11-24T09:59:30+01:00",'
      .. '"MeterValueStart":1234.5,"OperatorID":"%s"}', sid, tid, counter, ident, evse, op)
    path = "/api/oicp/notificationmgmt/v11/charging-notifications"
  else
    body = string.format('{"SessionID":"%s","EMPPartnerSessionID":"EMP-%d-%d","Identification":%s,"EvseID":"%s",'
      .. '"ChargingStart":"2026-11-24T10:00:00+01:00","ChargingEnd":"2026-11-24T10:45:00+01:00",'
      .. '"SessionStart":"2026-11-24T09:59:30+01:00","SessionEnd":"2026-11-24T10:50:00+01:00",'
      .. '"MeterValueStart":1234.5,"MeterValueEnd":1256.789,"MeterValueInBetween":{"meterValues":[1240.1,1250.2]},'
      .. '"ConsumedEnergy":22.289}', sid, tid, counter, ident, evse)
    path = "/api/oicp/cdrmgmt/v22/operators/" .. op .. "/charge-detail-record"
  end
  if target == "baseline" then
    path = "/bench/ingest-baseline/"
  end
  return wrk.format("POST", path, nil, body)
end

