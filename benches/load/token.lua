-- wrk script: POST a small JSON body with a session cookie and an
-- X-StepUp-Token taken from a file, a different token for every request.
--
--   wrk ... -s token.lua URL -- PATH TOKEN_FILE THREADS COOKIE BODY_FILE
--
-- A token's jti is accepted once, so each thread takes its own slice of the
-- file (line k, k + THREADS, ...). A thread that runs out starts over and
-- says so at the end ("tokens wrapped"): the replayed tokens are then
-- refused and the run does not count.

local threads = {}
local next_id = 0

function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

function init(args)
    path = args[1]
    local every = tonumber(args[3])
    tokens = {}
    local line_no = 0
    for line in io.lines(args[2]) do
        if line_no % every == id then
            tokens[#tokens + 1] = line
        end
        line_no = line_no + 1
    end
    -- The session and body the tokens were minted for (sid and txn bind them).
    cookie = args[4]
    local f = assert(io.open(args[5], "rb"))
    body = f:read("*a")
    f:close()
    cursor = 0
    wrapped = 0
end

function request()
    cursor = cursor + 1
    if cursor > #tokens then
        cursor = 1
        wrapped = 1
    end
    return wrk.format("POST", path, {
        ["Cookie"] = cookie,
        ["Content-Type"] = "application/json",
        ["X-StepUp-Token"] = tokens[cursor],
    }, body)
end

function done(summary, latency, requests)
    for _, t in ipairs(threads) do
        if t:get("wrapped") == 1 then
            io.write("tokens wrapped\n")
            return
        end
    end
end
