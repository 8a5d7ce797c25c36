//! The example mapper in Zig: renames and adds headers from the plugin's config, sets
//! top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
//! headers to the response. Same behaviour as examples/plugins/rust/mapper.
//!
//! The ABI comes from `wit-bindgen c` (mapper.h, translated to Zig by `zig translate-c`
//! into the `c` module). As in C, the arguments belong to us, and everything in the
//! result must come from malloc: the generated post-return code frees it.
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

const Config = struct {
    rename_headers: []json.Field,
    add_headers: []json.Field,
    json_fields: []json.Field,
    response_headers: []json.Field,
};

fn slice(s: c.mapper_string_t) []u8 {
    return if (s.len == 0) &.{} else s.ptr[0..s.len];
}

fn log(level: c.weir_plugin_host_log_level_t, text: []const u8) void {
    var s = c.mapper_string_t{ .ptr = @constCast(text.ptr), .len = text.len };
    c.weir_plugin_host_log(level, &s); // the host copies it
}

/// A malloc'd copy of `text`, lower-cased when asked: the host frees it with free().
fn dup(text: []const u8, lower: bool) c.mapper_string_t {
    const p: [*]u8 = @ptrCast(std.c.malloc(@max(text.len, 1)) orelse @panic("out of memory"));
    for (text, 0..) |ch, i| p[i] = if (lower) std.ascii.toLower(ch) else ch;
    return .{ .ptr = p, .len = text.len };
}

fn readConfig(arena: std.mem.Allocator) ?Config {
    var raw: c.mapper_string_t = undefined;
    c.weir_plugin_host_config(&raw);
    defer c.mapper_string_free(&raw);
    const text = arena.dupe(u8, slice(raw)) catch return null;
    const root = config.parse(text, arena) catch {
        log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_ERROR, "bad config: config is not JSON");
        return null;
    };
    return Config{
        .rename_headers = config.table(root, "rename_headers", arena) catch return badConfig(),
        .add_headers = config.table(root, "add_headers", arena) catch return badConfig(),
        .json_fields = config.table(root, "json_fields", arena) catch return badConfig(),
        .response_headers = config.table(root, "response_headers", arena) catch return badConfig(),
    };
}

fn badConfig() ?Config {
    log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_ERROR, "bad config: a config entry must be a table of strings");
    return null;
}

fn jsonMessage(resp: *c.mapper_response_t, status: u16, message: []const u8) void {
    var buf: [128]u8 = undefined;
    const body = std.fmt.bufPrint(&buf, "{{\"message\":\"{s}\"}}", .{message}) catch unreachable;
    const headers: [*]c.weir_plugin_types_header_t = @ptrCast(@alignCast(std.c.malloc(@sizeOf(c.weir_plugin_types_header_t)) orelse @panic("out of memory")));
    headers[0] = .{ .f0 = dup("content-type", false), .f1 = dup("application/json", false) };
    const b = dup(body, false);
    resp.* = .{
        .status = status,
        .headers = .{ .ptr = headers, .len = 1 },
        .body = .{ .ptr = b.ptr, .len = b.len },
    };
}

fn isJson(headers: c.weir_plugin_types_list_header_t) bool {
    for (headers.ptr[0..headers.len]) |h| {
        if (!std.ascii.eqlIgnoreCase(slice(h.f0), "content-type")) continue;
        var media = slice(h.f1);
        if (std.mem.indexOfScalar(u8, media, ';')) |i| media = media[0..i];
        return std.ascii.eqlIgnoreCase(std.mem.trim(u8, media, " \t"), "application/json");
    }
    return false;
}

export fn exports_mapper_map_request(req: *c.mapper_request_t, ctx: *c.mapper_context_t, ret: *c.mapper_request_outcome_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    const arena = arena_state.allocator();
    defer c.mapper_context_free(ctx);

    const cfg = readConfig(arena) orelse {
        ret.tag = c.WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_RESPOND;
        jsonMessage(&ret.val.respond, 500, "plugin misconfigured");
        c.mapper_request_free(req);
        return;
    };
    const body_len = req.body.len;
    const line = std.fmt.allocPrint(arena, "map-request {s} {s} ({d} body bytes)", .{ slice(req.method), slice(req.path), body_len }) catch @panic("out of memory");
    log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, line);

    if (body_len > 0 and isJson(req.headers)) {
        const body = req.body.ptr[0..body_len];
        const rewritten = json.setFields(arena, body, cfg.json_fields) catch @panic("out of memory") orelse {
            log(c.WEIR_PLUGIN_HOST_LOG_LEVEL_WARN, "malformed JSON body");
            ret.tag = c.WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_RESPOND;
            jsonMessage(&ret.val.respond, 400, "malformed JSON body");
            c.mapper_request_free(req);
            return;
        };
        const b = dup(rewritten, false);
        c.mapper_list_u8_free(&req.body);
        req.body = .{ .ptr = b.ptr, .len = b.len };
    }

    const in = req.headers.ptr[0..req.headers.len];
    const cap = in.len + cfg.add_headers.len + 2;
    const out: [*]c.weir_plugin_types_header_t = @ptrCast(@alignCast(std.c.malloc(cap * @sizeOf(c.weir_plugin_types_header_t)) orelse @panic("out of memory")));
    var n: usize = 0;
    for (in) |*h| {
        const name = slice(h.f0);
        var renamed: ?[]const u8 = null;
        for (cfg.rename_headers) |r| {
            if (std.ascii.eqlIgnoreCase(r.name, name)) {
                renamed = r.value;
                break;
            }
        }
        if (renamed) |to| {
            out[n].f0 = dup(to, true);
            c.mapper_string_free(&h.f0);
        } else {
            for (name) |*ch| ch.* = std.ascii.toLower(ch.*);
            out[n].f0 = h.f0; // moved
        }
        out[n].f1 = h.f1; // moved
        n += 1;
    }
    // An empty list's pointer is not from malloc (the ABI passes a dangling, aligned
    // one), so only a non-empty list is freed.
    if (req.headers.len > 0) std.c.free(req.headers.ptr);
    for (cfg.add_headers) |a| {
        out[n] = .{ .f0 = dup(a.name, true), .f1 = dup(a.value, false) };
        n += 1;
    }
    if (ctx.principal_id.is_some) {
        out[n] = .{ .f0 = dup("x-principal", false), .f1 = dup(slice(ctx.principal_id.val), false) };
        n += 1;
    }
    var digits: [24]u8 = undefined;
    out[n] = .{ .f0 = dup("x-body-bytes", false), .f1 = dup(std.fmt.bufPrint(&digits, "{d}", .{body_len}) catch unreachable, false) };
    n += 1;
    req.headers = .{ .ptr = out, .len = n };

    ret.tag = c.WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_FORWARD;
    ret.val.forward = req.*; // moved
}

export fn exports_mapper_map_response(resp: *c.mapper_response_t, ctx: *c.mapper_context_t, ret: *c.mapper_response_t) void {
    var arena_state = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena_state.deinit();
    c.mapper_context_free(ctx);
    const cfg = readConfig(arena_state.allocator()) orelse {
        c.mapper_response_free(resp);
        jsonMessage(ret, 500, "plugin misconfigured");
        return;
    };
    const n = resp.headers.len;
    const extra = cfg.response_headers.len;
    const size = (n + extra + 1) * @sizeOf(c.weir_plugin_types_header_t);
    // As above: an empty list's pointer cannot be passed to realloc.
    const raw = if (n > 0) std.c.realloc(resp.headers.ptr, size) else std.c.malloc(size);
    const grown: [*]c.weir_plugin_types_header_t = @ptrCast(@alignCast(raw orelse @panic("out of memory")));
    for (cfg.response_headers, 0..) |h, i| {
        grown[n + i] = .{ .f0 = dup(h.name, true), .f1 = dup(h.value, false) };
    }
    resp.headers = .{ .ptr = grown, .len = n + extra };
    ret.* = resp.*; // moved
}
