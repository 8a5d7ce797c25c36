//! malloc and friends for the Zig plugins, replacing Zig's libc allocator (its libc
//! exports them as weak symbols, so these win).
//!
//! Zig's libc `malloc` on WebAssembly (`std.heap.BrkAllocator`) gives every power-of-two
//! size class its own 64 KiB page, taken with `memory.grow` and never from the memory the
//! module starts with. One call of the mapper touches about seven size classes, so a fresh
//! instance grew its memory seven times; each growth costs the host a system call
//! (`mprotect`), and one more shrinks the slot back for the next instance. That made a
//! fresh call about twice as expensive as a C one. Here the same size classes and free
//! lists are carved one after the other from a single region that starts at
//! `__heap_base`, inside the initial memory, and grows in 1 MiB steps only when that is
//! used up.
const std = @import("std");

comptime {
    @export(&malloc, .{ .name = "malloc", .visibility = .hidden });
    @export(&calloc, .{ .name = "calloc", .visibility = .hidden });
    @export(&realloc, .{ .name = "realloc", .visibility = .hidden });
    @export(&free, .{ .name = "free", .visibility = .hidden });
    @export(&aligned_alloc, .{ .name = "aligned_alloc", .visibility = .hidden });
    @export(&posix_memalign, .{ .name = "posix_memalign", .visibility = .hidden });
    @export(&malloc_usable_size, .{ .name = "malloc_usable_size", .visibility = .hidden });
}

/// Every block starts with this header, just before the pointer handed out; 16 bytes
/// keep that pointer aligned as malloc's must be (`max_align_t`).
const Header = extern struct {
    /// log2 of the block's size, header included.
    class: u32,
    /// From the start of the block to the pointer handed out (16, or more when a larger
    /// alignment was asked for).
    offset: u32,
    _: u64 = 0,
};
const header_size = @sizeOf(Header);
comptime {
    std.debug.assert(header_size == 16);
}

const min_class = 5; // 32-byte blocks: the header and 16 usable bytes
const max_class = 31;
const wasm_page = 64 * 1024;
/// Memory grows by at least this much at a time.
const grow_step = 16 * wasm_page;

extern const __heap_base: u8;

/// Per size class, the first free block (0: none); a free block's first word links the next.
var free_lists: [max_class + 1]usize = @splat(0);
/// The unused rest of memory: [next, end). Both 0 until the first allocation.
var next: usize = 0;
var end: usize = 0;

/// A block of 2^class bytes, from its free list or the unused rest of memory; 0 if memory is full.
fn takeBlock(class: u5) usize {
    const top = free_lists[class];
    if (top != 0) {
        free_lists[class] = @as(*const usize, @ptrFromInt(top)).*;
        return top;
    }
    if (next == 0) {
        next = std.mem.alignForward(usize, @intFromPtr(&__heap_base), header_size);
        end = @wasmMemorySize(0) * wasm_page;
    }
    const size = @as(usize, 1) << class;
    if (end - next < size) {
        const pages = (size - (end - next) + wasm_page - 1) / wasm_page;
        // Grow by a whole step when the memory cap allows, else by just what is needed.
        const step = @max(pages, grow_step / wasm_page);
        var old = @wasmMemoryGrow(0, step);
        var grown = step;
        if (old == -1) {
            old = @wasmMemoryGrow(0, pages);
            grown = pages;
        }
        if (old == -1) return 0;
        end += grown * wasm_page;
    }
    const block = next;
    next += size;
    return block;
}

/// A block for `n` bytes aligned to `alignment` (a power of two, at least 16).
fn allocate(n: usize, alignment: usize) ?[*]u8 {
    const padding = alignment - header_size; // room to move the pointer up to `alignment`
    const total = std.math.add(usize, n, header_size + padding) catch return null;
    if (total > @as(usize, 1) << max_class) return null;
    const class: u5 = @intCast(@max(min_class, std.math.log2_int_ceil(usize, total)));
    const block = takeBlock(class);
    if (block == 0) return null;
    const ptr = std.mem.alignForward(usize, block + header_size, alignment);
    const head: *Header = @ptrFromInt(ptr - header_size);
    head.* = .{ .class = class, .offset = @intCast(ptr - block) };
    return @ptrFromInt(ptr);
}

fn headerOf(ptr: *anyopaque) *Header {
    return @ptrFromInt(@intFromPtr(ptr) - header_size);
}

fn usable(head: *const Header) usize {
    return (@as(usize, 1) << @intCast(head.class)) - head.offset;
}

fn malloc(n: usize) callconv(.c) ?*anyopaque {
    return allocate(n, header_size);
}

fn calloc(count: usize, size: usize) callconv(.c) ?*anyopaque {
    const n = std.math.mul(usize, count, size) catch return null;
    const p: [*]u8 = @ptrCast(malloc(n) orelse return null);
    @memset(p[0..n], 0);
    return p;
}

fn free(ptr: ?*anyopaque) callconv(.c) void {
    const p = ptr orelse return;
    const head = headerOf(p);
    const class = head.class;
    const block = @intFromPtr(p) - head.offset;
    @as(*usize, @ptrFromInt(block)).* = free_lists[class];
    free_lists[class] = block;
}

fn realloc(ptr: ?*anyopaque, n: usize) callconv(.c) ?*anyopaque {
    const p = ptr orelse return malloc(n);
    if (n == 0) {
        free(p);
        return null;
    }
    const head = headerOf(p);
    const have = usable(head);
    if (n <= have) return p;
    // As in C, a larger block keeps only malloc's alignment.
    const grown: [*]u8 = @ptrCast(malloc(n) orelse return null);
    @memcpy(grown[0..have], @as([*]const u8, @ptrCast(p))[0..have]);
    free(p);
    return grown;
}

fn aligned_alloc(alignment: usize, n: usize) callconv(.c) ?*anyopaque {
    if (alignment == 0 or !std.math.isPowerOfTwo(alignment)) return null;
    return allocate(n, @max(alignment, header_size));
}

fn posix_memalign(result: *?*anyopaque, alignment: usize, n: usize) callconv(.c) c_int {
    if (alignment < @sizeOf(usize) or !std.math.isPowerOfTwo(alignment)) return @intFromEnum(std.c.E.INVAL);
    result.* = aligned_alloc(alignment, n) orelse return @intFromEnum(std.c.E.NOMEM);
    return 0;
}

fn malloc_usable_size(ptr: ?*anyopaque) callconv(.c) usize {
    return usable(headerOf(ptr orelse return 0));
}
