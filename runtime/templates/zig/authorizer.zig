//! {{name}}: a Weir authorizer. It allows `Authorization: Bearer <token>` when the token
//! is the config's `token` (default "let-me-in"), as the principal "user"; anything
//! else is 401. The C ownership rules of wit-bindgen apply: the arguments are ours
//! (free them), results are malloc'd.
@PRELUDE@
export fn exports_authorizer_authorize(req: *c.authorizer_authorization_request_t, ctx: *c.authorizer_context_t, ret: *c.authorizer_decision_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    defer c.authorizer_authorization_request_free(req);
    defer c.authorizer_context_free(ctx);
    const token = configString(arena, "token") orelse "let-me-in";
    const presented: []const u8 = if (req.identity.len > 0) slice(req.identity.ptr[0]) else "";
    const allowed = std.mem.startsWith(u8, presented, "Bearer ") and std.mem.eql(u8, presented[7..], token);
    const line = std.fmt.allocPrint(arena, "{s} {s} {s}", .{ if (allowed) "allow" else "deny", slice(req.method), slice(req.path) }) catch @panic("out of memory");
    log(if (allowed) c.WEIR_PLUGIN_HOST_LOG_LEVEL_INFO else c.WEIR_PLUGIN_HOST_LOG_LEVEL_WARN, line);
    if (!allowed) {
        ret.tag = c.WEIR_PLUGIN_OUTCOMES_DECISION_DENY;
        ret.val.deny = .{ .status = 401, .message = dup("Unauthorized") };
        return;
    }
    const context: [*]c.authorizer_tuple2_string_string_t = @ptrCast(@alignCast(std.c.malloc(@sizeOf(c.authorizer_tuple2_string_string_t)) orelse @panic("out of memory")));
    context[0] = .{ .f0 = dup("scheme"), .f1 = dup("bearer") };
    ret.tag = c.WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW;
    ret.val.allow = .{
        .principal_id = dup("user"),
        .context = .{ .ptr = context, .len = 1 },
        .usage_identifier_key = .{ .is_some = false, .val = undefined },
    };
}
