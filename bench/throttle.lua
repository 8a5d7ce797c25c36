-- wrk script for bench/throttle.py: paces each connection (WEIR_DELAY_MS between
-- requests) and counts 200s and 429s across threads.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    ok, limited, other = 0, 0, 0
    pause = tonumber(os.getenv("WEIR_DELAY_MS") or "0")
end

function delay()
    return pause
end

function response(status, headers, body)
    if status == 200 then
        ok = ok + 1
    elseif status == 429 then
        limited = limited + 1
    else
        other = other + 1
    end
end

function done(summary, latency, requests)
    local o, l, x = 0, 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok")
        l = l + t:get("limited")
        x = x + t:get("other")
    end
    io.write(string.format("COUNTS %d %d %d %d\n", o, l, x, summary.duration))
end
