//! {{name}}: a Weir mapper. It adds `x-hello` to each request (the config's `greeting`,
//! or "hello from {{name}}") and `x-mapped-by` to each response. The C ownership rules
//! of wit-bindgen apply: the arguments are ours (move or free them), results are malloc'd.
@PRELUDE@
export fn exports_mapper_map_request(req: *c.mapper_request_t, ctx: *c.mapper_context_t, ret: *c.mapper_request_outcome_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    defer c.mapper_context_free(ctx);
    const line = std.fmt.allocPrint(arena, "map-request {s} {s}", .{ slice(req.method), slice(req.path) }) catch @panic("out of memory");
    log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, line);
    appendHeader(&req.headers, "x-hello", configString(arena, "greeting") orelse "hello from {{name}}");
    ret.tag = c.WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_FORWARD;
    ret.val.forward = req.*; // moved
}

export fn exports_mapper_map_response(resp: *c.mapper_response_t, ctx: *c.mapper_context_t, ret: *c.mapper_response_t) void {
    c.mapper_context_free(ctx);
    appendHeader(&resp.headers, "x-mapped-by", "{{name}}");
    ret.* = resp.*; // moved
}
