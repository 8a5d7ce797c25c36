//! {{name}}: a Weir CORS policy. The origin named by the config's `allow_origin`
//! (default "https://app.example") may call with GET and POST. The C ownership rules of
//! wit-bindgen apply: the arguments are ours (move or free them), results are malloc'd.
@PRELUDE@
/// The request's origin when it is the allowed one.
fn allowedOrigin(arena: std.mem.Allocator, req: *const c.cors_request_head_t) ?[]const u8 {
    const allowed = configString(arena, "allow_origin") orelse "https://app.example";
    for (req.headers.ptr[0..req.headers.len]) |h| {
        if (std.mem.eql(u8, slice(h.f0), "origin") and std.mem.eql(u8, slice(h.f1), allowed)) return allowed;
    }
    return null;
}

export fn exports_cors_preflight(req: *c.cors_request_head_t, ret: *c.cors_response_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    defer c.cors_request_head_free(req);
    ret.* = std.mem.zeroes(c.cors_response_t);
    const origin = allowedOrigin(arena, req) orelse {
        log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, "preflight refused");
        ret.status = 403;
        return;
    };
    log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, "preflight allowed");
    ret.status = 204;
    appendHeader(&ret.headers, "access-control-allow-origin", origin);
    appendHeader(&ret.headers, "access-control-allow-methods", "GET, POST");
    appendHeader(&ret.headers, "access-control-max-age", "600");
    appendHeader(&ret.headers, "vary", "Origin");
}

export fn exports_cors_decorate(req: *c.cors_request_head_t, headers: *c.cors_list_header_t, ret: *c.cors_list_header_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    defer c.cors_request_head_free(req);
    ret.* = headers.*; // moved
    if (allowedOrigin(arena, req)) |origin| {
        appendHeader(ret, "access-control-allow-origin", origin);
        appendHeader(ret, "vary", "Origin");
    }
}
