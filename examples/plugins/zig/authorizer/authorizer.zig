//! The example token authorizer in Zig: `Authorization: Bearer <token>` with the tokens
//! listed in the plugin's config (`tokens = { "<token>" = "<principal>" }`).
//! Same behaviour as examples/plugins/rust/authorizer.
const std = @import("std");
const c = @import("c");
const json = @import("json");
const config = @import("config");

// malloc, free and realloc for this module and the C glue (see heap.zig).
comptime {
    _ = @import("heap");
}

// A panic traps: the gateway fails this one call. (The default handler would print a
// trace through WASI stdio, which this plugin does not otherwise import.)
pub const panic = std.debug.no_panic;

fn slice(s: c.authorizer_string_t) []u8 {
    return if (s.len == 0) &.{} else s.ptr[0..s.len];
}

fn log(level: c.weir_plugin_host_log_level_t, text: []const u8) void {
    var s = c.authorizer_string_t{ .ptr = @constCast(text.ptr), .len = text.len };
    c.weir_plugin_host_log(level, &s);
}

fn dup(text: []const u8) c.authorizer_string_t {
    const p: [*]u8 = @ptrCast(std.c.malloc(@max(text.len, 1)) orelse @panic("out of memory"));
    @memcpy(p[0..text.len], text);
    return .{ .ptr = p, .len = text.len };
}

fn deny(ret: *c.authorizer_decision_t, status: u16, message: []const u8) void {
    ret.tag = c.WEIR_PLUGIN_OUTCOMES_DECISION_DENY;
    ret.val.deny = .{ .status = status, .message = dup(message) };
}

fn decide(tokens: []const json.Field, identity: ?[]const u8, ret: *c.authorizer_decision_t) void {
    const value = identity orelse return deny(ret, 401, "missing token");
    if (value.len < 7 or !std.ascii.eqlIgnoreCase(value[0..7], "bearer ")) {
        return deny(ret, 401, "expected a bearer token");
    }
    const token = std.mem.trim(u8, value[7..], " ");
    if (token.len == 0) return deny(ret, 401, "expected a bearer token");
    for (tokens) |t| {
        if (!std.mem.eql(u8, t.name, token)) continue;
        const context: [*]c.authorizer_tuple2_string_string_t = @ptrCast(@alignCast(std.c.malloc(@sizeOf(c.authorizer_tuple2_string_string_t)) orelse @panic("out of memory")));
        context[0] = .{ .f0 = dup("scheme"), .f1 = dup("bearer") };
        ret.tag = c.WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW;
        ret.val.allow = .{
            .principal_id = dup(t.value),
            .context = .{ .ptr = context, .len = 1 },
            .usage_identifier_key = .{ .is_some = false, .val = undefined },
        };
        return;
    }
    deny(ret, 403, "unknown token");
}

export fn exports_authorizer_authorize(req: *c.authorizer_authorization_request_t, ctx: *c.authorizer_context_t, ret: *c.authorizer_decision_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    defer c.authorizer_authorization_request_free(req);
    defer c.authorizer_context_free(ctx);

    var raw: c.authorizer_string_t = undefined;
    c.weir_plugin_host_config(&raw);
    const text = arena.dupe(u8, slice(raw)) catch @panic("out of memory");
    c.authorizer_string_free(&raw);
    const tokens = blk: {
        const root = config.parse(text, arena) catch break :blk null;
        break :blk config.table(root, "tokens", arena) catch null;
    } orelse {
        log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_ERROR, "bad config: `tokens` must be a table of strings");
        return deny(ret, 403, "authorizer misconfigured");
    };
    const identity: ?[]const u8 = if (req.identity.len > 0) slice(req.identity.ptr[0]) else null;
    decide(tokens, identity, ret);
    const line = if (ret.tag == c.WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW)
        std.fmt.allocPrint(arena, "allow {s}", .{slice(ret.val.allow.principal_id)})
    else
        std.fmt.allocPrint(arena, "deny {d}: {s}", .{ ret.val.deny.status, slice(ret.val.deny.message) });
    const level: c.weir_plugin_host_log_level_t = if (ret.tag == c.WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW) c.WEIR_PLUGIN_HOST_LOG_LEVEL_INFO else c.WEIR_PLUGIN_HOST_LOG_LEVEL_WARN;
    log(level, line catch @panic("out of memory"));
}
