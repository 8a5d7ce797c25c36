// A strict JSON scanner (RFC 8259) for the example plugins: validates a document, finds
// the members of an object by byte span and decodes strings. Same rules as the Rust
// reference (examples/plugins/rust/mapper/src/json.rs).
#ifndef WEIR_EXAMPLE_JSON_H
#define WEIR_EXAMPLE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

// One member of an object: the key between its quotes (escapes not decoded) and the
// value, as byte offsets into the document.
typedef struct {
    size_t key_start, key_end;
    size_t value_start, value_end;
} json_member_t;

// The members of the object that spans all of `b[0..n]` (surrounding whitespace
// allowed). On success `*members` is a malloc'd array (free it) and `*close` the offset
// of the closing brace. False when the document is not valid UTF-8 or not a JSON object.
bool json_object_members(const uint8_t *b, size_t n, json_member_t **members, size_t *count,
                         size_t *close);

// Decodes the JSON string whose contents (between the quotes) are `s[0..n]` into a
// malloc'd UTF-8 buffer of `*out_len` bytes (plus a NUL). NULL on a bad escape.
char *json_decode(const uint8_t *s, size_t n, size_t *out_len);

// Appends `s[0..n]` as a JSON string to the growable buffer `*buf` (`*len` used of
// `*cap`): `"` and `\` escaped, \n \r \t, other control characters as \u00xx.
void json_quote(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *s, size_t n);

// Appends raw bytes to a growable buffer.
void buf_append(uint8_t **buf, size_t *len, size_t *cap, const void *s, size_t n);

// A growable text buffer, for messages (no stdio: that would pull in WASI imports).
typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} text_t;

void text_add(text_t *t, const char *s);
void text_add_n(text_t *t, const void *s, size_t n);
void text_add_uint(text_t *t, size_t v);
// The text NUL-terminated (owned by `t`; free with free(t->ptr)).
const char *text_cstr(text_t *t);

// Whether `b[0..n]` is valid UTF-8.
bool utf8_valid(const uint8_t *b, size_t n);

// A table of strings from the plugin's config: `key -> value`, decoded, in order.
typedef struct {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
} json_pair_t;

typedef struct {
    json_pair_t *pairs;
    size_t len;
} json_table_t;

// Reads the table `name` of the config object `doc`: absent gives an empty table.
// False (with `*why` set to a static message) when the config is not an object or the
// entry is not a table of strings.
bool json_config_table(const uint8_t *doc, size_t n, const char *name, json_table_t *out,
                       const char **why);

void json_table_free(json_table_t *t);

#endif
