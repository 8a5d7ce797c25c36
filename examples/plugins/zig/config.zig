//! The plugin's config: its `config` table from weir.toml, handed over as JSON.
const std = @import("std");
const json = @import("json");

/// The table `name` of the config object as (key, value) fields, in order; absent gives
/// none. error.BadConfig when the config is not an object or the entry is not a table of
/// strings.
pub fn table(root: std.json.Value, name: []const u8, arena: std.mem.Allocator) ![]json.Field {
    if (root != .object) return error.BadConfig;
    const entry = root.object.get(name) orelse return &.{};
    if (entry != .object) return error.BadConfig;
    const fields = try arena.alloc(json.Field, entry.object.count());
    var it = entry.object.iterator();
    var i: usize = 0;
    while (it.next()) |kv| : (i += 1) {
        if (kv.value_ptr.* != .string) return error.BadConfig;
        fields[i] = .{ .name = kv.key_ptr.*, .value = kv.value_ptr.string };
    }
    return fields;
}

/// Parses the config JSON (allocations go to `arena`).
pub fn parse(text: []const u8, arena: std.mem.Allocator) !std.json.Value {
    return std.json.parseFromSliceLeaky(std.json.Value, arena, text, .{}) catch error.BadConfig;
}
