//! A strict JSON scanner (RFC 8259) that finds the top-level members of an object by
//! byte span, so a field can be replaced without re-encoding the rest of the body. Same
//! rules as the Rust reference (examples/plugins/rust/mapper/src/json.rs).
const std = @import("std");

pub const max_depth = 64;

pub const Member = struct {
    key_start: usize,
    key_end: usize,
    value_start: usize,
    value_end: usize,
};

const Error = error{ Malformed, OutOfMemory };

const Scanner = struct {
    b: []const u8,
    i: usize = 0,

    /// The next byte, or 0 at the end. JSON has no place for a NUL byte, so the end and
    /// a NUL need not be told apart: both are malformed wherever they appear. (A `?u8`
    /// here made the compiler spill every byte to the stack: 3× slower.)
    fn peek(s: *Scanner) u8 {
        return if (s.i < s.b.len) s.b[s.i] else 0;
    }

    fn ws(s: *Scanner) void {
        while (true) switch (s.peek()) {
            ' ', '\t', '\n', '\r' => s.i += 1,
            else => return,
        };
    }

    fn eat(s: *Scanner, c: u8) Error!void {
        if (!s.tryEat(c)) return error.Malformed;
    }

    fn tryEat(s: *Scanner, c: u8) bool {
        if (s.peek() == c) {
            s.i += 1;
            return true;
        }
        return false;
    }

    fn value(s: *Scanner, depth: usize) Error!void {
        const c = s.peek();
        switch (c) {
            0 => return error.Malformed,
            '{' => try s.object(depth + 1, null, undefined),
            '[' => {
                if (depth + 1 > max_depth) return error.Malformed;
                s.i += 1;
                s.ws();
                if (s.tryEat(']')) return;
                while (true) {
                    s.ws();
                    try s.value(depth + 1);
                    s.ws();
                    if (s.tryEat(']')) return;
                    try s.eat(',');
                }
            },
            '"' => try s.string(),
            't' => try s.literal("true"),
            'f' => try s.literal("false"),
            'n' => try s.literal("null"),
            else => try s.number(),
        }
    }

    fn object(s: *Scanner, depth: usize, members: ?*std.ArrayList(Member), gpa: std.mem.Allocator) Error!void {
        if (depth > max_depth) return error.Malformed;
        try s.eat('{');
        s.ws();
        if (s.tryEat('}')) return;
        while (true) {
            s.ws();
            const key_start = s.i + 1;
            try s.string();
            const key_end = s.i - 1;
            s.ws();
            try s.eat(':');
            s.ws();
            const value_start = s.i;
            try s.value(depth);
            if (members) |m| try m.append(gpa, .{
                .key_start = key_start,
                .key_end = key_end,
                .value_start = value_start,
                .value_end = s.i,
            });
            s.ws();
            if (s.tryEat('}')) return;
            try s.eat(',');
        }
    }

    fn string(s: *Scanner) Error!void {
        try s.eat('"');
        while (true) {
            const c = s.peek();
            if (c < 0x20) return error.Malformed; // the end, too
            s.i += 1;
            switch (c) {
                '"' => return,
                '\\' => {
                    switch (s.peek()) {
                        '"', '\\', '/', 'b', 'f', 'n', 'r', 't' => s.i += 1,
                        'u' => {
                            if (s.i + 5 > s.b.len) return error.Malformed;
                            for (s.b[s.i + 1 .. s.i + 5]) |h| {
                                if (!std.ascii.isHex(h)) return error.Malformed;
                            }
                            s.i += 5;
                        },
                        else => return error.Malformed,
                    }
                },
                else => {},
            }
        }
    }

    fn literal(s: *Scanner, word: []const u8) Error!void {
        if (!std.mem.startsWith(u8, s.b[s.i..], word)) return error.Malformed;
        s.i += word.len;
    }

    fn digits(s: *Scanner) usize {
        const start = s.i;
        while (std.ascii.isDigit(s.peek())) s.i += 1;
        return s.i - start;
    }

    fn number(s: *Scanner) Error!void {
        _ = s.tryEat('-');
        if (!s.tryEat('0') and s.digits() == 0) return error.Malformed;
        if (s.tryEat('.') and s.digits() == 0) return error.Malformed;
        if (s.peek() == 'e' or s.peek() == 'E') {
            s.i += 1;
            if (s.peek() == '+' or s.peek() == '-') s.i += 1;
            if (s.digits() == 0) return error.Malformed;
        }
    }
};

/// Appends `text` as a JSON string: `"` and `\` escaped, \n \r \t, other control
/// characters as \u00xx, everything else as it is.
pub fn quote(out: *std.ArrayList(u8), gpa: std.mem.Allocator, text: []const u8) !void {
    const hex = "0123456789abcdef";
    try out.append(gpa, '"');
    for (text) |c| switch (c) {
        '"' => try out.appendSlice(gpa, "\\\""),
        '\\' => try out.appendSlice(gpa, "\\\\"),
        '\n' => try out.appendSlice(gpa, "\\n"),
        '\r' => try out.appendSlice(gpa, "\\r"),
        '\t' => try out.appendSlice(gpa, "\\t"),
        0...0x08, 0x0b, 0x0c, 0x0e...0x1f => try out.appendSlice(gpa, &.{ '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] }),
        else => try out.append(gpa, c),
    };
    try out.append(gpa, '"');
}

pub const Field = struct { name: []const u8, value: []const u8 };

/// The JSON object `body` with each field set (every member whose key is written exactly
/// as the field's name gets the new value; an absent field is appended before the
/// closing brace), or null when `body` is not valid UTF-8 or not a JSON object.
pub fn setFields(gpa: std.mem.Allocator, body: []const u8, fields: []const Field) !?[]u8 {
    if (!std.unicode.utf8ValidateSlice(body)) return null;
    var members: std.ArrayList(Member) = .empty;
    defer members.deinit(gpa);
    var s = Scanner{ .b = body };
    s.ws();
    if (s.peek() != '{') return null;
    s.object(1, &members, gpa) catch |e| switch (e) {
        error.Malformed => return null,
        error.OutOfMemory => return error.OutOfMemory,
    };
    const close = s.i - 1;
    s.ws();
    if (s.i != body.len) return null;

    const replace = try gpa.alloc(?[]const u8, members.items.len);
    defer gpa.free(replace);
    @memset(replace, null);
    var added: std.ArrayList(u8) = .empty;
    defer added.deinit(gpa);
    var count = members.items.len;
    for (fields) |f| {
        var found = false;
        for (members.items, 0..) |m, i| {
            if (std.mem.eql(u8, body[m.key_start..m.key_end], f.name)) {
                replace[i] = f.value;
                found = true;
            }
        }
        if (!found) {
            if (count > 0) try added.append(gpa, ',');
            try quote(&added, gpa, f.name);
            try added.append(gpa, ':');
            try quote(&added, gpa, f.value);
            count += 1;
        }
    }
    var out: std.ArrayList(u8) = .empty;
    var at: usize = 0;
    for (members.items, 0..) |m, i| {
        const v = replace[i] orelse continue;
        try out.appendSlice(gpa, body[at..m.value_start]);
        try quote(&out, gpa, v);
        at = m.value_end;
    }
    try out.appendSlice(gpa, body[at..close]);
    try out.appendSlice(gpa, added.items);
    try out.appendSlice(gpa, body[close..]);
    return try out.toOwnedSlice(gpa);
}
