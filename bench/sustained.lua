-- wrk script for bench/sustained.py: Hubject's steady traffic for a fixed set of charging sessions,
-- at a fixed rate. Each of SLOTS session slots lives through Start, PROGRESS Progress notifications,
-- End and the CDR, then starts over as a new session (a new SessionID), so about SLOTS sessions are
-- active at any moment and every session's messages arrive in Hubject's order.
--   wrk -t THREADS -c CONNECTIONS -s bench/sustained.lua URL -- RATE SLOTS NONCE THREADS CONNECTIONS
-- RATE: messages a second over all connections. Each connection waits between its requests; the
-- wait starts at CONNECTIONS/RATE s and is corrected every second by how far the thread is ahead of
-- or behind RATE (wrk's Lua has only a clock in seconds; the requests' own time would otherwise
-- make the rate fall short). The benchmark reports the rate reached. SLOTS: active sessions;
-- NONCE: keeps the SessionIDs of each run apart.
dofile("bench/wrk_common.lua")  -- setup() (the thread number `tid`) and done() (the summary)
local PROGRESS = 8
local counter = 0
local rate, slots, nonce, per_thread, connections, slot_base, threads
local wait_ms, started, last_second

function init(args)
  rate = tonumber(args[1] or "500")
  slots = tonumber(args[2] or "1000")
  nonce = tonumber(args[3] or "1")
  -- wrk gives each thread its share of the connections; the slots are split the same way, so one
  -- session's messages always come from one thread, in order.
  threads = tonumber(args[4] or "2")
  per_thread = math.floor(slots / threads)
  slot_base = (tid - 1) * per_thread
  connections = tonumber(args[5] or "16")
  wrk.headers["Content-Type"] = "application/json"
end

function delay()
  if wait_ms == nil then
    wait_ms = 1000 * connections / rate
    started = os.time()
    last_second = started
  end
  local now = os.time()
  if now ~= last_second and now > started then
    last_second = now
    local due = (now - started) * rate / threads  -- this thread's share so far
    -- Ahead: wait longer, behind: shorter, in proportion (squared, to settle within seconds).
    wait_ms = math.max(0, math.min(wait_ms * (counter / due) ^ 2, 3000 * connections / rate))
  end
  return wait_ms
end

local function session(slot, life)
  local sid = string.format("%08x-%04x-4000-8000-%012x", nonce, slot, life)
  local op = string.format("DE*B%02d", slot % 10)
  local evse = string.format("%s*E%05d*1", op, slot)
  return sid, op, evse
end

function request()
  -- Round robin over this thread's slots: each slot advances one step per round.
  local slot = slot_base + counter % per_thread
  local round = math.floor(counter / per_thread)
  counter = counter + 1
  local steps = PROGRESS + 3
  local life = math.floor(round / steps)
  local step = round % steps
  local sid, op, evse = session(slot, life)
  local ident = '{"RemoteIdentification":{"EvcoID":"DE-EMP-C12345678-X"}}'
  local path = "/api/oicp/notificationmgmt/v11/charging-notifications"
  local body
  if step == 0 then
    body = string.format('{"Type":"Start","SessionID":"%s","Identification":%s,"EvseID":"%s",'
      .. '"ChargingStart":"2026-11-24T10:00:00+01:00","SessionStart":"2026-11-24T09:59:30+01:00",'
      .. '"MeterValueStart":1234.5,"OperatorID":"%s"}', sid, ident, evse, op)
  elseif step <= PROGRESS then
    body = string.format('{"Type":"Progress","SessionID":"%s","Identification":%s,"EvseID":"%s",'
      .. '"ChargingStart":"2026-11-24T10:00:00+01:00","EventOccurred":"2026-11-24T10:%02d:00+01:00",'
      .. '"ChargingDuration":%d,"ConsumedEnergyProgress":%d.5,"OperatorID":"%s"}',
      sid, ident, evse, step * 5, step * 300000, step, op)
  elseif step == PROGRESS + 1 then
    body = string.format('{"Type":"End","SessionID":"%s","Identification":%s,"EvseID":"%s",'
      .. '"ChargingStart":"2026-11-24T10:00:00+01:00","ChargingEnd":"2026-11-24T10:45:00+01:00",'
      .. '"ConsumedEnergy":22.289,"OperatorID":"%s"}', sid, ident, evse, op)
  else
    body = string.format('{"SessionID":"%s","Identification":%s,"EvseID":"%s",'
      .. '"ChargingStart":"2026-11-24T10:00:00+01:00","ChargingEnd":"2026-11-24T10:45:00+01:00",'
      .. '"SessionStart":"2026-11-24T09:59:30+01:00","SessionEnd":"2026-11-24T10:50:00+01:00",'
      .. '"MeterValueStart":1234.5,"MeterValueEnd":1256.789,"ConsumedEnergy":22.289}', sid, ident, evse)
    path = "/api/oicp/cdrmgmt/v22/operators/" .. op .. "/charge-detail-record"
  end
  return wrk.format("POST", path, nil, body)
end

